"""Executing a plan: the Forge folder's download lock, files fetched in parallel, the
manifest updated, progress written for the watcher.

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .download_http import DownloadError, Settings
from .download_item import PlanItem
from .download_plan import _stat, load_manifest, save_manifest, sha256_file
from .download_progress import Progress
from .download_transfer import _Fetch
from .model_cache import SHA256, CacheMiss

LOCK = "models/.forge-fleet-download.lock"


def _record(forge_dir: str, item: PlanItem, sha: str, **fetched: Any) -> dict[str, Any]:
    size, mtime_ns = _stat(os.path.join(forge_dir, item.destination)) or (0, 0)
    return item.manifest_record(size, mtime_ns, sha, **fetched)


def _from_cache(item: PlanItem, path: str, settings: Settings, progress: Progress) -> str:
    """Pull the file from the fleet cache; "" when done, else why the origin is asked."""
    if settings.cache is None:
        return "off"
    if not SHA256.match(item.sha256 or ""):
        return "no sha256 known in advance: not cacheable"
    progress.start(item.destination, item.size or item.size_estimate, 0)
    try:
        settings.cache.pull(item.sha256, item.size, path)
    except CacheMiss as miss:
        item.cache_bad = miss.bad
        return miss.reason
    progress.add(item.destination, os.path.getsize(path))
    return ""


def _execute_one(
    item: PlanItem, forge_dir: str, settings: Settings, progress: Progress
) -> dict[str, Any]:
    path = os.path.join(forge_dir, item.destination)
    action = item.action
    if action == "present":
        # Known by its entry: nothing to record. Found by destination for a changed entry
        # (e.g. a new label): record the new entry key so the next run asks nobody.
        fresh = item.url is not None
        record = _record(forge_dir, item, item.sha256) if fresh else None
        return item.outcome(path, "present", item.sha256, item.size, record)
    if action == "verify":
        actual = sha256_file(path)
        if item.sha256 in (None, actual):
            record = _record(forge_dir, item, actual)
            return item.outcome(path, "verified", actual, os.path.getsize(path), record)
        action = "repaired"
    done = "repaired" if action in ("repair", "repaired") else "downloaded"
    miss = _from_cache(item, path, settings, progress)
    if not miss:
        progress.end(item.destination, "done")
        record = _record(forge_dir, item, item.sha256, fetched_from="cache", origin_bytes=0)
        outcome = item.outcome(path, done, item.sha256, os.path.getsize(path), record)
        outcome.update(source="cache", cache="hit", origin_bytes=0)
        return outcome
    sha = _Fetch(item, path, settings, progress).run()
    progress.end(item.destination, "done")
    size = os.path.getsize(path)
    record = _record(forge_dir, item, sha, fetched_from="origin", origin_bytes=size)
    outcome = item.outcome(path, done, sha, size, record)
    outcome.update(source="origin", cache=miss, origin_bytes=size)
    if item.cache_bad:
        outcome["cache_bad"] = {"sha256": item.sha256, "got": item.cache_bad, "label": item.label}
    return outcome


def hold_lock(forge_dir: str):
    """An exclusive lock on the Forge folder's downloads, held until the returned file closes.

    Two runs at once (an async job still running when the play is started again) would write
    the same partial files and manifest; the second one fails at once instead, naming the
    first one's process id.
    """
    path = os.path.join(forge_dir, LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open as the lock, closed by the caller
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DownloadError(
            f"another model download is running in {forge_dir} (process {holder}); wait for it "
            "to finish (its progress file shows how far it is) or stop it, then re-run"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def execute(plan: list[PlanItem], forge_dir: str, settings: Settings) -> dict[str, Any]:
    """Carry out a plan; returns {"files": [...], "errors": [...], "changed": bool}.

    Holds the Forge folder's download lock while anything is to be written (a plan of files
    all present takes no lock and writes nothing); a second run at the same time fails.
    """
    busy = any(item.action != "present" for item in plan)
    lock = hold_lock(forge_dir) if busy else None
    try:
        return _execute(plan, forge_dir, settings)
    finally:
        if lock is not None:
            lock.close()


def _execute(plan: list[PlanItem], forge_dir: str, settings: Settings) -> dict[str, Any]:
    progress = Progress(settings.progress_file, settings.progress_interval)
    for item in plan:
        if item.action in ("download", "repair"):
            progress.queue(item.destination, item.size or item.size_estimate)
    progress.write()  # replaces a finished file from an earlier run straight away
    stop = threading.Event()
    writer = threading.Thread(target=progress.keep_writing, args=(stop,), daemon=True)
    writer.start()
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    manifest = load_manifest(forge_dir)
    try:
        with ThreadPoolExecutor(max_workers=settings.parallel_files) as pool:
            futures = [
                (item, pool.submit(_execute_one, item, forge_dir, settings, progress))
                for item in plan
            ]
            for item, future in futures:
                try:
                    outcome = future.result()
                except DownloadError as error:
                    errors.append(str(error))
                    progress.end(item.destination, "failed")
                    continue
                except OSError as error:
                    errors.append(f"{item.label}: {type(error).__name__}: {error}")
                    progress.end(item.destination, "failed")
                    continue
                record = outcome.pop("record")
                if record is not None:
                    # a re-verified file keeps where it came from
                    before = manifest.get(item.destination) or {}
                    for key in ("fetched_from", "origin_bytes"):
                        if record.get(key) is None and before.get(key) is not None:
                            record[key] = before[key]
                    manifest[item.destination] = record
                results.append(outcome)
        if manifest != load_manifest(forge_dir):
            save_manifest(forge_dir, manifest)  # a re-run with nothing to do writes nothing
    finally:
        stop.set()
        writer.join()
        progress.finished = True
        progress.result = {"errors": len(errors), "files": len(results)}
        progress.write()
    return {
        "files": results,
        "errors": errors,
        "changed": any(r["action"] in ("downloaded", "repaired") for r in results),
    }
