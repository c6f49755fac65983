"""module_utils/forge_fleet/forge_prepared.py: what Forge's preparation depends on; and
forge_prepare.py's logged run."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import pwd
import sys

import pytest

from forge_fleet import forge_prepare
from forge_fleet import forge_prepared as fp


def test_a_file_is_hashed_with_sha256(tmp_path):
    (tmp_path / "requirements_versions.txt").write_bytes(b"torch==2.3.1\n")
    expected = hashlib.sha256(b"torch==2.3.1\n").hexdigest()
    assert fp.files_sha256(str(tmp_path), ["requirements_versions.txt"]) == {
        "requirements_versions.txt": expected
    }


def test_an_absent_file_or_a_folder_has_an_empty_sha256(tmp_path):
    (tmp_path / "webui-user.sh").mkdir()
    assert fp.files_sha256(str(tmp_path), ["missing.txt", "webui-user.sh"]) == {
        "missing.txt": "",
        "webui-user.sh": "",
    }


def test_an_absent_record_is_not_found_and_empty(tmp_path):
    assert fp.read_record(str(tmp_path / "forge.json")) == (False, {})


def test_a_record_is_parsed(tmp_path):
    record = {"commit": "a" * 40, "prepare_inputs": {"python": "/env/bin/python"}}
    (tmp_path / "forge.json").write_text(json.dumps(record) + "\n")
    assert fp.read_record(str(tmp_path / "forge.json")) == (True, record)


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]"])
def test_a_record_that_is_not_a_json_object_is_refused_naming_the_file(tmp_path, text):
    (tmp_path / "forge.json").write_text(text)
    with pytest.raises(fp.RecordUnreadable, match=r"forge\.json"):
        fp.read_record(str(tmp_path / "forge.json"))


def test_the_probe_output_loses_only_its_trailing_newlines():
    rc, out, err = fp.run_probe(sys.executable, "print('a==1\\nb==2\\n')")
    assert (rc, out, err) == (0, "a==1\nb==2", "")


def test_a_failing_probe_gives_its_exit_code_and_error():
    rc, out, err = fp.run_probe(sys.executable, "import sys; sys.exit('no env')")
    assert (rc, out, err) == (1, "", "no env")


def test_a_python_that_does_not_exist_is_exit_code_127(tmp_path):
    rc, out, err = fp.run_probe(str(tmp_path / "envs/forge/bin/python"), "pass")
    assert (rc, out) == (127, "")
    assert "No such file" in err


def test_a_user_that_does_not_exist_yet_is_exit_code_127():
    rc, out, err = fp.run_probe(sys.executable, "pass", "no-such-user-forge-fleet")
    assert (rc, out, err) == (127, "", "no user no-such-user-forge-fleet on this host")


def test_the_probe_as_the_current_user_runs_without_dropping_with_its_home():
    me = getpass.getuser()
    preexec, env, home = fp.as_user(me)
    assert preexec is None
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (home, me, me)
    rc, out, _ = fp.run_probe(sys.executable, "import os; print(os.environ['HOME'])", me)
    assert (rc, out) == (0, home)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no system Python")
def test_the_probe_as_another_user_runs_with_that_users_uid_and_groups():
    nobody = pwd.getpwnam("nobody")
    code = "import os; print(os.getuid(), os.getgid(), os.environ['HOME'])"
    rc, out, err = fp.run_probe("/usr/bin/python3", code, "nobody")
    assert (rc, err) == (0, "")
    assert out == f"{nobody.pw_uid} {nobody.pw_gid} {nobody.pw_dir}"


def test_files_are_statted_with_owner_group_and_mode_and_absent_ones_are_empty(tmp_path):
    (tmp_path / "webui-user.sh").write_text("#!/bin/bash\n")
    os.chmod(tmp_path / "webui-user.sh", 0o640)
    (tmp_path / "a-folder").mkdir()
    me = pwd.getpwuid(os.getuid()).pw_name
    found = fp.files_stat(str(tmp_path), ["webui-user.sh", "missing.txt", "a-folder"])
    assert found["webui-user.sh"]["owner"] == me
    assert found["webui-user.sh"]["mode"] == "0640"
    assert found["webui-user.sh"]["group"]  # the group's name (or its number when unnamed)
    assert found["missing.txt"] == {} and found["a-folder"] == {}


def test_a_folder_is_statted_as_a_directory_and_a_file_is_not_one(tmp_path):
    (tmp_path / "forge.json").write_text("{}\n")
    os.chmod(tmp_path, 0o755)
    assert fp.path_stat(str(tmp_path), "directory")["mode"] == "0755"
    assert fp.path_stat(str(tmp_path)) == {}  # not a regular file
    assert fp.path_stat(str(tmp_path / "forge.json"), "directory") == {}
    assert fp.path_stat(str(tmp_path / "absent"), "directory") == {}


def test_the_preparation_log_is_0600_and_the_status_appears_only_when_the_run_ends(tmp_path):
    log, status = tmp_path / "logs" / "prepare.log", tmp_path / "logs" / "prepare.status"
    log.parent.mkdir()
    log.write_text("an older, world-readable log\n")
    os.chmod(str(log), 0o644)
    status.write_text('{"rc": 0}')  # the last run's: gone while this one runs
    script = "import os, sys; print(os.path.exists(sys.argv[1])); sys.exit(3)"
    rc, text = forge_prepare.run_logged(
        [sys.executable, "-c", script, str(status)], str(tmp_path), str(log), str(status)
    )
    assert (rc, text) == (3, "False\n")
    assert os.stat(str(log)).st_mode & 0o777 == 0o600
    assert json.loads(status.read_text())["rc"] == 3
    assert forge_prepare.progress(str(log), str(status)) == {
        "finished": True,
        "progress_line": "False",
    }


# -- webui.sh exits 0 whatever launch.py did: only Forge's last line proves a preparation ----

FAILED_CLIP = """Installing clip
Traceback (most recent call last):
  File "launch.py", line 51, in <module>
