"""The progress file of a model download: its writer, its reader and the watcher's verdict.

The download (``http_download.execute`` inside the model_download module, usually an async
job) rewrites one JSON file every couple of seconds; the play's wait loop reads it with the
model_download_progress module. Both sides live here so the format has one home:

    {"updated": <epoch s>, "pid": <writer>, "finished": bool, "result": {...} | null,
     "bytes_done", "bytes_total", "rate_bytes_per_s", "eta_s",
     "files": [{"destination", "state", "bytes_done", "bytes_total", "rate_bytes_per_s",
                "eta_s"}]}

A watcher must not wait forever on a job that died (OOM killer, ``kill -9``, a VM restart):
``watch`` says it is dead when the async job's own status file says it ended, when the
writer's process is gone, or when ``updated`` is older than ``stale_after`` seconds.
Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

RATE_WINDOW_S = 10.0  # the rate and ETA in the progress file look this far back


class Progress:
    """Bytes done, rate and ETA per file and overall, rewritten to a JSON file."""

    def __init__(self, path: str | None, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self.last_write = 0.0
        self.finished = False
        self.result: dict[str, Any] | None = None

    def queue(self, destination: str, total: int | None) -> None:
        """A file that will be fetched or hashed: listed from the first write on."""
        with self.lock:
            self.files[destination] = {
                "destination": destination,
                "total": total,
                "done": 0,
                "start_done": 0,
                "started": time.time(),
                "state": "queued",
            }

    def keep_writing(self, stop: threading.Event) -> None:
        """Rewrite the file every interval even while no byte arrives (a stall, a retry
        back-off, a long hash), so a watcher always sees a fresh ``updated``."""
        while not stop.wait(self.interval):
            self.write()

    def start(self, destination: str, total: int | None, done: int = 0) -> None:
        with self.lock:
            self.files[destination] = {
                "destination": destination,
                "total": total,
                "done": done,
                "start_done": done,
                "started": time.time(),
                "state": "downloading",
            }
        self.write()

    def add(self, destination: str, count: int) -> None:
        with self.lock:
            self.files[destination]["done"] += count
        if time.time() - self.last_write >= self.interval:
            self.write()

    def end(self, destination: str, state: str) -> None:
        with self.lock:
            if destination in self.files:
                self.files[destination]["state"] = state
                self.files[destination]["ended"] = time.time()
        self.write()

    def _rate(self, item: dict[str, Any], now: float) -> float:
        """Bytes per second over the last RATE_WINDOW_S seconds while a file downloads (a stall
        shows as a falling rate and a growing ETA, not as the average so far); the average
        over the whole download once it ended."""
        if item["state"] != "downloading":
            elapsed = max(item.get("ended", now) - item["started"], 1e-6)
            return (item["done"] - item["start_done"]) / elapsed
        samples = item.setdefault("samples", [(item["started"], item["start_done"])])
        samples.append((now, item["done"]))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.pop(0)  # keep one sample at or beyond the window's start
        since, then = samples[0]
        return (item["done"] - then) / max(now - since, 1e-6)

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        files = []
        for item in self.files.values():
            rate = self._rate(item, now)
            remaining = (item["total"] - item["done"]) if item["total"] else None
            files.append(
                {
                    "destination": item["destination"],
                    "state": item["state"],
                    "bytes_done": item["done"],
                    "bytes_total": item["total"],
                    "rate_bytes_per_s": round(rate),
                    "eta_s": round(remaining / rate)
                    if remaining is not None and rate > 0
                    else None,
                }
            )
        for entry in files:
            if entry["state"] == "queued":
                entry["rate_bytes_per_s"], entry["eta_s"] = 0, None
        active = [f for f in files if f["state"] == "downloading"]
        done = sum(f["bytes_done"] for f in files)
        total = sum(f["bytes_total"] or f["bytes_done"] for f in files)
        rate = sum(f["rate_bytes_per_s"] for f in active)
        return {
            "updated": now,
            "pid": os.getpid(),
            "finished": self.finished,
            "files": files,
            "bytes_done": done,
            "bytes_total": total,
            "rate_bytes_per_s": rate,
            "eta_s": round((total - done) / rate) if rate > 0 else None,
            "result": self.result,
        }

    def write(self) -> None:
        if not self.path:
            return
        with self.lock:
            self.last_write = time.time()
            data = self.snapshot()
            tmp = f"{self.path}.{threading.get_ident()}.tmp"
            try:
                with open(tmp, "w") as handle:
                    json.dump(data, handle)
                os.replace(tmp, self.path)
            except OSError:
                pass  # progress is best effort; the download itself reports its errors


# -- the writer's markers ------------------------------------------------------------------


def read(path: str) -> dict[str, Any] | None:
    """The progress file's content, or None when it is absent or half-written."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def in_flight(path: str) -> bool:
    """An unfinished progress file: another run is writing it (its lock will refuse us)."""
    data = read(path)
    return data is not None and data.get("finished") is False


