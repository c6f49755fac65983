"""Free space on the file system that holds (or will hold) a path."""

from __future__ import annotations

import os


def nearest_existing(path: str) -> str:
    """The path itself, or its closest ancestor that exists (a path may not exist yet)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def free_space(path: str) -> dict:
    """Bytes free for unprivileged users and in total on the file system of ``path``."""
    measured = nearest_existing(path)
    stats = os.statvfs(measured)
    return {
        "path": path,
        "measured_path": measured,
        "free_bytes": stats.f_bavail * stats.f_frsize,
        "total_bytes": stats.f_blocks * stats.f_frsize,
    }
