"""The sha256 of a file, read in chunks: model files (downloads, the fleet cache) and the
checkout's files that feed Forge's preparation. Standard library only."""

from __future__ import annotations

import hashlib


def sha256_file(path: str, buffer_bytes: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(buffer_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
