"""benchmarks/backbone_flops.py counts what the stems cost: the table the paper recipes' stem choice rests on."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stem_costs_order_as_their_resolutions_say():
    proc = subprocess.run([sys.executable, "benchmarks/backbone_flops.py", "--sides", "96", "224", "--names",
                           "resnet34", "resnet34_maxpool", "resnet34_imagenet"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("|")[1].strip(): [float(c.split()[0]) for c in line.split("|")[2:4]]
            for line in proc.stdout.splitlines() if line.startswith("| resnet")}
    cifar, iic, imagenet = rows["resnet34"], rows["resnet34_maxpool"], rows["resnet34_imagenet"]
    for side in range(2):
        # the CIFAR stem keeps the full side in layer1, IIC's max-pool halves it, the ImageNet stem quarters it
        assert 3.0 < cifar[side] / iic[side] < 4.5 and 12.0 < cifar[side] / imagenet[side] < 20.0
    assert 5.0 < cifar[1] / cifar[0] < 6.0  # (224 / 96)^2 = 5.4
