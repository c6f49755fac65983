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
    before = os.statvfs(tmp_path)
    _, result = run_task(tmp_path, task)
    after = os.statvfs(tmp_path)
    assert not result.get("failed"), result
    disk = result["disk"]
    assert (disk["path"], disk["measured_path"]) == (str(where), str(tmp_path))
    # Other tests write and delete files meanwhile (CI moved it by 0.6 GB between two reads):
    # the module's figure lies near what the test measured just before and just after its
    # run. It is the space available to users (f_bavail), not the blocks free to root.
    free = sorted(fs.f_bavail * fs.f_frsize for fs in (before, after))
    slack = 2 * 1024**3
    assert free[0] - slack <= disk["free_bytes"] <= free[1] + slack, (disk, free)
    assert disk["total_bytes"] == after.f_blocks * after.f_frsize
    assert result["verdict"] == "fail"
    assert any(p.startswith("Only ") and "free on lab-1" in p for p in result["problems"])


def test_the_module_refuses_a_measured_and_a_given_free_space_together(tmp_path):
    task = {"gpu_facts": {"disk_path": str(tmp_path), "free_disk_bytes": 1}}
    _, result = run_task(tmp_path, task)
    assert result["failed"] is True
    assert "mutually exclusive: disk_path|free_disk_bytes" in result["msg"]
