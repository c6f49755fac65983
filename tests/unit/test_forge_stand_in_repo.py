"""The Forge stand-in repository as the lab serves it: real git over git daemon, two commits
and a tag, and a package index pip can install its preparation from."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import forge_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with forge_repo.serving("127.0.0.1", tmp_path_factory.mktemp("forge") / "srv") as server:
        yield server


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def test_clone_over_git_daemon_has_two_commits_and_the_tag_on_the_first(served, tmp_path):
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    log = _git("-C", str(checkout), "log", "--format=%H").split()
    assert log == [served.built.forge_commits[1], served.built.forge_commits[0]]
    tagged = _git("-C", str(checkout), "rev-list", "-n", "1", forge_repo.FORGE_TAG).strip()
    assert tagged == served.built.forge_commits[0]
    assert (checkout / "webui.sh").stat().st_mode & 0o111
    assert (checkout / "VERSION").read_text() == "1.1.0\n"
    for path in ("launch.py", "webui-user.sh", "requirements_versions.txt"):
        assert (checkout / path).is_file(), path
    assert (checkout / "modules" / "standin_webui.py").is_file()


def test_the_same_tree_gives_the_same_commits(served, tmp_path):
    again = forge_repo.build(tmp_path / "again")
    assert again.forge_commits == served.built.forge_commits
    assert again.extension_commits == served.built.extension_commits


def test_extension_repository_has_two_commits(served, tmp_path):
    checkout = tmp_path / "ext"
    _git("clone", "-q", served.extension_url, str(checkout))
    assert _git("-C", str(checkout), "log", "--format=%H").split() == list(
        reversed(served.built.extension_commits)
    )


def _launch(checkout, *args, env=None):
    return subprocess.run(
        [sys.executable, "launch.py", *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_launch_refuses_an_unknown_flag_when_the_ui_starts_as_argparse_does(served, tmp_path):
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    result = _launch(checkout, "--skip-prepare-environment", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr


def test_launch_prints_its_arguments_with_commandline_args_appended(served, tmp_path):
    # Forge prints sys.argv (COMMANDLINE_ARGS appended) before it parses its options
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    result = _launch(
        checkout,
        "--skip-prepare-environment",
        "--port",
        "1",
        env={"COMMANDLINE_ARGS": "--no-such-flag 'a b'"},
    )
    assert (
        "Launching Web UI with arguments: --skip-prepare-environment --port 1 --no-such-flag 'a b'"
        in result.stdout
    )


def test_a_failed_preparation_names_forges_step_and_prints_no_exit_line(served, tmp_path):
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    result = _launch(
        checkout,
        "--skip-torch-cuda-test",
        "--exit",
        env={"TORCH_COMMAND": "pip --version", "CLIP_PACKAGE": str(tmp_path / "no-such-clip.zip")},
    )
    assert result.returncode == 1
    assert "RuntimeError: Couldn't install clip." in result.stderr
    assert "Exiting because of --exit argument" not in result.stdout


def test_webui_sh_exits_0_when_launch_py_fails_as_forges_relaunch_loop_does(served, tmp_path):
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    result = subprocess.run(
        ["bash", "webui.sh", "-f", "--skip-prepare-environment", "--no-such-flag"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "python_cmd": sys.executable,
            "venv_dir": "-",
            "NO_TCMALLOC": "1",
        },
        timeout=60,
    )
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert result.returncode == 0


def test_webui_user_sh_is_tracked_and_sets_nothing(served, tmp_path):
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    assert "webui-user.sh" in _git("-C", str(checkout), "ls-files").split()
    settings = [
        line
        for line in (checkout / "webui-user.sh").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert settings == []


def test_webui_sh_refuses_root_without_f(served, tmp_path):
    checkout = tmp_path / "forge"
    _git("clone", "-q", served.forge_url, str(checkout))
    result = subprocess.run(
        ["bash", "webui.sh", "--exit"], cwd=checkout, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "must not be launched as root" in result.stdout
