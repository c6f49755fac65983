"""The single-stream transfer: one GET's body received into reused buffers while another
thread writes and hashes them, the resume point saved as it goes, a dropped connection
resumed with Range.

Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

import http.client
import os
import queue
import threading
import time

from .download_http import DownloadError, Response, Settings, _retry_delay, _with_retries
from .download_partial import STATE_SAVE_S, WRITEBACK_BYTES, _Partial, _start_writeback
from .download_progress import Progress
from .download_source import _Source

PUMP_BUFFERS = 16  # x buffer_bytes (1 MiB): received data waiting to be written and hashed


class _SingleStream:
    """One file over one connection (after a dropped one, a Range GET from where it ended)."""

    def __init__(self, source: _Source, partial: _Partial, settings: Settings, progress: Progress):
        self.source = source
        self.partial = partial
        self.settings = settings
        self.progress = progress
        self.label = source.label
        self.pumped = 0  # bytes written and hashed when the last _pump call ended

    def run(self, resp: Response, done: int, total: int | None, digest) -> int:
        with open(self.partial.partial, "r+b") as handle:
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
                    self.partial.save_state(done)
                    if attempt >= self.settings.retries:
                        raise DownloadError(
                            f"{self.label}: connection kept dropping after {done} bytes "
                            f"({type(error).__name__}); re-run to resume"
                        ) from None
                    time.sleep(_retry_delay(self.settings, attempt, None))
                    attempt += 1
                    resp = _with_retries(
                        self.label, self.settings, lambda at=done: self.source.open(at)
                    )
                    if resp.status != 206 and done:  # from 0, a whole answer (200) is right
                        resp.close()
                        raise DownloadError(
                            f"{self.label}: the server stopped honouring Range"
                        ) from None

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
                        self.partial.save_state(written)
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
                self.progress.add(self.source.item.destination, count)
        finally:
            full.put(None)
            writer.join()
            # Every byte counted is now written and hashed: where a resume must start, also
            # when a timeout or a reset ends this call with an exception.
            self.pumped = done
        if failure:
            raise self.partial.write_error(failure[0])
        return done
