"""Generation `none`: no synthetic samples."""

from __future__ import annotations

from toolkit.api import GenerationPlugin


class NoGeneration(GenerationPlugin):
    """No generator: training sees only real images."""

    def batch_views(self) -> frozenset[str]:
        return frozenset()
