"""Joining Ray: a local instance, or a cluster at --address that is probed first so a wrong address fails in seconds."""

from __future__ import annotations

import logging
import os

from toolkit.errors import UserError


def start_ray(address: str | None) -> bool:
    """ray.init on `address` (or a local instance); False when Ray was already running in this process."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Ray tables between our lines
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    if ray.is_initialized():
        return False
    if address:
        probe_address(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            raise cluster_error(address, why_unreachable(exc)) from None
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return True


def probe_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at HOST:PORT (ray.init itself retries for minutes)."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" or another form Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise cluster_error(address, f"nothing answers: {exc.strerror or exc}") from None


def cluster_error(address: str, why: str) -> UserError:
    return UserError(f"cannot join the Ray cluster at {address} ({why}); start it with `ray start --head`, fix "
                     "--address / RAY_ADDRESS, or leave both unset to run on a local Ray instance")


def why_unreachable(exc: BaseException) -> str:
    """One clause for a failed ray.init(address=...): the token case needs its own hint."""
    text = " ".join(str(e) for e in (exc, exc.__cause__) if e is not None)
    if "InvalidAuthToken" in text or "Authentication token" in text:
        return ("the cluster wants an authentication token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
                "RAY_AUTH_TOKEN_PATH) as for the cluster's nodes")
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
