"""The `[data]` recipe section: which data set, where it lives and how to shape its images."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class DataConfig(BaseModel):
    """Validated data settings; unknown keys are refused so recipe typos surface at load time."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    #: Read by the engine, not by loaders. "auto": estimated from the pretrained features (see k_range).
    num_clusters: int | Literal["auto"] | None = Field(default=None)
    k_range: tuple[int, int] = Field(default=(2, 50), description='num_clusters = "auto": the K searched, inclusive')
    k_criterion: Literal["eigengap", "silhouette"] = Field(
        default="silhouette", description='num_clusters = "auto": how K is chosen (toolkit/ops/estimate_k.py)')
    image_size: int | None = Field(default=None, ge=4)
    channels: Literal[1, 3] | None = None
    labels: bool = True
    strict: bool = Field(
        default=False,
        description="image_folder: stop at the first unreadable image file (one-line error naming it) "
        "instead of skipping it with a warning",
    )
    workers: int | None = Field(
        default=None, ge=1, description="image_folder: processes decoding images (default: one per CPU core)")
    decode: Literal["processes", "ray"] = Field(
        default="processes", description='image_folder: who decodes: "processes" (this machine, `workers` of them) '
        'or "ray" (Ray Data tasks on the cluster RAY_ADDRESS names, else a local Ray; needs ray[data]; the images, '
        "their order and the unreadable files are the same either way; toolkit/data/ray_decode.py)")
    cache_decoded: bool = Field(
        default=True, description="image_folder: keep the decoded, resized images as a memory-mapped file in the "
        "cache (keyed by the files' paths, sizes and dates and these settings): later loads read it instead of "
        "decoding, and training reads batches from it (toolkit/data/folder_cache.py)")
    num_samples: int = Field(default=600, ge=10)
    num_classes: int = Field(default=4, ge=2)
    synthetic_size: int = Field(default=16, ge=4)
    synthetic_channels: Literal[1, 3] = 3
    synthetic_like: Literal["cifar10", "cifar20", "cifar100", "stl10", "imagenet10", "imagenet_dogs",
                            "tiny_imagenet"] | None = Field(
        default=None, description='dataset = "synthetic": generated images in the shape of this data set (its '
        "train/test sizes, classes and side; image_size still applies) instead of num_samples, num_classes and "
        "synthetic_size: for rehearsals of paper recipes (benchmarks/rehearsal.py) without the data")
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    long_tail: float | None = Field(
        default=None,
        ge=1.0,
        description="imbalance ratio R of a labelled data set: class c keeps round(n_c * R^(-c/(C-1))) images, "
        "chosen with a fixed seed (the same for every run seed); see toolkit/data/long_tail.py",
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        # Imported here: the registry imports this module, so a top-level import would be circular.
        from toolkit.data.registry import DATASETS

        if name not in DATASETS:
            raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}")
        return name

    @field_validator("num_clusters")
    @classmethod
    def _at_least_two(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 2:
            raise ValueError(f"must be at least 2 or \"auto\", got {value}")
        return value

    @field_validator("k_range")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 2 <= value[0] <= value[1]:
            raise ValueError(f"must be [low, high] with 2 <= low <= high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _root_where_needed(self) -> "DataConfig":
        if self.dataset == "image_folder" and not self.root:
            raise ValueError("data set 'image_folder' needs root = the folder that holds the images")
        return self
