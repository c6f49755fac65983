"""Where the lab keeps its state: ``.lab/`` in the repository, git-ignored."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".lab"
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
APT_ARCHIVES = STATE_DIR / "apt-archives"


def lab_dir(name: str) -> Path:
    """State of one named lab: its inventory and known_hosts."""
    return STATE_DIR / "labs" / name
