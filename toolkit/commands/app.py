"""The `toolkit` command: thin typer app that parses, calls the engine and renders with rich.

User mistakes (bad recipe, missing data, unknown plugin) print one line and exit with code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from toolkit.errors import TrainingError, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="markdown",
                  help="Deep image clustering experiments: recipes, plugins, MLflow tracking.")
plugins_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="Inspect installed plugins.")
recipes_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="Check recipes without running them.")
app.add_typer(plugins_app, name="plugins")
app.add_typer(recipes_app, name="recipes")

out = Console()
err = Console(stderr=True)


def _guard(fn: Callable[[], None], *, show_traceback: bool = False,
           resume_command: Callable[[], str | None] | None = None) -> None:
    """Run `fn`; a user error becomes one red line and exit code 2; a training failure one line naming the
    run's traceback.txt (or, with `show_traceback`, followed by the full traceback) and exit code 1; an
    interruption one yellow line on how to continue (`resume_command`) and exit code 130 for Ctrl-C, or
    128 + the signal number for a signal turned into `Interrupted` (143 for SIGTERM)."""
    from toolkit.run.failure import format_failure, saved_traceback
    from toolkit.run.interrupt import Interrupted, ignore_signals

    try:
        fn()
    except UserError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    except TrainingError as exc:
        saved = saved_traceback(exc)
        hint = f" (full traceback: {saved}; --traceback to print it)" if saved and not show_traceback else ""
        err.print(f"[red]training failed:[/] {escape(str(exc) + hint)}", highlight=False, soft_wrap=True)
        if show_traceback:  # the run's traceback.txt, as MLflow keeps it; the error's own when none was saved
            err.file.write(saved.read_text(encoding="utf-8", errors="replace") if saved else format_failure(exc))
            err.file.flush()
        raise typer.Exit(code=1)
    except KeyboardInterrupt as exc:
        by = ""
        if isinstance(exc, Interrupted):
            ignore_signals()  # exiting anyway: one more signal must not end in a traceback
            by = f" by {exc.signal_name}"
        command = resume_command() if resume_command is not None else None
        how = f"`{command}`" if command else "--resume and the same --output-dir"
        err.print(f"[yellow]interrupted{by}[/]: continue with {escape(how)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code if isinstance(exc, Interrupted) else 130)


def _notice(message: str) -> None:
    """One yellow line on stderr (e.g. where a run's tracking went instead)."""
    err.print(f"[yellow]{escape(message)}[/]", highlight=False, soft_wrap=True)


def _quiet_libraries() -> None:
    for name in ("alembic", "mlflow", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe TOML file."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Where the run writes its files."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: the recipe's)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output-dir from its last epoch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Run once per seed (e.g. 0,1,2 or 0-4) under an "
                                        "MLflow parent run; report mean and std of every metric."),
    tracking_fallback: Optional[str] = typer.Option(
        None, "--tracking-fallback", metavar="fail|local",
        help="When the MLflow server is unreachable: fail before training (default), or local: log to "
             "OUTPUT_DIR/mlflow.db instead. Default from TOOLKIT_TRACKING_FALLBACK."),
    show_traceback: bool = typer.Option(False, "--traceback", envvar="TOOLKIT_TRACEBACK",
                                        help="When training fails, also print the full traceback (always kept in "
                                             "OUTPUT_DIR/traceback.txt). Default from TOOLKIT_TRACEBACK=1."),
) -> None:
    """Run one experiment end to end and log it to MLflow.

    SIGTERM (a scheduler's pre-emption) or Ctrl-C stops it after recording the run as interrupted
    (MLflow status KILLED); `--resume` continues from the last finished epoch. Exit code 143 / 130.
    """
    resume_with: list[str] = []  # the command that continues this run, once its folder is known

    def go() -> None:
        from toolkit.recipe.loading import load_recipe
        from toolkit.track.fallback import fallback_mode, resolve_store

        if resume and output_dir is None:
            raise UserError("--resume needs --output-dir: the folder of the run to continue")
        fallback = fallback_mode(tracking_fallback)
        _quiet_libraries()
        rec = load_recipe(recipe, set_)  # before importing the engine and MLflow, so a bad recipe fails fast
        from toolkit.run.engine import Engine
        from toolkit.commands.progress import console_observers
        from toolkit.commands.tables import summary_table
        from toolkit.track.store import tracking_uri
        from toolkit.track.tracker import MlflowTracker

        from toolkit.run.interrupt import interrupt_on_signals

        target = output_dir or Path("runs") / f"{rec.experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        resume_with.append(_resume_command(recipe, set_, seeds, device, tracking_fallback, target))
        if seeds is not None:
            from toolkit.commands.tables import seeds_table
            from toolkit.run.folder import RunFolder
            from toolkit.run.seeds import parse_seeds, run_seeds
            from toolkit.track.parent import ParentRun

            seed_list = parse_seeds(seeds)
            # one store for the parent and all seeds (the fallback store is DIR/mlflow.db)
            store = resolve_store(*tracking_uri(), fallback, target, resuming=resume, notify=_notice)

            def seed_observers(parent: str) -> list:
                return [MlflowTracker(*store, parent_run_id=parent), *console_observers(err, progress)]

            def open_parent(experiment: str, name: str, tags: dict[str, str], run_id: str | None) -> ParentRun:
                return ParentRun(experiment, name, tags, run_id=run_id, store=store)

            with interrupt_on_signals():
                result = run_seeds(recipe, set_, seed_list, target, device=device, resume=resume,
                                   observers=seed_observers, open_parent=open_parent)
            out.print(seeds_table(result))
            out.print(f"results: {RunFolder(target).seeds_summary}")
            return
        observers = [MlflowTracker(fallback=fallback, notify=_notice), *console_observers(err, progress)]
        with interrupt_on_signals():
            summary = Engine(rec, target, device=device, observers=observers, resume=resume).run()
        out.print(summary_table(summary))
        out.print(f"results: {target / 'summary.json'}")

    _guard(go, show_traceback=show_traceback, resume_command=lambda: resume_with[-1] if resume_with else None)


