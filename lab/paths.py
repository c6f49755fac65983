"""Where the lab keeps its state: ``.lab/`` in the repository, git-ignored."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".lab"
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
APT_ARCHIVES = STATE_DIR / "apt-archives"


def lab_dir(name: str) -> Path:
    """State of one named lab: its inventory and known_hosts."""
    return STATE_DIR / "labs" / name


@contextmanager
def state_lock() -> Iterator[None]:
    """Hold the lab's lock while creating what all labs share (key, CA, network, image):
    test workers and operators start labs side by side, and the first one creates them."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
