"""Figures are written as real PNG files."""

import numpy as np

from toolkit.run.figures import confusion_matrix_png, reliability_diagram_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def test_reliability_diagram(tmp_path):
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 200)
    correct = rng.uniform(size=200) < conf
    out = reliability_diagram_png(conf, correct, tmp_path / "sub" / "rel.png", title="test")
    assert out == tmp_path / "sub" / "rel.png" and _is_png(out)


def test_confusion_matrix_more_clusters_than_classes(tmp_path):
    target = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([3, 3, 0, 1, 4, 4, 2])
    assert _is_png(confusion_matrix_png(pred, target, tmp_path / "cm.png", title="cm"))


def test_confusion_matrix_large_unannotated(tmp_path):
    rng = np.random.default_rng(1)
    target = rng.integers(0, 30, 1000)
    pred = rng.integers(0, 25, 1000)
    assert _is_png(confusion_matrix_png(pred, target, tmp_path / "big.png"))
