"""simclr `colour = "auto"`: colour images get colour-invariant pairs (jitter, greyscale) so the features
cannot cluster by colour; grey images and a user's own settings are left alone."""

from __future__ import annotations

from deepclust_simclr.plugin import COLOUR_PAIRS, Options, pair_augment
from toolkit.data.views import AugmentConfig

BASE = AugmentConfig(degrees=10.0, translate=0.1)


def test_colour_images_get_jitter_and_greyscale() -> None:
    cfg = pair_augment(Options(colour="auto"), BASE, channels=3)
    assert cfg is not None and cfg.degrees == 10.0 and cfg.translate == 0.1
    assert {k: getattr(cfg, k) for k in COLOUR_PAIRS} == COLOUR_PAIRS
    assert pair_augment(Options(colour="auto"), None, channels=3).hue == COLOUR_PAIRS["hue"]  # type: ignore[union-attr]


def test_grey_images_and_off_are_unchanged() -> None:
    assert pair_augment(Options(colour="auto"), BASE, channels=1) is BASE
    assert pair_augment(Options(), BASE, channels=3) is BASE


def test_a_users_own_colour_settings_win() -> None:
    own = AugmentConfig(brightness=0.1, jitter_p=0.3)
    cfg = pair_augment(Options(colour="auto"), own, channels=3)
    assert cfg is not None and cfg.brightness == 0.1 and cfg.jitter_p == 0.3
    assert cfg.hue == COLOUR_PAIRS["hue"] and cfg.grayscale == COLOUR_PAIRS["grayscale"]
