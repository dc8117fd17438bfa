"""A new SQLite store is seeded from the cached migrated schema, and works exactly like one MLflow creates."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.track.schema_template import seed_new_store
from toolkit.track.store import open_client


def test_new_store_is_a_copy_of_the_template_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    first = open_client(f"sqlite:///{tmp_path / 'a.db'}")
    templates = list((tmp_path / "cache" / "mlflow-schema").glob("*.db"))
    assert len(templates) == 1
    second_db = tmp_path / "b.db"
    assert seed_new_store(f"sqlite:///{second_db}") is True
    assert seed_new_store(f"sqlite:///{second_db}") is False  # never overwrites a store
    client = open_client(f"sqlite:///{second_db}")
    # MLflow added its Default experiment on opening: the template itself holds no experiment
    assert [e.name for e in client.search_experiments()] == ["Default"]
    exp = client.create_experiment("x")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 0.5, step=3)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "m")] == [(3, 0.5)]
    assert [e.name for e in first.search_experiments()] == ["Default"]


def test_unusable_cache_falls_back_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("TOOLKIT_CACHE_DIR", str(blocker))
    monkeypatch.chdir(tmp_path)
    assert seed_new_store(f"sqlite:///{tmp_path / 'c.db'}") is False
    assert not (tmp_path / "c.db").exists()
    client = open_client(f"sqlite:///{tmp_path / 'c.db'}")  # MLflow builds it as before
    assert [e.name for e in client.search_experiments()] == ["Default"]
