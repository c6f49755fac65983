"""Fetching one file: a single stream or ranged connections into ``<file>.partial``,
hashed while it streams, resumed with Range, renamed into place only when size and sha256
match.

``_Fetch`` decides (resume point, first answer, one stream or segments); the pieces it uses
depend on nothing here, and not on each other:

    download_source   asking the source (Range GET, pages refused, signed URL renewed)
    download_partial  the partial file, its resume record, the final size/sha256 check
    download_stream   the single-stream transfer
    download_ranged   the ranged (segmented) transfer

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import hashlib
import os

from .download_http import Settings, _with_retries
from .download_item import PlanItem
from .download_partial import _Partial
from .download_progress import Progress
from .download_ranged import _Ranged
from .download_source import _AlreadyComplete, _Source
from .download_stream import _SingleStream


class _Fetch:
    """Download one resolved item into ``<dest>.partial``, hashing as bytes arrive."""

    def __init__(self, item: PlanItem, path: str, settings: Settings, progress: Progress):
        self.item = item
        self.settings = settings
        self.progress = progress
        self.label = item.label
        self.source = _Source(item, settings)
        self.partial = _Partial(item, path)

    def run(self) -> str:
        os.makedirs(os.path.dirname(self.partial.path), exist_ok=True)
        digest = hashlib.sha256()
        done = (
            self.partial.resume_point(digest, self.settings.buffer_bytes)
            if os.path.exists(self.partial.partial)
            else 0
        )
        total = self.item.size
        if done and done == total:
            return self.partial.finish(done, digest)  # the run stopped between last byte and rename
        # Nothing is written until the server answers with a model: no empty partial files.
        try:
            first = _with_retries(self.label, self.settings, lambda: self.source.open(done))
        except _AlreadyComplete:
            self.item.size = done  # the server says the file ends where the partial does
            return self.partial.finish(done, digest)
        if not os.path.exists(self.partial.partial):
            open(self.partial.partial, "wb").close()
        self.partial.save_state(done)
        self.progress.start(self.item.destination, total or self.item.size_estimate, done)
        if first.status == 200 and done:
            digest = hashlib.sha256()  # the server ignored Range: start over
            done = 0
            with open(self.partial.partial, "r+b") as handle:
                handle.truncate(0)
        length = first.header("Content-Length")
        if total is None and length and length.isdigit():
            total = done + int(length)
            self.item.size = total
        parts = (self.source, self.partial, self.settings, self.progress)
        ranged = first.header("Accept-Ranges") == "bytes" or first.status == 206
        remaining = (total - done) if total else None
        if (
            self.settings.connections > 1
            and ranged
            and remaining is not None
            and remaining >= self.settings.min_split_bytes
        ):
            first.close()
            done = _Ranged(*parts).run(done, total, digest, first.url)
        else:
            done = _SingleStream(*parts).run(first, done, total, digest)
        return self.partial.finish(done, digest)
