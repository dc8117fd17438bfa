"""`toolkit tune` input errors: one line naming [tune] / [tune.space] / [tune.resources] and the key, exit 2,
no traceback, before any Ray instance or MLflow run is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RECIPES, toolkit_env

pytestmark = pytest.mark.xdist_group("ray")  # starts Ray clusters: kept on the worker that runs the other Ray tests

BASELINE = RECIPES / "baseline_digits.toml"

CASES = [  # through the CLI (a few: each costs a process start)
    (["--set", 'tune.space.train.lrr={type="uniform", low=0.1, high=0.2}'],
     ("[tune.space] train.lrr", "[train] lrr: unknown key")),
    (["--set", "train.epochs=3"], ("[tune] grace_period", "fifo")),  # ASHA grace period 5 >= 3 epochs
    (["--resume"], ("holds no search",)),
]
IN_PROCESS = [
    ('tune.space.selection.threshold={type="uniform", low=0.5, high=1.5}', r"\[tune.space\] selection.threshold: .*1.5"),
    ('tune.space.train.lr={type="loguniform", low=0, high=1}', r"\[tune.space\] train.lr: .*low > 0"),
    ("tune.resources.gpus=2.5", r"\[tune.resources\] gpus: .*whole number"),
    ("tune.resources={workers=2, gpus=2}", r"\[tune.resources\] gpus: .*per worker"),
    ("tune.resources={workers=2, gpus=0.5}", r"\[tune.resources\] gpus: .*whole GPU"),
    ('tune.scheduler="hyperband"', r"\[tune\] scheduler: .*'asha' or 'fifo'"),
    ('tune.metric="my_score"', r"\[tune\] metric: .*mode"),
    ('tune.initial=[{"train.lr"=-1.0}]', r"\[tune\] initial"),
    ('tune.space.model.hidden_dims={type="choice", values=[[32], [0]]}', r"\[tune.space\] model.hidden_dims"),
]


@pytest.mark.parametrize("override, pattern", IN_PROCESS, ids=[c[0].split("=")[0] for c in IN_PROCESS])
def test_tune_section_is_validated(override: str, pattern: str) -> None:
    from toolkit.errors import RecipeError
    from toolkit.recipe.loading import load_recipe

    with pytest.raises(RecipeError, match=pattern):
        load_recipe(BASELINE, [override], check_tune=True)


@pytest.mark.parametrize("args, fragments", CASES, ids=[c[1][0] for c in CASES])
def test_tune_input_errors_are_one_line(tmp_path: Path, args: list[str], fragments: tuple[str, ...]) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "tune", str(BASELINE), "-o", str(tmp_path / "s"), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=toolkit_env(MLFLOW_TRACKING_URI=uri),
                          timeout=1800)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "s").exists()  # nothing started


def test_recipe_without_tune_section(tmp_path: Path) -> None:
    recipe = tmp_path / "plain.toml"
    recipe.write_text('[experiment]\nname = "plain"\n[data]\ndataset = "digits"\n')
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "tune", str(recipe), "-o", str(tmp_path / "s")],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=toolkit_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"), timeout=1800)
    assert proc.returncode == 2 and "[tune]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("resources, expected", [
    ("{gpus=4}", (4, 1.0)), ("{gpus=1}", (1, 1.0)), ("{gpus=0.5}", (1, 0.5)), ("{workers=3, gpus=1}", (3, 1.0)),
])
def test_several_gpus_per_trial_mean_data_parallel_workers(resources: str, expected: tuple[int, float]) -> None:
    """`gpus = N` asks for an N-GPU trial: N data-parallel workers with one GPU each."""
    from toolkit.recipe.loading import load_recipe

    res = load_recipe(BASELINE, [f"tune.resources={resources}"], check_tune=True).config.tune.resources
    assert (res.workers, res.gpus) == expected


def test_baseline_recipe_has_a_search() -> None:
    from toolkit.recipe.loading import load_recipe

    rec = load_recipe(BASELINE)
    assert rec.config.tune is not None and set(rec.config.tune.space) == {"train.lr", "selection.threshold"}


def test_label_detection_loads_only_data_sets_read_from_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """digits/synthetic always have labels: the driver decides the default metric without loading them."""
    import toolkit.data.registry as registry
    from toolkit.recipe.loading import load_recipe
    from toolkit.tune.driver import Search

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("loaded")

    monkeypatch.setattr(registry, "load_data", refuse)
    assert Search._has_labels(load_recipe(BASELINE, ['data.dataset="synthetic"']))
    assert Search._has_labels(load_recipe(BASELINE))
    assert registry.labelled_without_loading("digits") and not registry.labelled_without_loading("image_folder")
    assert not registry.labelled_without_loading("cifar10")  # read from disk: loading also checks the files exist


def test_random_search_holds_max_concurrent_itself() -> None:
    """Ray Tune ignores max_concurrent_trials for random search (BasicVariantGenerator): it must carry the limit."""
    from toolkit.recipe.loading import load_recipe
    from toolkit.tune.space import searcher

    cfg = load_recipe(BASELINE, ['tune.search_alg="random"', "tune.max_concurrent=2"], check_tune=True).config.tune
    assert searcher(cfg, 0, [], cfg.max_concurrent).max_concurrent == 2
    assert searcher(cfg, 0, []).max_concurrent == 0  # 0: as many as resources allow


def test_search_on_an_existing_ray_cluster(tmp_path: Path) -> None:
    """`toolkit tune --address` joins a Ray cluster started with `ray start --head` (in its own temp dir, so
    nothing else on the machine sees it) and runs its trials there; the head is stopped afterwards."""
    import shutil
    import socket
    import tempfile
    import time

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        pytest.skip("the `ray` command is not installed beside this Python")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths live under it
    env = toolkit_env(RAY_TMPDIR=ray_tmp, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                      RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # no token in ~/.ray
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60  # wait for the head's GCS port
        while time.monotonic() < deadline and head.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        assert head.poll() is None, "ray start --head exited"
        tiny = ["pretrain.epochs=2", "pretrain.batch_size=256", "head_init.epochs=1", "head_init.nredo=1",
                "train.epochs=2", "model.hidden_dims=[32]", "tune.resources.cpus=1", 'tune.scheduler="fifo"',
                'tune.search_alg="random"']
        sets = [arg for item in tiny for arg in ("--set", item)]
        out = tmp_path / "search"
        proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "tune", str(BASELINE), "-n", "2", "-o", str(out),
                               "--address", f"127.0.0.1:{port}", "--no-progress", *sets],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / "best.toml").is_file()
        import json

        rows = json.loads((out / "trials.json").read_text())
        assert len(rows) == 2 and all(r["status"] == "finished" for r in rows), rows
        assert all(r["mlflow_run_id"] for r in rows)
        # The trials ran in the cluster's workers (its session logs name them), and no second Ray was started.
        assert len(list(Path(ray_tmp).glob("**/session_2*"))) == 1
        logs = list(Path(ray_tmp).glob("**/session_*/logs/worker-*.out"))
        assert any("ImplicitFunc" in p.read_text(errors="replace") for p in logs), (logs, "no trial ran on the cluster")
    finally:
        import os
        import signal

        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "toolkit.commands.app", "tune", str(BASELINE), "-o", str(tmp_path / "s"),
                           "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, cwd=tmp_path,
                          env=toolkit_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"), timeout=1800)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert f"cannot join the Ray cluster at 127.0.0.1:{port}" in lines[-1] and "ray start --head" in lines[-1], lines
