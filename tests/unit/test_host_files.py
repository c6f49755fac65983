"""The host_files module (library/host_files.py, module_utils/forge_fleet/file_set.py) through
ansible-playbook -vvv on localhost: what it makes, what it reports per path, --check, --diff,
a secret's content kept out of every output, and bad input refused before anything is written.
The controller runs as root here, like the module on the VMs (become)."""

from __future__ import annotations

import os
import pwd
import stat

import pytest

from tests.harness.playbook import run_local_playbook

SECRET = "login-password-3c9d0e7a21"
NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sets owners: needs root")


def play(*tasks, check=False, diff=False):
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "check_mode": check,
            "diff": diff,
            "tasks": list(tasks),
        }
    ]


def files(*entries):
    return {"name": "Write the files", "host_files": {"files": list(entries)}}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def the_set(root):
    return files(
        {"path": f"{root}/state/logs", "state": "directory", "owner": "nobody", "mode": "0700"},
        {"path": f"{root}/state/config.json", "content": "{}\n", "owner": "nobody", "mode": "0600"},
        {"path": f"{root}/state/login", "secret_content": f"student:{SECRET}\n", "mode": "0600"},
        {"path": f"{root}/unit.service", "content": "[Unit]\n"},
    )


def test_makes_the_set_then_reports_no_change_on_a_rerun(tmp_path):
    first = run_local_playbook(tmp_path, play(the_set(tmp_path)))
    assert first.ok, first.explain()
    result = first.task("Write the files", "localhost")
    assert result.changed
    assert result.res["changes"] == {
        f"{tmp_path}/state/logs": ["created"],
        f"{tmp_path}/state/config.json": ["created"],
        f"{tmp_path}/state/login": ["created"],
        f"{tmp_path}/unit.service": ["created"],
    }
    # the missing parent is created with the folder's owner and mode, like the file module
    for folder in (tmp_path / "state", tmp_path / "state/logs"):
        assert (mode(folder), os.stat(folder).st_uid) == (0o700, NOBODY.pw_uid)
    assert (tmp_path / "state/config.json").read_text() == "{}\n"
    assert os.stat(tmp_path / "state/config.json").st_uid == NOBODY.pw_uid
    assert (tmp_path / "state/login").read_text() == f"student:{SECRET}\n"
    assert mode(tmp_path / "state/login") == 0o600
    assert mode(tmp_path / "unit.service") == 0o644  # the default for a new file
    assert sorted(os.listdir(tmp_path / "state")) == ["config.json", "login", "logs"]
    assert SECRET not in first.stdout  # -vvv

    again = run_local_playbook(tmp_path, play(the_set(tmp_path)))
    assert again.ok, again.explain()
    assert not again.task("Write the files", "localhost").changed
    assert again.task("Write the files", "localhost").res["changes"] == {}


def test_repairs_each_drift_naming_what_changed_and_touches_nothing_else(tmp_path):
    assert run_local_playbook(tmp_path, play(the_set(tmp_path))).ok
    (tmp_path / "unit.service").write_text("[Unit]\nedited\n")
    os.chmod(tmp_path / "state/login", 0o644)
    os.chown(tmp_path / "state/logs", 0, -1)
    kept_inode = os.stat(tmp_path / "state/config.json").st_ino
    login_inode = os.stat(tmp_path / "state/login").st_ino

    repaired = run_local_playbook(tmp_path, play(the_set(tmp_path)))
    assert repaired.ok, repaired.explain()
    assert repaired.task("Write the files", "localhost").res["changes"] == {
        f"{tmp_path}/state/logs": ["owner"],
        f"{tmp_path}/state/login": ["mode"],
        f"{tmp_path}/unit.service": ["content"],
    }
    assert (tmp_path / "unit.service").read_text() == "[Unit]\n"
    assert mode(tmp_path / "state/login") == 0o600
    assert os.stat(tmp_path / "state/login").st_ino == login_inode  # mode set in place
    assert os.stat(tmp_path / "state/logs").st_uid == NOBODY.pw_uid
    assert os.stat(tmp_path / "state/config.json").st_ino == kept_inode  # untouched


def test_check_mode_reports_the_changes_and_writes_nothing(tmp_path):
    dry = run_local_playbook(tmp_path, play(the_set(tmp_path), check=True))
    assert dry.ok, dry.explain()
    result = dry.task("Write the files", "localhost")
    assert result.changed
    assert len(result.res["changes"]) == 4  # the file under a folder still to be made too
    assert not (tmp_path / "state").exists() and not (tmp_path / "unit.service").exists()

    assert run_local_playbook(tmp_path, play(the_set(tmp_path))).ok
    os.chmod(tmp_path / "state/config.json", 0o666)
    dry = run_local_playbook(tmp_path, play(the_set(tmp_path), check=True))
    assert dry.task("Write the files", "localhost").res["changes"] == {
        f"{tmp_path}/state/config.json": ["mode"]
    }
    assert mode(tmp_path / "state/config.json") == 0o666


def test_diff_shows_a_file_but_never_a_secret(tmp_path):
    assert run_local_playbook(tmp_path, play(the_set(tmp_path))).ok
    (tmp_path / "unit.service").write_text("before-line\n")
    (tmp_path / "state/login").write_text(f"student:old-{SECRET}\n")
    done = run_local_playbook(tmp_path, play(the_set(tmp_path), diff=True))
    assert done.ok, done.explain()
    assert "-before-line" in done.stdout and "+[Unit]" in done.stdout
    assert f"{tmp_path}/state/login: content (secret: content not shown)" in done.stdout
    assert SECRET not in done.stdout  # at -vvv, with --diff on: neither the old nor the new
    assert (tmp_path / "state/login").read_text() == f"student:{SECRET}\n"


