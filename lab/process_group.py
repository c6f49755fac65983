"""Stopping what the lab started, whole and at once: a server started in a process group of
its own (``start_new_session=True``) is stopped by signalling its group, so whatever it
started is stopped with it.

SIGTERM first, so a server can save what it must (Azurite its blob list); SIGKILL after a
short grace, because a server may never exit by itself (Azurite keeps running after its
SIGTERM shutdown while a client holds a connection open, and a stop that waited for it
waited out its timeout: 30 s of every `forge-lab site`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

GRACE_S = 1.0  # from SIGTERM to SIGKILL, at most


def signal_group(pgid: int, signum: int) -> None:
    """``signum`` to every process of the group; nothing when the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop_group(
    pgid: int,
    alive: Callable[[], bool],
    *,
    grace: float = GRACE_S,
    done: Callable[[], bool] = lambda: False,
) -> None:
    """Stop the process group ``pgid`` (its leader's pid): SIGTERM, then SIGKILL when the
    leader is still ``alive`` after ``grace`` seconds, or as soon as ``done`` says the leader
    finished what SIGTERM asked of it; returns once the leader is gone (``alive`` reaps it
    when it is the caller's own child)."""
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)
    while alive():
        time.sleep(0.01)