def _resume_command(recipe: Path, overrides: list[str], seeds: str | None, device: str | None,
                    tracking_fallback: str | None, target: Path) -> str:
    """The `toolkit run` command line that continues an interrupted run in `target` (same recipe, overrides
    and tracking store), ready to paste."""
    import shlex

    args = ["toolkit", "run", str(recipe), *[a for s in overrides for a in ("--set", s)]]
    for flag, value in (("--seeds", seeds), ("--device", device), ("--tracking-fallback", tracking_fallback)):
        if value is not None:
            args += [flag, value]
    return shlex.join([*args, "--resume", "--output-dir", str(target)])


def require_search_libraries() -> None:
    """`toolkit tune` needs Ray Tune and Optuna, which a lean install (e.g. benchmarks/gpu's wheelhouse) leaves
    out: say so in one line before anything is written."""
    import importlib.util

    missing = [name for name in ("ray", "optuna") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"toolkit tune needs {' and '.join(missing)}, which this installation lacks: "
                        "pip install 'ray[tune]' optuna (plain `toolkit run` works without them)")


@app.command()
def tune(
    recipe: Path = typer.Argument(..., help="Recipe TOML file with a [tune] section."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", "-n", help="Trials to run (default: [tune])."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to use (default: RAY_ADDRESS, "
                                          "else a local Ray instance)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search in --output-dir; finished trials "
                                "are not run again."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="The search folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Print a line per trial result."),
    show_traceback: bool = typer.Option(False, "--traceback", envvar="TOOLKIT_TRACEBACK",
                                        help="Print the full traceback of each failed trial (kept in its folder's "
                                             "traceback.txt). Default from TOOLKIT_TRACEBACK=1."),
) -> None:
    """Hyperparameter search with Ray Tune over the recipe's [tune.space]; every trial is an ordinary run."""

    def go() -> None:
        if resume and output_dir is None:
            raise UserError("--resume needs --output-dir: the folder of the search to continue")
        if resume and (set_ or num_samples is not None):
            raise UserError("--resume continues the search as it was started: drop --set and --num-samples")
        _quiet_libraries()
        require_search_libraries()
        from toolkit.commands.tables import results_table
        from toolkit.run.folder import RunFolder
        from toolkit.tune.driver import Search
        from toolkit.tune.state import SearchFolder

        if resume:
            target = output_dir
        else:
            from toolkit.recipe.loading import load_recipe

            name = load_recipe(recipe, set_).experiment.name
            target = output_dir or Path("runs") / f"tune-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        search = Search(target, address=address, console=err, progress=progress)
        result = search.resume() if resume else search.start(recipe, set_, num_samples)
        out.print(results_table(result))
        failed = [r for r in result.rows if r["status"] == "failed"]
        for r in failed:
            saved = RunFolder(SearchFolder(result.output_dir).trials / str(r["trial_id"])).traceback
            hint = f" (full traceback: {saved}; --traceback to print it)" if saved.is_file() and not show_traceback else ""
            err.print(f"[red]trial {r['trial_id']} failed:[/] {escape(str(r['error']) + hint)}", highlight=False,
                      soft_wrap=True)
            if show_traceback and saved.is_file():
                err.file.write(saved.read_text(encoding="utf-8", errors="replace"))
                err.file.flush()
        if result.best is not None:
            out.print(f"best: {escape(str(SearchFolder(result.output_dir).best_recipe))}  (MLflow parent run {result.parent_run_id})")
        if result.interrupted:
            err.print(f"[yellow]interrupted[/]: continue with `toolkit tune {escape(str(recipe))} --resume "
                      f"--output-dir {escape(str(result.output_dir))}`")
            raise typer.Exit(code=130)
        if result.best is None:
            raise TrainingError("no trial finished: see the errors above")

    _guard(go)


