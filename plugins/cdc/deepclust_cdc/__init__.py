"""CDC (Towards Calibrated Deep Clustering Network): prototype head init, a calibration head trained on
mini-cluster soft targets, calibrated per-class selection, and backbone loading from public checkpoints."""
