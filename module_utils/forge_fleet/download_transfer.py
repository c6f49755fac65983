"""Fetching one file: a single stream or ranged connections into ``<file>.partial``,
hashed while it streams, resumed with Range, renamed into place only when size and sha256
match.

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import queue
import threading
import time
import urllib.parse

from .download_http import (
    RETRY_STATUSES,
    DownloadError,
    Response,
    Settings,
    _bad_header,
    _connect,
    _origin,
    _retry_delay,
    _Retryable,
    _with_retries,
    outgoing_headers,
    public_url,
    request,
)
from .download_item import PlanItem
from .download_plan import _stat
from .download_progress import Progress

WRITEBACK_BYTES = 32 * 1024 * 1024  # written bytes handed to the kernel's writeback at a time
EXPIRED_STATUSES = (401, 403, 410)  # how a CDN refuses a signed URL past its expiry
MODEL_REFUSED_TYPES = ("text/html", "application/json")
# How a page or an API error begins: no model format starts so (safetensors begins with an
# 8-byte little-endian length, GGUF with "GGUF", torch files with "PK" or a pickle opcode).
NON_MODEL_STARTS = (b"<!doctype html", b"<html", b"<?xml", b'{"error"')
PUMP_BUFFERS = 16  # x buffer_bytes (1 MiB): received data waiting to be written and hashed
STATE_SAVE_S = 2.0  # a single stream records its resume point this often


def _refuse_non_model(resp: Response, label: str, at_start: bool) -> None:
    """An HTML or JSON answer where a model was expected is an error, never a file.

    Known by its Content-Type, or, for the first bytes of a file, by how it begins (a login
    page served as application/octet-stream)."""
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip().lower()
    looks_like_page = at_start and resp.resp.peek(64)[:64].lstrip().lower().startswith(
        NON_MODEL_STARTS
    )
    if ctype in MODEL_REFUSED_TYPES or looks_like_page:
        body = resp.resp.read(300).decode("utf-8", "replace")
        resp.close()
        start = body.lstrip()[:14].lower()
        if ctype == "text/html" or start.startswith(("<!doctype html", "<html")):
            hint = "a login page"
        elif start.startswith("<"):
            hint = "an error page"
        else:
            hint = f"a JSON message ({body[:120]!r})"
        raise DownloadError(
            f"{label}: the server sent {hint} instead of the model (HTTP {resp.status}); check "
            "the API key or token and whether the model needs early access; nothing was saved"
        )


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


class _AlreadyComplete(Exception):
    """416 to a resume: the partial file already holds every byte the server has."""


def _range_total(resp: Response) -> int | None:
    """The full length from ``Content-Range: bytes */N`` (a 416 answer), if given."""
    found = (resp.header("Content-Range") or "").rpartition("/")[2].strip()
    return int(found) if found.isdigit() else None


def _status_error(resp: Response, label: str) -> Exception:
    if resp.status in RETRY_STATUSES:
        return _Retryable(
            f"HTTP {resp.status} from {public_url(resp.url)}", resp.header("Retry-After")
        )
    if resp.status in (401, 403):
        return DownloadError(
            f"{label}: HTTP {resp.status} from {public_url(resp.url)}; the token or API key is "
            "missing, wrong, or has no access to this model"
        )
    return DownloadError(f"{label}: HTTP {resp.status} from {public_url(resp.url)}")


class _SegmentFetcher:
    """Ranged GETs for the segments of one file, one kept-alive connection per worker.

    Segments go straight to the URL the first answer came from (for CivitAI the pre-signed
    storage URL, so the API is asked once per file, not once per segment), without
    credentials unless that URL is on the catalog URL's own origin. If that URL stops
    answering (an expired signature), segments go back through the catalog URL, which
    redirects to a fresh one.
    """

    def __init__(self, fetch: _Fetch, url: str) -> None:
        self.fetch = fetch
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
            conn = _connect(url, self.fetch.settings)
            self.local.conn, self.local.origin = conn, _origin(url)
        parts = urllib.parse.urlsplit(url)
        headers = outgoing_headers(
            url,
            _origin(self.fetch.item.url),
            headers={"Range": f"bytes={first}-{last}"},
            auth=self.fetch.item.auth,
            private_headers=self.fetch.private_headers,
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
            resp = self.fetch._open(first, last)  # through the catalog URL, on a new connection
            if resp.status != 206:
                resp.close()
                raise DownloadError(f"{self.fetch.label}: the server stopped honouring Range")
            if resp.url != self.fetch.item.url:
                self.url = resp.url  # a fresh storage URL for the segments still to come
            return resp
        resp = self._direct(url, first, last)
        if resp.status == 206:
            return resp
        self._drop(resp)
        if resp.status == 200:
            raise DownloadError(f"{self.fetch.label}: the server stopped honouring Range")
        if url != self.fetch.item.url and resp.status not in RETRY_STATUSES:
            self.url = None  # expired or refused: back through the catalog URL for a fresh one
            raise _Retryable(f"HTTP {resp.status} from {public_url(url)}", "0")
        if resp.status in EXPIRED_STATUSES and self.fetch.renew():
            self.url = self.fetch.item.url  # the hub's fresh CDN URL (Hugging Face)
            raise _Retryable(f"HTTP {resp.status} from the CDN: its signed URL expired", "0")
        raise _status_error(resp, self.fetch.label)

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


class _Fetch:
    """Download one resolved item into ``<dest>.partial``, hashing as bytes arrive."""

    def __init__(self, item: PlanItem, path: str, settings: Settings, progress: Progress):
        self.item = item
        self.path = path
        self.partial = path + ".partial"
        self.state_path = path + ".partial.json"
        self.settings = settings
        self.progress = progress
        self.label = item.label
        # Catalog headers (e.g. a private mirror's Authorization) go only to the URL's own
        # origin, never to a host it redirects to.
        self.private_headers = dict(item.headers)
        self.pumped = 0  # bytes written and hashed when the last _pump call ended

    def _open(self, start: int, end: int | None = None) -> Response:
        headers: dict[str, str] = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = request(
            "GET",
            self.item.url,
            self.settings,
            headers=headers,
            auth=self.item.auth,
            private_headers=self.private_headers,
        )
        if resp.status == 416 and start and _range_total(resp) == start:
            resp.close()
            raise _AlreadyComplete()
        if resp.status not in (200, 206):
            resp.close()
            if resp.status in EXPIRED_STATUSES and self.renew():
                raise _Retryable(f"HTTP {resp.status} from the CDN: its signed URL expired", "0")
            raise _status_error(resp, self.label)
        _refuse_non_model(resp, self.label, at_start=start == 0)
        return resp

    def renew(self) -> bool:
        """Ask the hub again for the CDN URL (HEAD, token to the hub only, redirect not
        followed): signed URLs expire, and a large file can outlast one. True if a new URL
        came; the caller retries with it (within the usual retry budget)."""
        hub_url = self.item.renew
        if not hub_url:
            return False
        resp = request("HEAD", hub_url, self.settings, auth=self.settings.hf_token, follow=False)
        resp.close()
        location = resp.header("Location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return False
        self.item.url = urllib.parse.urljoin(hub_url, location)
        return True

    def _resume_point(self, digest) -> int:
        """Bytes already in the partial file that belong to this same download."""
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            state = {}
        if state.get("sha256") != self.item.sha256 or state.get("url_key") != self._url_key():
            for stale in (self.partial, self.state_path):
                if os.path.exists(stale):
                    os.unlink(stale)
            return 0
        done = min(int(state.get("prefix", 0)), (_stat(self.partial) or (0, 0))[0])
        with open(self.partial, "r+b") as handle:
            handle.truncate(done)
            remaining = done
            while remaining:  # the verified prefix is hashed once more, only on resume
                chunk = handle.read(min(remaining, self.settings.buffer_bytes))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
        return done

    def _url_key(self) -> str:
        return hashlib.sha256(public_url(self.item.url).encode()).hexdigest()[:16]

    def _save_state(self, prefix: int) -> None:
        with open(self.state_path, "w") as handle:
            json.dump(
                {"sha256": self.item.sha256, "url_key": self._url_key(), "prefix": prefix},
                handle,
            )

    def run(self) -> str:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        digest = hashlib.sha256()
        done = self._resume_point(digest) if os.path.exists(self.partial) else 0
        total = self.item.size
        if done and done == total:
            return self._finish(done, digest)  # the run stopped between last byte and rename
        # Nothing is written until the server answers with a model: no empty partial files.
        try:
            first = _with_retries(self.label, self.settings, lambda: self._open(done))
        except _AlreadyComplete:
            self.item.size = done  # the server says the file ends where the partial does
            return self._finish(done, digest)
        if not os.path.exists(self.partial):
            open(self.partial, "wb").close()
        self._save_state(done)
        self.progress.start(self.item.destination, total or self.item.size_estimate, done)
        if first.status == 200 and done:
            digest = hashlib.sha256()  # the server ignored Range: start over
            done = 0
            with open(self.partial, "r+b") as handle:
                handle.truncate(0)
        length = first.header("Content-Length")
        if total is None and length and length.isdigit():
            total = done + int(length)
            self.item.size = total
        ranged = first.header("Accept-Ranges") == "bytes" or first.status == 206
        remaining = (total - done) if total else None
        if (
            self.settings.connections > 1
            and ranged
            and remaining is not None
            and remaining >= self.settings.min_split_bytes
        ):
            first.close()
            done = self._parallel(done, total, digest, first.url)
        else:
            done = self._stream(first, done, total, digest)
        return self._finish(done, digest)

    def _pump(self, resp: Response, handle, digest, done: int) -> int:
        """Receive into reused buffers while another thread writes and hashes the last ones.

        Receiving, writing and hashing all release the GIL, so they overlap; the buffers are
        recycled, so memory stays at a few megabytes whatever the file size.
        """
        size = self.settings.buffer_bytes
        free: queue.Queue = queue.Queue()
        for _ in range(PUMP_BUFFERS):
            free.put(bytearray(size))
        full: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        def sink(written: int) -> None:
            flushed = written
            saved_at = time.monotonic()
            while True:
                item = full.get()
                if item is None:
                    return
                buffer, count = item
                try:
                    view = memoryview(buffer)[:count]
                    handle.write(view)
                    digest.update(view)
                    written += count
                    if written - flushed >= WRITEBACK_BYTES:
                        handle.flush()
                        _start_writeback(handle.fileno(), flushed, written - flushed)
                        flushed = written
                    if time.monotonic() - saved_at >= STATE_SAVE_S:
                        # A run killed outright (OOM, kill -9, a restart) saves nothing on
                        # its way out: the next one resumes from the last prefix saved here.
                        handle.flush()
                        self._save_state(written)
                        saved_at = time.monotonic()
                except BaseException as error:  # surfaced in the receiving thread
                    failure.append(error)
                free.put(buffer)

        writer = threading.Thread(target=sink, args=(done,), daemon=True)
        writer.start()
        try:
            while not failure:
                buffer = free.get()
                count = resp.resp.readinto(buffer)
                if not count:
                    free.put(buffer)
                    break
                full.put((buffer, count))
                done += count
                self.progress.add(self.item.destination, count)
        finally:
            full.put(None)
            writer.join()
            # Every byte counted is now written and hashed: where a resume must start, also
            # when a timeout or a reset ends this call with an exception.
            self.pumped = done
        if failure:
            raise self._write_error(failure[0])
        return done

    def _write_error(self, error: BaseException) -> BaseException:
        """A failed write or hash is not a dropped connection: no retry, and the message says
        so (a full disk would otherwise read as a network fault after minutes of back-off)."""
        if isinstance(error, OSError):
            return DownloadError(
                f"{self.label}: cannot write {self.partial}: {error.strerror or error}; what is "
                "there is kept (free disk space, then re-run to resume)"
            )
        return error

    def _stream(self, resp: Response, done: int, total: int | None, digest) -> int:
        with open(self.partial, "r+b") as handle:
            handle.seek(done)
            attempt = 0
            while True:
                try:
                    done = self._pump(resp, handle, digest, done)
                    resp.close()
                    if total is None or done >= total:
                        handle.flush()
                        os.fsync(handle.fileno())
                        return done
                    raise http.client.IncompleteRead(b"", total - done)
                except (OSError, http.client.HTTPException) as error:
                    resp.close()
                    done = self.pumped  # what the interrupted call wrote before it failed
                    handle.flush()
                    self._save_state(done)
                    if attempt >= self.settings.retries:
                        raise DownloadError(
                            f"{self.label}: connection kept dropping after {done} bytes "
                            f"({type(error).__name__}); re-run to resume"
                        ) from None
                    time.sleep(_retry_delay(self.settings, attempt, None))
                    attempt += 1
                    resp = _with_retries(self.label, self.settings, lambda at=done: self._open(at))
                    if resp.status != 206 and done:  # from 0, a whole answer (200) is right
                        resp.close()
                        raise DownloadError(
                            f"{self.label}: the server stopped honouring Range"
                        ) from None

    def _parallel(self, start: int, total: int, digest, url: str) -> int:  # noqa: PLR0915
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
        fd = os.open(self.partial, os.O_WRONLY)
        fetcher = _SegmentFetcher(self, url)
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
                            raise self._write_error(error) from None
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
                self.progress.add(self.item.destination, count)
                if index % 8 == 7:
                    self._save_state(done)
        finally:
            for thread in threads:
                thread.join(timeout=1)
            os.fsync(fd)
            os.close(fd)
            self._save_state(done)
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

    def _finish(self, done: int, digest) -> str:
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
        if os.path.exists(self.state_path):
            os.unlink(self.state_path)
        return actual