@app.command("cluster")
def cluster_cmd(
    folder: Path = typer.Argument(..., help="Folder of images (nested folders, PNG/JPEG/BMP/WebP/TIFF; other files ignored)."),
    clusters: str = typer.Option(..., "-k", "--clusters", help='How many clusters to find, or "auto" (estimated '
                                 "from the pretrained features, K in 2..50; the curve is saved as run/k_estimate.png)."),
    method: str = typer.Option("baseline", "--method", help="Whose general recipe to run (recipes/METHOD.toml)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Run this recipe instead of the method's general one."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Where the report and the run go "
                                              "(default: clusters-<folder name>-<time>)."),
    copy: bool = typer.Option(False, "--copy", help="Copy images into the per-cluster folders instead of linking."),
    strict: bool = typer.Option(False, "--strict", help="Stop at an unreadable file instead of skipping it."),
    image_size: int = typer.Option(32, "--image-size", min=4, help="Side the images are resized to."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Score the clusters against the sub-folder names "
                                  "(evaluation only: never used for training or choices)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default: the recipe's)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    show_traceback: bool = typer.Option(False, "--traceback", envvar="TOOLKIT_TRACEBACK",
                                        help="When training fails, also print the full traceback."),
) -> None:
    """Cluster a folder of your own images: clusters.csv, a folder and a grid per cluster, index.md."""

    def go() -> None:
        from toolkit.run.cluster_folder import cluster_folder, general_recipe

        _quiet_libraries()
        chosen = recipe or general_recipe(method)
        target = output_dir or Path(f"clusters-{folder.resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}")
        from toolkit.commands.progress import console_observers
        from toolkit.commands.tables import summary_table
        from toolkit.run.interrupt import interrupt_on_signals
        from toolkit.track.tracker import MlflowTracker

        observers = [MlflowTracker(notify=_notice), *console_observers(err, progress)]
        with interrupt_on_signals():
            outcome = cluster_folder(folder, clusters, target, chosen, set_, device=device, observers=observers,
                                     copy=copy, strict=strict, image_size=image_size, evaluate=evaluate)
        out.print(summary_table(outcome.summary))
        if outcome.skipped:
            out.print(f"{len(outcome.skipped)} unreadable file(s) skipped (listed in the index)")
        out.print(f"{outcome.images} images in {outcome.clusters} clusters -> {escape(str(outcome.report))}")

    _guard(go, show_traceback=show_traceback)


