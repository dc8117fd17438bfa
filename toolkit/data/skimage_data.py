"""Access to scikit-image's bundled sample images (shipped in its wheel, read without network)."""

from __future__ import annotations

from types import ModuleType

from toolkit.errors import DataNotFoundError


def skimage_data(dataset: str) -> ModuleType:
    """`skimage.data`, or a one-line error saying how to install it (it is an optional dependency)."""
    try:
        import skimage.data
    except ImportError:
        raise DataNotFoundError(f"data set {dataset!r} needs scikit-image: pip install scikit-image") from None
    return skimage.data
