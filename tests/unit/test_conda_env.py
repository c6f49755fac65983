"""conda_env's decisions, driven by conda's JSON answers (a scripted conda)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from forge_fleet.conda_env import (
    CondaEnvError,
    ensure_env,
    find_conda,
    install_conda,
    installer_hash,
    version_matches,
)


class ScriptedConda:
    """Answers like conda: info/env list as JSON, the env's python prints its version."""

    def __init__(self, tmp_path, envs: dict[str, str]):
        self.root = tmp_path / "anaconda"
        self.envs = dict(envs)
        self.calls: list[list[str]] = []
        for name in envs:
            python = self.root / "envs" / name / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[1:] == ["info", "--json"]:
            return (
                0,
                json.dumps({"root_prefix": str(self.root), "envs_dirs": [str(self.root / "envs")]}),
                "",
            )
        if argv[1:] == ["env", "list", "--json"]:
            prefixes = [str(self.root)] + [str(self.root / "envs" / n) for n in self.envs]
            return 0, json.dumps({"envs": prefixes}), ""
        if argv[1] == "-c":
            name = argv[0].split("/")[-3]
            return 0, self.envs[name] + "\n", ""
        if argv[1] == "remove":
            del self.envs[argv[argv.index("-n") + 1]]
            return 0, "{}", ""
        if argv[1] == "create":
            name = argv[argv.index("-n") + 1]
            self.envs[name] = {"python=3.10": "3.10.13", "python=3.9": "3.9.18"}[argv[-1]]
            python = self.root / "envs" / name / "bin" / "python"
            python.parent.mkdir(parents=True, exist_ok=True)
            python.write_text("")
            return 0, json.dumps({"success": True}), ""
        raise AssertionError(argv)


def test_version_matches_as_conda_reads_python_x():
    assert version_matches("3.10", "3.10.13")
    assert not version_matches("3.1", "3.10.13")
    assert not version_matches("3.10", "3.9.18")


def test_existing_env_with_the_right_python_is_left_alone(tmp_path):
    conda = ScriptedConda(tmp_path, {"forge": "3.10.13", "azureml_py38": "3.8.5"})
    result = ensure_env(conda, "conda", "forge", "3.10", repair=True, check_mode=False)
    assert result["action"] == "present" and not result["changed"]
    assert not [c for c in conda.calls if c[1] in ("create", "remove")]


def test_wrong_python_is_recreated_and_other_envs_untouched(tmp_path):
    conda = ScriptedConda(tmp_path, {"forge": "3.9.18", "azureml_py38": "3.8.5"})
    result = ensure_env(conda, "conda", "forge", "3.10", repair=True, check_mode=False)
    assert result["action"] == "recreated" and result["python_version"] == "3.10.13"
    assert conda.envs == {"forge": "3.10.13", "azureml_py38": "3.8.5"}


def test_wrong_python_without_repair_fails_saying_what_was_found(tmp_path):
    conda = ScriptedConda(tmp_path, {"forge": "3.9.18"})
    with pytest.raises(CondaEnvError, match=r"has Python 3\.9\.18, not Python 3\.10"):
        ensure_env(conda, "conda", "forge", "3.10", repair=False, check_mode=False)


def test_check_mode_reports_and_runs_no_change(tmp_path):
    conda = ScriptedConda(tmp_path, {})
    result = ensure_env(conda, "conda", "forge", "3.10", repair=True, check_mode=True)
    assert result["action"] == "created" and result["changed"]
    assert result["prefix"] == str(conda.root / "envs" / "forge")
    assert not [c for c in conda.calls if c[1] in ("create", "remove")]


def test_base_is_never_a_target(tmp_path):
    with pytest.raises(CondaEnvError, match="not allowed"):
        ensure_env(
            ScriptedConda(tmp_path, {}), "conda", "base", "3.10", repair=True, check_mode=False
        )


def test_find_conda_lists_every_place_looked_at(tmp_path):
    found, looked = find_conda("", ["/nowhere/bin/conda", "~/miniforge3/bin/conda"], "/home/u")
    assert found == "" and looked == ["/nowhere/bin/conda", "/home/u/miniforge3/bin/conda"]


# -- conda_install: Miniforge downloaded, hash checked before it runs ---------------------

INSTALLER = b"#!/bin/bash\necho installer\n"
INSTALLER_SHA = hashlib.sha256(INSTALLER).hexdigest()


def fetch_bytes(data):
    return lambda url: io.BytesIO(data)


def test_install_runs_the_verified_installer_in_batch_mode_and_removes_it(tmp_path):
    prefix = tmp_path / "miniforge3"
    seen = []

    def run(argv):
        seen.append((argv, Path(argv[1]).read_bytes()))
        (prefix / "bin").mkdir(parents=True)
        (prefix / "bin" / "conda").write_text("")
        (prefix / "bin" / "conda").chmod(0o755)
        return 0, "installation finished.", ""

    conda = install_conda(fetch_bytes(INSTALLER), run, "https://x/i.sh", INSTALLER_SHA, str(prefix))
    assert conda == str(prefix / "bin" / "conda")
    assert seen[0][0][0] == "bash" and seen[0][0][2:] == ["-b", "-p", str(prefix)]
    assert seen[0][1] == INSTALLER  # the file that ran is the one that was hashed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["miniforge3"]  # installer gone


def test_install_with_a_wrong_hash_runs_nothing_and_leaves_nothing(tmp_path):
    prefix = tmp_path / "miniforge3"
    ran = []
    wrong = "0" * 64
    with pytest.raises(CondaEnvError) as error:
        install_conda(fetch_bytes(INSTALLER), ran.append, "https://x/i.sh", wrong, str(prefix))
    message = str(error.value)
    assert f"has sha256 {INSTALLER_SHA}, expected {wrong}" in message
    assert "conda_installer_sha256" in message and "nothing was installed" in message
    assert ran == [] and list(tmp_path.iterdir()) == []


def test_install_failure_rolls_back_the_prefix(tmp_path):
    prefix = tmp_path / "miniforge3"

    def run(argv):
        (prefix / "pkgs").mkdir(parents=True)
        return 1, "", "ERROR: out of space"

    with pytest.raises(CondaEnvError, match=r"exit code 1 and was rolled back.*out of space"):
        install_conda(fetch_bytes(INSTALLER), run, "https://x/i.sh", INSTALLER_SHA, str(prefix))
    assert list(tmp_path.iterdir()) == []


def test_install_refuses_an_existing_prefix_and_missing_settings(tmp_path):
    (tmp_path / "miniforge3").mkdir()
    with pytest.raises(CondaEnvError, match="exists but holds no bin/conda"):
        install_conda(
            fetch_bytes(INSTALLER), None, "https://x", INSTALLER_SHA, str(tmp_path / "miniforge3")
        )
    with pytest.raises(CondaEnvError, match="conda_installer_sha256 is missing or not a sha256"):
        install_conda(fetch_bytes(INSTALLER), None, "https://x", "abc", str(tmp_path / "m"))
    assert installer_hash("sha256:" + INSTALLER_SHA.upper()) == INSTALLER_SHA
