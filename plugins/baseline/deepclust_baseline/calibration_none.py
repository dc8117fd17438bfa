"""Calibration `none`: trust the clustering head's own softmax."""

from __future__ import annotations

from toolkit.api import CalibrationPlugin


class NoCalibration(CalibrationPlugin):
    """No calibration: confidence and prediction are the clustering head's softmax."""

    def batch_views(self) -> frozenset[str]:
        return frozenset({"weak"})  # the default confidence: the weak view's softmax
