"""Which recipe keys a run uses: what it logs as MLflow params (beside the facts of the data it loaded).

A recipe resolved with every default holds ~120 keys, about half of them settings no part of the run reads
(the synthetic generator's size on a digits run, `tune.*` on a plain run, augmentations left at their
no-op default). Logging them buries the dozen that differ between two runs, and the synthetic generator's
`data.num_samples = 600` on a digits run reads as a lie. So a run logs the keys it uses, and `data.*`
facts measured on the loaded images (N, K, size, channels, content hash) in their place.
"""

from __future__ import annotations


from toolkit.data.views import AugmentConfig

#: `[data]` keys only the synthetic generator reads.
SYNTHETIC_KEYS = ("num_samples", "num_classes", "synthetic_size", "synthetic_channels")
#: `[data]` keys only some loaders read, and which.
LOADER_KEYS = {"download": ("cifar10", "cifar20", "stl10"), "strict": ("image_folder",), "workers": ("image_folder",),
               "cache_decoded": ("image_folder",)}
#: `[data]` keys only K estimation reads.
K_ESTIMATION_KEYS = ("k_range", "k_criterion")
#: Recipe tables holding an augmentation (AugmentConfig): keys at their default are switched-off ops.
AUGMENT_TABLES = ("views.weak", "views.strong", "views.raw", "pretrain.augment")

def _augment_defaults() -> dict[str, str]:
    return {key: str(value) for key, value in AugmentConfig().model_dump(mode="json").items()}


def used_params(flat: dict[str, str], searched: set[str] | None = None) -> dict[str, str]:
    """`flat` (dotted recipe keys -> values) without the keys no part of the run reads. Keys in `searched`
    (a search's sampled keys) are always kept."""
    searched = searched or set()
    defaults = _augment_defaults()
    dataset = flat.get("data.dataset")
    auto_k = flat.get("data.num_clusters") == "auto"
    split = flat.get("experiment.protocol") == "split"
    sgd = flat.get("train.optimizer") == "sgd"
    out = {}
    for key, value in flat.items():
        if key not in searched:
            section, _, name = key.rpartition(".")
            if key.startswith("tune.") or key == "experiment.description":
                continue  # the search's own settings; the description is the run's note
            if section == "data" and name in SYNTHETIC_KEYS and dataset != "synthetic":
                continue
            if section == "data" and name in K_ESTIMATION_KEYS and not auto_k:
                continue
            if section == "data" and name in LOADER_KEYS and dataset not in LOADER_KEYS[name]:
                continue
            if section in AUGMENT_TABLES and defaults.get(name) == value:
                continue
            if (key == "data.test_fraction" and not split) or (key in ("train.momentum", "train.nesterov") and not sgd):
                continue
            if key in ("train.warmup_epochs", "train.min_lr_ratio") and flat.get("train.schedule") == "constant":
                continue
        out[key] = value
    return out