@app.command("predict")
def predict_cmd(run_ref: str = typer.Argument(..., metavar="RUN", help="A run's output folder or MLflow run id."),
                images_dir: Optional[Path] = typer.Argument(None, help="Folder of images (default: the run's data)."),
                output: Path = typer.Option(Path("predictions.csv"), "--output", "-o", help="CSV to write."),
                grid: Optional[Path] = typer.Option(None, "--grid", help="Folder for one PNG per cluster."),
                device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")) -> None:
    """Assign each image a cluster and a (calibrated) confidence with a finished run's model."""

    def go() -> None:
        from toolkit.run.predict import predict_run, write_csv, write_grids
        from toolkit.track.lookup import run_folder

        _quiet_libraries()
        result = predict_run(run_folder(run_ref), images_dir, device)
        write_csv(result, output)
        out.print(f"{len(result.names)} images -> {escape(str(output))}")
        if grid is not None:
            paths = write_grids(result, grid)
            out.print(f"{len(paths)} cluster grids -> {escape(str(grid))}")

    _guard(go)


@plugins_app.command("list")
def plugins_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every plugin found through entry points, per slot, with its distribution and version."""
    from toolkit.registry.entry_points import status_of_all

    rows = status_of_all()
    if as_json:
        data = [{"slot": r.info.slot, "name": r.info.name, "target": r.info.target, "distribution": r.info.distribution,
                 "version": r.info.version, "status": "broken" if r.error else "ok", "error": r.error,
                 "summary": r.summary} for r in rows]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(title="toolkit plugins")
    for col in ("slot", "name", "distribution", "version", "status"):
        table.add_column(col, no_wrap=True)
    wide = out.width >= 110  # descriptions only where they fit; `toolkit plugins show NAME` has them all
    if wide:
        table.add_column("description", overflow="ellipsis", no_wrap=True)
    for r in rows:
        status = "[red]broken[/]" if r.error else "[green]ok[/]"
        cells = [r.info.slot, r.info.name, r.info.distribution, r.info.version, status]
        if wide:
            cells.append(escape(r.error or r.summary))
        table.add_row(*cells)
    for r in rows:
        if r.error and not wide:
            err.print(f"[red]broken[/] {r.info.slot}.{r.info.name}: {escape(r.error)}", highlight=False, soft_wrap=True)
    out.print(table)


@plugins_app.command("new")
def plugins_new(name: str = typer.Argument(..., help="Plugin name (used in recipes as method = NAME)."),
                slot: str = typer.Option(..., "--slot", help="pretrain, head_init, selection, calibration or generation."),
                directory: Path = typer.Option(Path("."), "--dir", help="Where to create the package folder.")) -> None:
    """Write a ready-to-install plugin package (pyproject with entry point, plugin class, test)."""

    def go() -> None:
        from toolkit.commands.scaffold import scaffold

        root = scaffold(name, slot, directory)
        out.print(f"created {escape(str(root))}: cd there, `pip install -e .`, then `pytest`")

    _guard(go)


@plugins_app.command("show")
def plugins_show(name: str = typer.Argument(..., help="Plugin name."),
                 slot: Optional[str] = typer.Option(None, "--slot", help="Slot, when the name exists in several.")) -> None:
    """A plugin's slot, distribution, version, docstring and options (types and defaults)."""

    def go() -> None:
        from toolkit.registry.entry_points import describe

        for block in describe(name, slot):
            out.print(block)

    _guard(go)


@recipes_app.command("validate")
def recipes_validate(files: list[Path] = typer.Argument(..., help="Recipe files."),
                     set_: list[str] = typer.Option([], "--set", help="Overrides to apply before validating.")) -> None:
    """Validate recipes (including every plugin's options) without running them."""
    from toolkit.recipe.loading import load_recipe

    failed = 0
    for f in files:
        try:
            load_recipe(f, set_, check_tune=True)
            out.print(f"[green]ok[/]    {escape(str(f))}", highlight=False)
        except UserError as exc:
            failed += 1
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(code=2)


@app.command()
def report(
    targets: list[str] = typer.Argument(None, help="Experiment names or ids, or run ids (a parent run stands for "
                                        "its seeds); none: every experiment in the store."),
    by: str = typer.Option("method,dataset", "--by", help="Group runs into rows by these keys: method (the run "
                           "name less its seed), dataset, seed, or any tag or param name (e.g. plugin.calibration)."),
    fmt: str = typer.Option("md", "--format", help="What to print: md, latex or csv."),
    output: list[Path] = typer.Option([], "--output", "-o", help="Also write the table to this file; .md, .tex "
                                      "or .csv picks the format (repeatable)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write ACC against ECE per row to this PNG."),
    trials: bool = typer.Option(False, "--trials", help="Include the trials of `toolkit tune` searches."),
) -> None:
    """The paper-style results table from the MLflow store: one row per method and data set, mean ± std over
    their runs (seeds) of ACC, NMI, ARI, ECE and wall time; best per column in bold; oracle runs apart."""
    from toolkit.commands.report import make_report

    _quiet_libraries()
    _guard(lambda: make_report(list(targets or []), by, fmt, list(output), plot, trials,
                               lambda text: out.print(text, markup=False, highlight=False, soft_wrap=True),
                               lambda text: err.print(escape(text), highlight=False, soft_wrap=True)))


@app.command()
def ui(port: int = typer.Option(5000, help="Port on 127.0.0.1."),
       host: str = typer.Option("127.0.0.1", help="Interface to bind.")) -> None:
    """Serve the MLflow UI for the tracking store runs are logged to, opened on the runs (model training view)."""
    from toolkit.track.ui import serve

    _guard(lambda: serve(host, port, lambda line: err.print(escape(line), highlight=False, soft_wrap=True)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
