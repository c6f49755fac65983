"""The ranged transfer: a file's segments fetched over several kept-alive connections into
a fixed set of recycled buffers, written in place, hashed in file order.

Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

import http.client
import os
import queue
import threading
import urllib.parse

from .download_http import (
    RETRY_STATUSES,
    DownloadError,
    Response,
    Settings,
    _bad_header,
    _connect,
    _origin,
    _Retryable,
    _with_retries,
    outgoing_headers,
    public_url,
)
from .download_partial import WRITEBACK_BYTES, _Partial, _start_writeback
from .download_progress import Progress
from .download_source import EXPIRED_STATUSES, _Source, _status_error


class _SegmentFetcher:
    """Ranged GETs for the segments of one file, one kept-alive connection per worker.

    Segments go straight to the URL the first answer came from (for CivitAI the pre-signed
    storage URL, so the API is asked once per file, not once per segment), without
    credentials unless that URL is on the catalog URL's own origin. If that URL stops
    answering (an expired signature), segments go back through the catalog URL, which
    redirects to a fresh one.
    """

    def __init__(self, source: _Source, url: str) -> None:
        self.source = source
        self.url: str | None = url
        self.local = threading.local()

    def close_mine(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None

    def _direct(self, url: str, first: int, last: int) -> Response:
        conn = getattr(self.local, "conn", None)
        if conn is None or getattr(self.local, "origin", None) != _origin(url):
            self.close_mine()
            conn = _connect(url, self.source.settings)
            self.local.conn, self.local.origin = conn, _origin(url)
        parts = urllib.parse.urlsplit(url)
        headers = outgoing_headers(
            url,
            _origin(self.source.item.url),
            headers={"Range": f"bytes={first}-{last}"},
            auth=self.source.item.auth,
            private_headers=self.source.private_headers,
        )
        try:
            conn.request(
                "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers
            )
            return Response(conn, conn.getresponse(), url)
        except (OSError, http.client.HTTPException):  # first: a certificate error is both
            self.close_mine()
            raise
        except ValueError:
            self.close_mine()
            raise _bad_header(url) from None

    def _answer(self, first: int, last: int) -> Response:
        """A 206 answer for bytes first..last, or the reason there is none."""
        url = self.url
        if url is None:
            resp = self.source.open(first, last)  # through the catalog URL, on a new connection
            if resp.status != 206:
                resp.close()
                raise DownloadError(f"{self.source.label}: the server stopped honouring Range")
            if resp.url != self.source.item.url:
                self.url = resp.url  # a fresh storage URL for the segments still to come
            return resp
        resp = self._direct(url, first, last)
        if resp.status == 206:
            return resp
        self._drop(resp)
        if resp.status == 200:
            raise DownloadError(f"{self.source.label}: the server stopped honouring Range")
        if url != self.source.item.url and resp.status not in RETRY_STATUSES:
            self.url = None  # expired or refused: back through the catalog URL for a fresh one
            raise _Retryable(f"HTTP {resp.status} from {public_url(url)}", "0")
        if resp.status in EXPIRED_STATUSES and self.source.renew():
            self.url = self.source.item.url  # the hub's fresh CDN URL (Hugging Face)
            raise _Retryable(f"HTTP {resp.status} from the CDN: its signed URL expired", "0")
        raise _status_error(resp, self.source.label)

    def _drop(self, resp: Response) -> None:
        if resp.conn is getattr(self.local, "conn", None):
            self.close_mine()
        else:
            resp.close()

    def fill(self, first: int, last: int, view: memoryview) -> None:
        """Fill ``view`` with bytes first..last of the file."""
        resp = self._answer(first, last)
        got = 0
        keep = False
        try:
            while got < len(view):
                count = resp.resp.readinto(view[got:])
                if not count:
                    break
                got += count
            # The connection carries the next GET only when this answer held exactly the bytes
            # asked for (http.client closes a response read to its end). A server sending more
            # is cut off here: the rest is never read, so it can never pile up in memory.
            keep = (
                got == len(view)
                and resp.resp.isclosed()
                and not resp.resp.will_close
                and resp.conn is getattr(self.local, "conn", None)
            )
        finally:
            if not keep:
                self._drop(resp)
        if got != len(view):
            raise _Retryable(f"segment {first}-{last} cut short ({got} bytes)")


class _Ranged:
    """One file in segments over ``connections`` connections."""

    def __init__(self, source: _Source, partial: _Partial, settings: Settings, progress: Progress):
        self.source = source
        self.partial = partial
        self.settings = settings
        self.progress = progress
        self.label = source.label

    def run(self, start: int, total: int, digest, url: str) -> int:  # noqa: PLR0915
        """Segments fetched over several connections; hashed in order as they complete.

        ``connections + 2`` segment buffers are allocated once and recycled: a worker takes a
        free buffer, then the next segment, fills the buffer and writes it in place; the loop
        below hashes buffers in file order and hands them back. Memory is therefore fixed
        (about (connections + 2) x segment_bytes) whatever the file size, and nothing is read
        back from disk. Taking the buffer before the segment keeps it deadlock-free: segments
        leave the queue in order, so the oldest one not yet hashed always belongs to a worker
        that holds a buffer (taking the segment first lets a stalled worker wait for a buffer
        only its own segment would free).
        """
        size = self.settings.segment_bytes
        segments = [(o, min(o + size, total) - 1) for o in range(start, total, size)]
        slots = min(self.settings.connections + 2, len(segments))
        free: queue.Queue = queue.Queue()
        for _ in range(slots):
            free.put(bytearray(size))
        ready: dict[int, tuple[bytearray, int]] = {}
        cond = threading.Condition()
        failure: list[BaseException] = []
        tasks: queue.Queue = queue.Queue()
        for index, segment in enumerate(segments):
            tasks.put((index, segment))
        fd = os.open(self.partial.partial, os.O_WRONLY)
        fetcher = _SegmentFetcher(self.source, url)
        flushed = start

        def worker() -> None:
            try:
                while True:
                    buffer = None
                    while buffer is None and not failure:
                        try:
                            buffer = free.get(timeout=0.5)
                        except queue.Empty:
                            continue
                    if failure:
                        return
                    try:
                        index, (first, last) = tasks.get_nowait()
                    except queue.Empty:
                        free.put(buffer)
                        return
                    view = memoryview(buffer)[: last - first + 1]
                    try:
                        _with_retries(
                            self.label,
                            self.settings,
                            lambda f=first, la=last, v=view: fetcher.fill(f, la, v),
                        )
                        try:
                            os.pwrite(fd, view, first)
                        except OSError as error:
                            raise self.partial.write_error(error) from None
                    except BaseException as error:  # reported by the hashing loop below
                        failure.append(error)
                        with cond:
                            cond.notify_all()
                        return
                    with cond:
                        ready[index] = (buffer, len(view))
                        cond.notify_all()
            finally:
                fetcher.close_mine()

        threads = [
            threading.Thread(target=worker, daemon=True)
            for _ in range(min(self.settings.connections, len(segments)))
        ]
        for thread in threads:
            thread.start()
        done = start
        try:
            for index in range(len(segments)):
                with cond:
                    while index not in ready and not failure:
                        cond.wait(1.0)
                    if failure and index not in ready:
                        break
                    buffer, count = ready.pop(index)
                digest.update(memoryview(buffer)[:count])
                free.put(buffer)
                done += count
                if done - flushed >= WRITEBACK_BYTES:  # every byte before ``done`` is written
                    _start_writeback(fd, flushed, done - flushed)
                    flushed = done
                self.progress.add(self.source.item.destination, count)
                if index % 8 == 7:
                    self.partial.save_state(done)
        finally:
            for thread in threads:
                thread.join(timeout=1)
            os.fsync(fd)
            os.close(fd)
            self.partial.save_state(done)
        if failure:
            error = failure[0]
            raise (
                error
                if isinstance(error, DownloadError)
                else DownloadError(
                    f"{self.label}: {type(error).__name__}: {error}; re-run to resume"
                )
            )
        return done
