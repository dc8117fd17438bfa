"""SIGTERM and SIGINT as a clean interruption of a run.

A cluster scheduler pre-empts a job with SIGTERM (then SIGKILL after a grace period); by default Python
just dies on it, leaving run_state.json "running" and the MLflow run RUNNING forever. Inside
`interrupt_on_signals()` both signals raise `Interrupted` (a KeyboardInterrupt) in the main thread, so the
engine abandons the current step, records the run as interrupted (run state "interrupted", MLflow run
KILLED) and the CLI exits with 128 + the signal number. The per-epoch checkpoint and the plugin stages'
resume points are where `--resume` continues.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Iterator

#: The signals that interrupt a run: a scheduler's pre-emption and Ctrl-C.
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; a KeyboardInterrupt, so everything that treats Ctrl-C as "not a failure"
    (run state, MLflow status KILLED, plugins' clean-up) treats it the same way."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + self.signum


@contextmanager
def interrupt_on_signals(signums: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """While inside, each of `signums` raises `Interrupted` in the main thread; later ones, while the run
    is shutting down after the first, are ignored with a note (a second Ctrl-C must not cut the recording
    of the interruption short with a traceback). The previous handlers come back on exit.

    Outside the main thread (where handlers cannot be set) this does nothing; a signal the process was
    started with set to ignored (e.g. SIGINT of a background job) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if _state.delivered or _state.pending is not None:
            _note(f"{signal.Signals(signum).name} again: still recording the interruption "
                  "(SIGKILL stops at once)\n")
            return
        if _state.depth:  # inside an observer's event: raised when it is done (see `deferred`)
            _state.pending = signum
            return
        _state.delivered = True
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    _state.pending, _state.delivered = None, False
    try:
        for signum in signums:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        _state.pending, _state.delivered = None, False


class _State:
    """The main thread's interruption bookkeeping (signal handlers only ever run there)."""

    depth = 0  # how many `deferred` blocks the main thread is in
    pending: int | None = None  # a signal that arrived inside one, raised when the outermost ends
    delivered = False  # Interrupted was raised: later signals only get a note


_state = _State()


@contextmanager
def deferred(hold: bool = False) -> Iterator[None]:
    """A block an interruption must not cut in half: a signal arriving inside is raised as `Interrupted`
    when the outermost block ends. The event bus runs every observer call in one, so a checkpoint or an
    MLflow write finishes (a SQLite write cut short keeps its transaction, and the database locked,
    for as long as the traceback lives) and the run stops in the training itself. With `hold`, the
    signal waits for the end of the next block instead (the run's start happens before the engine
    catches interruptions to record them; its next event is inside).
    No effect outside the main thread or outside `interrupt_on_signals`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    # only reached when the block did not raise: an error of its own is what the run ends with
    if not hold and not _state.depth and _state.pending is not None and not _state.delivered:
        _state.delivered = True
        raise Interrupted(_state.pending)


def ignore_signals(signums: tuple[int, ...] = SIGNALS) -> None:
    """The process is about to exit after an interruption: further signals must not turn that into a
    traceback. Main thread only (a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        for signum in signums:
            signal.signal(signum, signal.SIG_IGN)


def _note(text: str) -> None:
    """Write from a signal handler: a plain write to stderr's descriptor, no buffers or locks."""
    try:
        os.write(2, text.encode())
    except OSError:
        pass
