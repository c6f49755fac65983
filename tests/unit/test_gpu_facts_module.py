"""The gpu_facts module through ansible-playbook on localhost (no GPU here: nvidia-smi is
absent, which the module reports as a problem of its own): the disk it measures and judges
in the same run, for the preflight's single read."""

from __future__ import annotations

import os

from tests.harness.playbook import run_task


def test_the_module_measures_and_judges_the_disk_in_the_same_run(tmp_path):
    """gpu_facts with disk_path (the preflight's one read): the file system of the nearest
    existing folder, as path_free_space measures it, judged against the minimum."""
    where = tmp_path / "not" / "made" / "yet"
    task = {"gpu_facts": {"host": "lab-1", "disk_path": str(where), "min_free_disk_gb": 1e9}}
    _, result = run_task(tmp_path, task)
    assert not result.get("failed"), result
    disk = result["disk"]
    assert (disk["path"], disk["measured_path"]) == (str(where), str(tmp_path))
    fs = os.statvfs(tmp_path)
    assert abs(disk["free_bytes"] - fs.f_bavail * fs.f_frsize) < 512 * 1024**2
    assert disk["total_bytes"] == fs.f_blocks * fs.f_frsize
    assert result["verdict"] == "fail"
    assert any(p.startswith("Only ") and "free on lab-1" in p for p in result["problems"])


def test_the_module_refuses_a_measured_and_a_given_free_space_together(tmp_path):
    task = {"gpu_facts": {"disk_path": str(tmp_path), "free_disk_bytes": 1}}
    _, result = run_task(tmp_path, task)
    assert result["failed"] is True
    assert "mutually exclusive: disk_path|free_disk_bytes" in result["msg"]
