"""The progress file's reader: a finished run, a live run, and the three ways a job dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from forge_fleet import download_progress as dp

DEST = "models/Stable-diffusion/flux1-dev.safetensors"


def write_progress(path: Path, **fields) -> None:
    progress = dp.Progress(str(path), 2.0)
    progress.queue("models/VAE/ae.safetensors", 100)
    progress.start(DEST, 1000, done=0)
    progress.add(DEST, 400)
    progress.finished = fields.pop("finished", False)
    progress.write()
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def write_job(path: Path, data: dict, age: float = 0) -> None:
    path.write_text(json.dumps(data))
    then = time.time() - age
    os.utime(path, (then, then))


def test_a_live_download_is_neither_finished_nor_dead(tmp_path):
    write_progress(tmp_path / "p.json")
    write_job(tmp_path / "job", {"started": True, "finished": False})
    seen = dp.watch(str(tmp_path / "p.json"), str(tmp_path / "job"), 60, "lab-1")
    assert (seen["finished"], seen["dead"]) == (False, None)
    assert seen["progress_line"] == dp.line(seen["progress"])
    assert seen["progress_line"].endswith(", 0/2 files")
    assert seen["progress"]["pid"] == os.getpid()


def test_a_finished_download_is_finished_whatever_the_job_file_says(tmp_path):
    write_progress(tmp_path / "p.json", finished=True, pid=2**22 + 7)
    write_job(tmp_path / "job", {"failed": True, "msg": "Traceback ..."})
    seen = dp.watch(str(tmp_path / "p.json"), str(tmp_path / "job"), 60, "lab-1")
    assert (seen["finished"], seen["dead"]) == (True, None)


def test_a_job_killed_under_ansible_is_dead_at_once_naming_host_file_and_what_to_do(tmp_path):
    write_progress(tmp_path / "p.json")
    # what async_wrapper writes when the module's process died without printing a result
    write_job(tmp_path / "job", {"failed": True, "msg": "Traceback (most recent call last):"})
    dead = dp.watch(str(tmp_path / "p.json"), str(tmp_path / "job"), 60, "lab-1")["dead"]
    assert dead.startswith(f"The model download on lab-1 died while fetching {DEST}: ")
    assert "the job ended without a result (killed, out of memory" in dead
    assert f"{DEST}.partial" in dead
    assert "re-run the play to resume" in dead


def test_a_writer_whose_process_is_gone_is_dead(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write_progress(tmp_path / "p.json", pid=int(gone.stdout))
    dead = dp.watch(str(tmp_path / "p.json"), None, 60, "lab-2")["dead"]
    assert f"its process ({int(gone.stdout)}) is gone" in dead


def test_a_stale_progress_file_is_dead_after_stale_after_seconds(tmp_path):
    write_progress(tmp_path / "p.json")
    write_job(tmp_path / "job", {"started": True, "finished": False})  # the whole tree died
    path, job = str(tmp_path / "p.json"), str(tmp_path / "job")
    updated = json.loads((tmp_path / "p.json").read_text())["updated"]
    assert dp.watch(path, job, 60, "lab-1", now=updated + 59)["dead"] is None
    dead = dp.watch(path, job, 60, "lab-1", now=updated + 75)["dead"]
    assert "its progress file was last updated 75 s ago (limit 60 s)" in dead


def test_no_progress_file_long_after_the_job_started_is_dead(tmp_path):
    write_job(tmp_path / "job", {"started": True, "finished": False}, age=90)
    path, job = str(tmp_path / "none.json"), str(tmp_path / "job")
    seen = dp.watch(path, job, 60, "lab-1")
    assert seen["progress_line"] == "starting"
    assert "no progress file 90 s after the job started" in seen["dead"]
    assert "before it started fetching files" in seen["dead"]
    write_job(tmp_path / "job", {"started": True, "finished": False}, age=5)
    assert dp.watch(path, job, 60, "lab-1")["dead"] is None


def test_a_job_that_failed_with_a_message_is_reported_with_it(tmp_path):
    write_progress(tmp_path / "p.json")
    write_job(tmp_path / "job", {"failed": True, "msg": "Timeout exceeded"})
    dead = dp.watch(str(tmp_path / "p.json"), str(tmp_path / "job"), 60, "lab-1")["dead"]
    assert "the job ended: Timeout exceeded" in dead


def test_the_planning_heartbeat_keeps_the_marker_fresh_until_stopped(tmp_path):
    path = str(tmp_path / "p.json")
    beat = dp.Heartbeat(path, interval=0.05).start()
    first = dp.read(path)["updated"]
    time.sleep(0.3)
    beat.stop()
    last = dp.read(path)
    assert last["updated"] > first and last["finished"] is False
    dp.mark(path, finished=True, errors=1)
    time.sleep(0.15)
    assert dp.read(path)["finished"] is True  # nothing rewrites it after stop()
    assert dp.read(path)["result"] == {"errors": 1, "files": 0}


def test_the_progress_line_reads_like_an_operator_wants_it():
    gib, mib = 1024**3, 1024**2
    progress = {
        "bytes_done": int(3.2 * gib),
        "bytes_total": 17 * gib,
        "rate_bytes_per_s": int(84.1 * mib),
        "eta_s": 161,
        "files": [{"state": "done"}, {"state": "downloading"}, {"state": "queued"}],
    }
    assert dp.line(progress) == "3.2/17.0 GiB, 84.1 MiB/s, ETA 2m41s, 1/3 files"
    assert dp.line({}) == "0.0/0.0 GiB, 0.0 MiB/s, ETA -, 0/0 files"
