"""Calibration `none`: trust the clustering head's own softmax."""

from __future__ import annotations

from toolkit.api import CalibrationPlugin


class NoCalibration(CalibrationPlugin):
    """No calibration: confidence and prediction are the clustering head's softmax."""
