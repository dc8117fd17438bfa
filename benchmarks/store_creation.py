"""Opening a new local SQLite MLflow store: MLflow's own creation (its whole migration chain) against a copy of
the cached, migrated empty schema (toolkit/track/schema_template.py), side by side in one run.

    python benchmarks/store_creation.py [--stores 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=3, help="new stores opened each way")
    args = parser.parse_args()
    import os

    from mlflow.tracking import MlflowClient

    from toolkit.track.store import open_client

    root = Path(tempfile.mkdtemp(prefix="stores-"))
    os.environ["TOOLKIT_CACHE_DIR"] = str(root / "cache")
    open_client(f"sqlite:///{root / 'warm.db'}")  # builds the template once (what a machine's first store pays)
    mlflow_s, copy_s = [], []
    for i in range(args.stores):
        start = time.perf_counter()
        MlflowClient(f"sqlite:///{root / f'mlflow-{i}.db'}").search_experiments(max_results=1)
        mlflow_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        open_client(f"sqlite:///{root / f'copy-{i}.db'}")
        copy_s.append(time.perf_counter() - start)
    a, b = statistics.median(mlflow_s), statistics.median(copy_s)
    print(f"new store, median of {args.stores}: MLflow creates it {a:.2f} s, copy of the template {b:.2f} s "
          f"({a / b:.0f}x)")


if __name__ == "__main__":
    main()