RuntimeError: Couldn't install clip.
Command: "/anaconda/envs/forge/bin/python" -m pip install /srv/CLIP.zip --prefer-binary
Error code: 1
stderr: ERROR: Could not install packages due to an OSError: [Errno 2] \
No such file or directory: '/srv/CLIP.zip'
"""


def test_exit_status_0_without_forges_last_line_is_a_failure():
    assert not forge_prepare.succeeded(FAILED_CLIP, 0)
    assert forge_prepare.succeeded(
        "Installing requirements\nExiting because of --exit argument\n", 0
    )
    assert not forge_prepare.succeeded("Exiting because of --exit argument\n", 1)


def test_a_failure_behind_exit_status_0_names_forges_step_and_the_last_lines():
    message = forge_prepare.failure_message(FAILED_CLIP, 0, "webui.sh --exit")
    assert "without Forge's 'Exiting because of --exit argument' line" in message
    assert "(Couldn't install clip)" in message
    assert "No such file or directory: '/srv/CLIP.zip'" in message


def test_pins_are_the_name_version_lines_but_for_what_forge_installs_before_them():
    requirements = (
        "setuptools==69.5.1  # temp fix\nnumpy==1.26.2\ntorch\nfoo>=1\n# x==1\nBar_baz == 2.0\n"
        "open_clip_torch==2.20.0\n"  # Forge installs an older one first (OPENCLIP_PACKAGE)
    )
    assert forge_prepare.pins(requirements) == [
        "setuptools==69.5.1",
        "numpy==1.26.2",
        "Bar_baz==2.0",
    ]


def test_the_preparation_runs_with_the_environment_and_the_pins_held(tmp_path):
    log, status = tmp_path / "prepare.log", tmp_path / "prepare.status"
    script = (
        "import os; print(os.environ['CLIP_PACKAGE']); c = os.environ['PIP_CONSTRAINT'].split();"
        "print(open(c[0]).read().strip()); print(c[1:])"
    )
    rc, text = forge_prepare.run_logged(
        [sys.executable, "-c", script],
        str(tmp_path),
        str(log),
        str(status),
        environment={"CLIP_PACKAGE": "https://mirror/CLIP.zip", "PIP_CONSTRAINT": "/etc/mine.txt"},
        constraints=["numpy==1.26.2"],
    )
    assert (rc, text) == (0, "https://mirror/CLIP.zip\nnumpy==1.26.2\n['/etc/mine.txt']\n")