def test_absent_removes_a_file_and_reports_it_once(tmp_path):
    (tmp_path / "api-auth").write_text("x\n")
    task = files({"path": f"{tmp_path}/api-auth", "state": "absent"})
    done = run_local_playbook(tmp_path, play(task))
    assert done.task("Write the files", "localhost").res["changes"] == {
        f"{tmp_path}/api-auth": ["removed"]
    }
    assert not (tmp_path / "api-auth").exists()
    assert not run_local_playbook(tmp_path, play(task)).task("Write the files", "localhost").changed


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"path": "{root}/a", "content": "x", "owner": "no-such-user-x"},
            "{root}/a: owner 'no-such-user-x' does not exist on this host",
        ),
        (
            {"path": "{root}/missing/a", "content": "x"},
            "{root}/missing/a: its folder {root}/missing does not exist; declare the folder",
        ),
        (
            {"path": "{root}/folder", "content": "x"},
            "{root}/folder exists and is not a regular file: move it away and re-run",
        ),
        ({"path": "{root}/a", "content": "x", "mode": "rw-r--r--"}, "{root}/a: mode must be octal"),
        (
            {"path": "{root}/a", "content": "x", "secret_content": "not-both-secret"},
            "{root}/a: give content or secret_content, not both",
        ),
    ],
    ids=["unknown owner", "folder missing", "folder in the way", "bad mode", "two contents"],
)
def test_bad_input_fails_naming_the_path_before_anything_is_written(tmp_path, bad, message):
    (tmp_path / "folder").mkdir()
    bad = {key: value.format(root=tmp_path) for key, value in bad.items()}
    task = files({"path": f"{tmp_path}/first.txt", "content": "written only if all is well\n"}, bad)
    done = run_local_playbook(tmp_path, play({**task, "ignore_errors": True}))
    result = done.task("Write the files", "localhost")
    assert result.failed
    assert message.format(root=tmp_path) in result.msg
    assert not (tmp_path / "first.txt").exists()


def reading(root, *paths, entries=()):
    task = files(*entries)
    task["host_files"]["read"] = [str(path).format(root=root) for path in paths]
    return task


def test_read_returns_each_files_text_or_null_and_with_check_mode_writes_nothing(tmp_path):
    (tmp_path / "crontab").write_text("# DO NOT EDIT THIS FILE\n#Ansible: job\n*/5 * * * * x\n")
    (tmp_path / "latin1").write_bytes(b"caf\xe9\n")
    task = reading(
        tmp_path, "{root}/crontab", "{root}/never-written.json", "{root}/latin1",
        entries=the_set(tmp_path)["host_files"]["files"],
    )  # fmt: skip
    done = run_local_playbook(tmp_path, play({**task, "check_mode": True}))
    assert done.ok, done.explain()
    result = done.task("Write the files", "localhost")
    assert result.res["read"] == {
        f"{tmp_path}/crontab": "# DO NOT EDIT THIS FILE\n#Ansible: job\n*/5 * * * * x\n",
        f"{tmp_path}/never-written.json": None,
        f"{tmp_path}/latin1": "caf\ufffd\n",  # undecodable bytes replaced
    }
    assert len(result.res["changes"]) == 4  # and says what the write would change
    assert not (tmp_path / "state").exists() and not (tmp_path / "unit.service").exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("{root}/state/login", "read: {root}/state/login is declared with secret_content"),
        ("{root}/login-link", "read: {root}/login-link is declared with secret_content"),
        ("relative/file", "read: relative/file: give an absolute path"),
        ("{root}/folder", "read: {root}/folder is not a regular file"),
        ("{root}/large", "read: {root}/large is larger than the 262144 bytes read returns"),
    ],
    ids=["secret", "link to the secret", "relative", "folder", "too large"],
)
def test_read_refuses_a_secret_or_bad_path_naming_it_before_anything_is_written(
    tmp_path, path, message
):
    (tmp_path / "folder").mkdir()
    (tmp_path / "large").write_bytes(b"x" * (256 * 1024 + 1))
    os.symlink(tmp_path / "state/login", tmp_path / "login-link")  # dangling: not written yet
    done = run_local_playbook(
        tmp_path, play({**reading(tmp_path, path, entries=the_set(tmp_path)["host_files"]["files"]),
                        "ignore_errors": True})
    )  # fmt: skip
    result = done.task("Write the files", "localhost")
    assert result.failed
    assert message.format(root=tmp_path) in result.msg
    assert not (tmp_path / "state").exists() and not (tmp_path / "unit.service").exists()
    assert SECRET not in done.stdout


def test_read_alone_reads_and_neither_files_nor_read_is_refused(tmp_path):
    (tmp_path / "last-run.json").write_text('{"ok": true}\n')
    only_read = {"name": "Read", "host_files": {"read": [f"{tmp_path}/last-run.json"]}}
    nothing = {"name": "Nothing", "host_files": {}, "ignore_errors": True}
    done = run_local_playbook(tmp_path, play(only_read, nothing))
    read = done.task("Read", "localhost")
    assert not read.failed and not read.changed
    assert read.res["read"] == {f"{tmp_path}/last-run.json": '{"ok": true}\n'}
    assert read.res["changes"] == {}
    refused = done.task("Nothing", "localhost")
    assert refused.failed
    assert "one of the following is required: files, read" in refused.msg
