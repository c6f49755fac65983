"""The forge_webui probe's files comparison (library/forge_webui.py files,
module_utils/forge_fleet/file_set_module.py) through ansible-playbook -vvv on localhost: it
says exactly what host_files with the same files would change (so the webui role runs that
write only when something is off), changes nothing itself, and keeps a secret's content out of
every output. systemctl is a stand-in on PATH (this machine runs no systemd); the controller
runs as root here, like the module on the VMs (become)."""

from __future__ import annotations

import os
import stat

import pytest

from tests.harness.playbook import run_local_playbook

SECRET = "probe-password-8f41c2d9e7"
PROBE = "Read the service as it is now"
WRITE = "Write the files"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sets owners: needs root")

# `systemctl show` of a unit that is loaded, enabled and stopped (no journal, no HTTP asked)
SYSTEMCTL = """#!/bin/sh
printf 'ActiveState=inactive\\nSubState=dead\\nMainPID=0\\nInvocationID=\\nNRestarts=0\\n'
printf 'Result=success\\nExecMainStartTimestampMonotonic=0\\nUnitFileState=enabled\\n'
printf 'LoadState=loaded\\n'
"""


def the_set(root) -> list[dict]:
    return [
        {"path": f"{root}/secrets", "state": "directory", "owner": "nobody", "mode": "0700"},
        {
            "path": f"{root}/secrets/login",
            "secret_content": f"student:{SECRET}\n",
            "owner": "nobody",
            "mode": "0600",
        },
        {"path": f"{root}/api-login", "state": "absent"},
        {"path": f"{root}/unit.service", "content": "[Unit]\n", "mode": "0644"},
    ]


def run(root, *, probe_files=None, write=False, check=False, state="probe"):
    """The probe (files: the set unless given), then host_files with the same set, as the
    webui role does: the write only when the probe found something to change."""
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "systemctl").write_text(SYSTEMCTL)
    os.chmod(bin_dir / "systemctl", 0o755)
    tasks = [
        {
            "name": PROBE,
            "forge_webui": {
                "name": "forge-webui.service",
                "state": state,
                "files": the_set(root) if probe_files is None else probe_files,
            },
            "environment": {"PATH": f"{bin_dir}:{os.environ['PATH']}"},
            "register": "before",
        }
    ]
    if write:
        tasks.append(
            {
                "name": WRITE,
                "host_files": {"files": the_set(root)},
                "when": "before.files_changes | length > 0",
            }
        )
    play = {"hosts": "localhost", "gather_facts": False, "check_mode": check, "tasks": tasks}
    return run_local_playbook(root, [play])


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_on_a_fresh_host_the_probe_reports_what_the_write_makes_and_changes_nothing(tmp_path):
    (tmp_path / "api-login").write_text("x\n")
    dry = run(tmp_path, write=True, check=True)
    assert dry.ok, dry.explain()
    probe = dry.task(PROBE, "localhost")
    expected = {
        f"{tmp_path}/secrets": ["created"],
        f"{tmp_path}/secrets/login": ["created"],
        f"{tmp_path}/api-login": ["removed"],
        f"{tmp_path}/unit.service": ["created"],
    }
    assert probe.res["files_changes"] == expected
    assert not probe.changed
    assert probe.res["exists"] and probe.res["unit_file_state"] == "enabled"  # systemd's read
    # --check: the write runs and says the same; nothing is written by either
    assert dry.task(WRITE, "localhost").res["changes"] == expected
    assert not (tmp_path / "secrets").exists() and (tmp_path / "api-login").exists()

    done = run(tmp_path, write=True)
    assert done.ok, done.explain()
    assert done.task(WRITE, "localhost").res["changes"] == expected
    assert (tmp_path / "secrets/login").read_text() == f"student:{SECRET}\n"
    assert SECRET not in dry.stdout + done.stdout  # -vvv, the probe's invocation included


def test_once_written_the_probe_finds_nothing_and_the_write_is_skipped(tmp_path):
    assert run(tmp_path, write=True).ok
    again = run(tmp_path, write=True)
    assert again.ok, again.explain()
    assert again.task(PROBE, "localhost").res["files_changes"] == {}
    assert again.task(WRITE, "localhost").status == "skipped"
    assert again.stats["localhost"]["changed"] == 0


def test_each_drift_is_found_by_the_probe_and_repaired_by_the_write(tmp_path):
    assert run(tmp_path, write=True).ok
    os.chmod(tmp_path / "secrets/login", 0o644)
    (tmp_path / "unit.service").write_text("[Unit]\nedited\n")
    os.chown(tmp_path / "secrets", 0, -1)
    (tmp_path / "api-login").write_text("left behind\n")
    drifted = {
        f"{tmp_path}/secrets": ["owner"],
        f"{tmp_path}/secrets/login": ["mode"],
        f"{tmp_path}/api-login": ["removed"],
        f"{tmp_path}/unit.service": ["content"],
    }

    dry = run(tmp_path, write=True, check=True)
    assert dry.task(PROBE, "localhost").res["files_changes"] == drifted
    assert dry.task(WRITE, "localhost").res["changes"] == drifted  # --check tells the truth
    assert mode(tmp_path / "secrets/login") == 0o644

    repaired = run(tmp_path, write=True)
    assert repaired.ok, repaired.explain()
    assert repaired.task(PROBE, "localhost").res["files_changes"] == drifted
    assert repaired.task(WRITE, "localhost").res["changes"] == drifted
    assert mode(tmp_path / "secrets/login") == 0o600
    assert (tmp_path / "unit.service").read_text() == "[Unit]\n"
    assert os.stat(tmp_path / "secrets").st_uid == os.stat(tmp_path / "secrets/login").st_uid
    assert not (tmp_path / "api-login").exists()
    assert run(tmp_path).task(PROBE, "localhost").res["files_changes"] == {}


def test_a_changed_secret_is_found_without_showing_it(tmp_path):
    assert run(tmp_path, write=True).ok
    (tmp_path / "secrets/login").write_text(f"student:old-{SECRET}\n")
    found = run(tmp_path)
    assert found.ok, found.explain()
    assert found.task(PROBE, "localhost").res["files_changes"] == {
        f"{tmp_path}/secrets/login": ["content"]
    }
    assert SECRET not in found.stdout


def test_without_files_the_probe_returns_no_file_changes(tmp_path):
    done = run(tmp_path, probe_files=[])
    assert done.ok, done.explain()
    assert done.task(PROBE, "localhost").res["files_changes"] == {}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"path": "{root}/a", "content": "x", "owner": "no-such-user-x"},
            "{root}/a: owner 'no-such-user-x' does not exist on this host",
        ),
        (
            {"path": "{root}/a", "content": "x", "secret_content": "not-both-secret"},
            "{root}/a: give content or secret_content, not both",
        ),
    ],
    ids=["unknown owner", "two contents"],
)
def test_bad_files_fail_the_probe_naming_the_path(tmp_path, bad, message):
    bad = {key: value.format(root=tmp_path) for key, value in bad.items()}
    done = run(tmp_path, probe_files=[bad])
    assert not done.ok
    assert message.format(root=tmp_path) in done.task(PROBE, "localhost").msg
    assert "not-both-secret" not in done.stdout


def test_files_with_state_ready_are_refused(tmp_path):
    done = run(tmp_path, state="ready")
    assert not done.ok
    assert "files is an option of state=probe only" in done.task(PROBE, "localhost").msg
    assert SECRET not in done.stdout