def mark(path: str, finished: bool, errors: int = 0) -> None:
    """A progress file with no files yet: a run that starts (planning), or one that ended
    before downloading anything (``result`` counts its errors)."""
    progress = Progress(path, 0)
    progress.finished = finished
    if finished:
        progress.result = {"errors": errors, "files": 0}
    progress.write()


class Heartbeat:
    """Keeps an unfinished marker fresh while the run plans (asking upstream about a long
    catalog takes a while), so a watcher does not take the quiet for a dead job."""

    def __init__(self, path: str, interval: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            mark(self.path, finished=False)

    def start(self) -> Heartbeat:
        mark(self.path, finished=False)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop rewriting (before the download's own writer or a final marker takes over)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


# -- the reader ----------------------------------------------------------------------------


def line(progress: dict[str, Any]) -> str:
    """One human line: ``3.2/17.0 GiB, 84.1 MiB/s, ETA 2m41s, 1/3 files``."""
    done = progress.get("bytes_done") or 0
    total = progress.get("bytes_total") or 0
    rate = progress.get("rate_bytes_per_s") or 0
    eta = progress.get("eta_s")
    files = progress.get("files") or []
    finished_files = sum(1 for f in files if f.get("state") == "done")
    eta_text = f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s" if eta is not None else "ETA -"
    return (
        f"{done / 1024**3:.1f}/{total / 1024**3:.1f} GiB, {rate / 1024**2:.1f} MiB/s, "
        f"{eta_text}, {finished_files}/{len(files)} files"
    )


def read_job(path: str) -> dict[str, Any] | None:
    """Ansible's async status file of the download job (``~/.ansible_async/<jid>``): None
    while absent; ``{"running": bool, "why": text}`` once written."""
    try:
        with open(path) as handle:
            text = handle.read()
        mtime = os.path.getmtime(path)
    except OSError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    running = bool(data.get("started")) and not data.get("finished")
    message = str(data.get("msg") or "")
    if running:
        why = ""
    elif not data or "Traceback" in message or not message:
        # async_wrapper found no result on the module's stdout: the process was killed
        why = "the job ended without a result (killed, out of memory, or the VM restarted)"
    else:
        why = "the job ended: " + message.splitlines()[0][:300]
    return {"running": running, "why": why, "since": mtime}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process by that id: alive
    return True


def why_dead(
    progress: dict[str, Any] | None,
    job: dict[str, Any] | None,
    now: float,
    stale_after: float,
    alive: Callable[[int], bool] = pid_alive,
) -> str | None:
    """Why an unfinished download will never finish, or None while it may still."""
    if progress is not None and progress.get("finished"):
        return None
    if job is not None and not job["running"]:
        return job["why"]
    if progress is None:
        if job is not None and now - job["since"] > stale_after:
            return f"no progress file {int(now - job['since'])} s after the job started"
        return None
    pid = progress.get("pid")
    if isinstance(pid, int) and pid > 0 and not alive(pid):
        return f"its process ({pid}) is gone (killed, out of memory, or the VM restarted)"
    age = now - float(progress.get("updated") or now)
    if age > stale_after:
        return f"its progress file was last updated {int(age)} s ago (limit {int(stale_after)} s)"
    return None


def in_hand(progress: dict[str, Any] | None) -> list[str]:
    """The files the run was busy with (downloading, else still queued)."""
    files = (progress or {}).get("files") or []
    for state in ("downloading", "queued"):
        names = [f["destination"] for f in files if f.get("state") == state]
        if names:
            return names
    return []


def dead_message(host: str, why: str, progress: dict[str, Any] | None) -> str:
    files = in_hand(progress)
    doing = "while fetching " + ", ".join(files) if files else "before it started fetching files"
    kept = (
        "The bytes fetched so far stay in "
        + ", ".join(f + ".partial" for f in files)
        + " under the Forge folder; "
        if files
        else ""
    )
    return (
        f"The model download on {host} died {doing}: {why}. {kept}re-run the play to resume "
        "from there. If it happens again, look at the VM's memory (journalctl -k | grep -i "
        "oom), its disk space, and whether it restarted (uptime)."
    )


def watch(
    path: str,
    job_file: str | None,
    stale_after: float,
    host: str,
    now: float | None = None,
) -> dict[str, Any]:
    """What the wait loop needs: finished, the human line, and ``dead`` (a message) when the
    job will never finish."""
    progress = read(path)
    job = read_job(job_file) if job_file else None
    why = why_dead(progress, job, time.time() if now is None else now, stale_after)
    return {
        "finished": bool(progress and progress.get("finished")),
        "progress": progress or {},
        "progress_line": line(progress) if progress else "starting",
        "dead": dead_message(host, why, progress) if why else None,
    }
