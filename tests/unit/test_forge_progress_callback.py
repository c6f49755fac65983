"""The forge_progress stdout callback, through the real ansible-playbook and ansible.cfg:
while the download wait retries, progress lines and no "FAILED - RETRYING"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.paths import REPO_ROOT


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("callback")
    progress = tmp / "progress.json"
    unfinished = {
        "updated": time.time() + 600,  # fresh for the whole test: no stale verdict
        "finished": False,
        "bytes_done": 3 * 1024**3,
        "bytes_total": 6 * 1024**3,
        "rate_bytes_per_s": 100 * 1024**2,
        "eta_s": 30,
        "files": [{"destination": "models/VAE/ae.safetensors", "state": "downloading"}],
    }
    progress.write_text(json.dumps(unfinished))
    finished = {**unfinished, "finished": True, "bytes_done": 6 * 1024**3}
    finish = f"sleep 15; printf '%s' '{json.dumps(finished)}' > {progress}"
    book = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Finish the download in 15 s (3 polls fit on a busy machine)",
                    "ansible.builtin.shell": finish,
                    "async": 60,
                    "poll": 0,
                    "changed_when": False,
                },
                {
                    "name": "Wait for the downloads, showing progress",
                    "model_download_progress": {"path": str(progress), "host": "here"},
                    "register": "seen",
                    "until": "seen is failed or seen.finished",
                    "retries": 60,
                    "delay": 1,
                },
                {
                    "name": "Any other task that retries",
                    "ansible.builtin.command": f"test -e {tmp / 'never'}",
                    "register": "other",
                    "until": "other.rc == 0",
                    "retries": 1,
                    "delay": 0,
                    "changed_when": False,
                    "ignore_errors": True,
                },
            ],
        }
    ]
    (tmp / "play.yml").write_text(yaml.safe_dump(book))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "NO_COLOR": "1"}
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)  # ansible.cfg decides, as for an operator
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            *("-i", "localhost,", "-c", "local"),
            *("-e", f"ansible_python_interpreter={sys.executable}"),
            str(tmp / "play.yml"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def test_the_download_wait_prints_progress_lines_per_host(output):
    lines = [line for line in output.splitlines() if line.startswith("localhost: models ")]
    assert len(lines) >= 3, output
    assert lines[0] == "localhost: models 3.0/6.0 GiB, 100.0 MiB/s, ETA 0m30s, 0/1 files"


def test_the_download_wait_prints_no_failed_retrying_line(output):
    waiting = output.split("TASK [Wait for the downloads")[1].split("TASK [")[0]
    assert "localhost: models 3.0/6.0 GiB" in waiting  # under its own task's banner
    assert "FAILED" not in waiting
    assert "RETRYING" not in waiting
    assert "ok: [localhost]" in waiting


def test_other_retried_tasks_still_print_as_ansible_prints_them(output):
    other = output.split("TASK [Any other task that retries]")[1]
    assert "FAILED - RETRYING: [localhost]: Any other task that retries (1 retries left)." in other


@pytest.fixture(scope="module")
def class_run(tmp_path_factory) -> subprocess.CompletedProcess:
    """Two plays over three hosts, as site.yml's stages: one host fails in the first play,
    one cannot be reached, the third goes on to the end."""
    tmp = tmp_path_factory.mktemp("class")
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    (tmp / "hosts").write_text(
        f"[forge_servers]\nvm-ok {local}\nvm-bad {local}\n"
        "vm-gone ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh\n"
    )
    stage = {"hosts": "forge_servers", "gather_facts": False, "max_fail_percentage": 100}
    book = [
        {
            **stage,
            "name": "First stage",
            "tasks": [
                {"name": "Reach the host", "ansible.builtin.ping": {}},
                {
                    "name": "Check the GPU",
                    "ansible.builtin.fail": {"msg": "GPU check failed on vm-bad:\nno GPU"},
                    "when": "inventory_hostname == 'vm-bad'",
                },
                {
                    "name": "A failure that is ignored",
                    "ansible.builtin.fail": {"msg": "ignored"},
                    "ignore_errors": True,
                },
            ],
        },
        {
            **stage,
            "name": "Second stage",
            "tasks": [{"name": "Second stage task", "ansible.builtin.ping": {}}],
        },
    ]
    (tmp / "play.yml").write_text(yaml.safe_dump(book))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "NO_COLOR": "1"}
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            *("-i", str(tmp / "hosts")),
            str(tmp / "play.yml"),
        ],
        cwd=REPO_ROOT,
        env={**env, "ANSIBLE_HOST_KEY_CHECKING": "false"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_failing_host_does_not_stop_the_others(class_run):
    out = class_run.stdout
    assert class_run.returncode == 4, out[-3000:]  # hosts failed, and were unreachable
    second = out.split("PLAY [Second stage]")[1].split("PLAY RECAP")[0]
    assert "ok: [vm-ok]" in second
    assert "vm-bad" not in second


def test_the_run_ends_with_the_failed_hosts_their_task_and_message(class_run):
    tail = class_run.stdout.split("PLAY RECAP")[1].strip().splitlines()
    closing = tail[tail.index(next(t for t in tail if t.startswith("Failed hosts"))) :]
    assert closing == [
        "Failed hosts (2 of 3): fix these, then re-run with --limit vm-bad,vm-gone",
        '  vm-bad: failed at "Check the GPU": GPU check failed on vm-bad: no GPU',
        closing[2],
    ]
    assert closing[2].startswith('  vm-gone: unreachable at "Reach the host": ')
    assert "port 9" in closing[2]
