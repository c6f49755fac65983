"""The partial file of one download and what makes it resumable and safe: ``<file>.partial``
with its resume record ``<file>.partial.json`` (the verified prefix, tied to the expected
sha256 and the URL), writeback hints, a write failure told apart from a network fault, and
the final check (size and sha256) before the atomic rename.

Shared by the single-stream and the ranged transfer. Standard library only, Python 3.8+
(it runs on the VMs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

from .download_http import DownloadError, public_url
from .download_item import PlanItem

WRITEBACK_BYTES = 32 * 1024 * 1024  # written bytes handed to the kernel's writeback at a time
STATE_SAVE_S = 2.0  # a single stream records its resume point this often


def _start_writeback(fd: int, start: int, length: int) -> None:
    """Have the kernel start writing this range to disk now, without waiting for it.

    POSIX_FADV_DONTNEED on Linux starts asynchronous writeback of the range's dirty pages (it
    drops only pages already clean, so the bytes still being written stay cached). The fsync
    before the rename then finds little left to write; an fdatasync here instead would stall
    the hash for the whole writeback.
    """
    if hasattr(os, "posix_fadvise"):
        # Only a hint: the fsync before the rename makes the file durable either way.
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def bytes_kept(item: PlanItem, path: str) -> int:
    """Bytes of ``<path>.partial`` that a download of ``item`` resumes from (0 when it would
    discard them): what the plan subtracts from what is left to fetch."""
    return _Partial(item, path).kept()


class _Partial:
    """``<path>.partial`` and its resume record for one plan item."""

    def __init__(self, item: PlanItem, path: str):
        self.item = item
        self.path = path
        self.partial = path + ".partial"
        self.state_path = path + ".partial.json"
        self.saving_path = self.state_path + ".saving"  # the record while it is being saved
        self.label = item.label

    def kept(self) -> int:
        """Bytes of the partial file that a run keeps and resumes from: the resume record's
        verified prefix when the record is for this same download (same sha256 and URL), no
        more than the file holds; 0 when the run would discard the file. Reads only: the plan
        counts what is left to fetch with it, the run resumes from it (``resume_point``)."""
        prefix = self._recorded_prefix()
        size = _size(self.partial)
        if prefix is None or size is None:
            return 0
        return min(prefix, size)

    def _recorded_prefix(self) -> int | None:
        """The resume record's prefix, or None when it is missing, unreadable or for another
        download (the expected sha256 or the URL changed)."""
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict):
            return None
        if state.get("sha256") != self.item.sha256 or state.get("url_key") != self._url_key():
            return None
        try:
            return max(int(state.get("prefix", 0)), 0)
        except (TypeError, ValueError):
            return None

    def resume_point(self, digest, buffer_bytes: int) -> int:
        """Bytes already in the partial file that belong to this same download (``kept``):
        the file is cut to them and they are hashed; a partial of another download is
        deleted with its record."""
        if self._recorded_prefix() is None:
            for stale in (self.partial, self.state_path, self.saving_path):
                if os.path.exists(stale):
                    os.unlink(stale)
            return 0
        done = self.kept()
        with open(self.partial, "r+b") as handle:
            handle.truncate(done)
            remaining = done
            while remaining:  # the verified prefix is hashed once more, only on resume
                chunk = handle.read(min(remaining, buffer_bytes))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
        return done

    def _url_key(self) -> str:
        return hashlib.sha256(public_url(self.item.url).encode()).hexdigest()[:16]

    def save_state(self, prefix: int) -> None:
        """Record the resume point whole or not at all: a kill -9 mid-save keeps the last one."""
        with open(self.saving_path, "w") as handle:
            json.dump(
                {"sha256": self.item.sha256, "url_key": self._url_key(), "prefix": prefix},
                handle,
            )
        os.replace(self.saving_path, self.state_path)

    def write_error(self, error: BaseException) -> BaseException:
        """A failed write or hash is not a dropped connection: no retry, and the message says
        so (a full disk would otherwise read as a network fault after minutes of back-off)."""
        if isinstance(error, OSError):
            return DownloadError(
                f"{self.label}: cannot write {self.partial}: {error.strerror or error}; what is "
                "there is kept (free disk space, then re-run to resume)"
            )
        return error

    def finish(self, done: int, digest) -> str:
        actual = digest.hexdigest()
        expected = self.item.sha256
        total = self.item.size
        problem = None
        if total is not None and done != total:
            problem = f"size {done} bytes, expected {total}"
        elif expected and actual != expected.lower():
            problem = f"sha256 {actual}, expected {expected.lower()}"
        if problem:
            for path in (self.partial, self.state_path):
                if os.path.exists(path):
                    os.unlink(path)
            raise DownloadError(
                f"{self.label}: the downloaded file does not match ({problem}); it was deleted, "
                "nothing is under the final name; re-run, and check the catalog's sha256 if it "
                "happens again"
            )
        os.replace(self.partial, self.path)
        for done_with in (self.state_path, self.saving_path):
            if os.path.exists(done_with):
                os.unlink(done_with)
        return actual
