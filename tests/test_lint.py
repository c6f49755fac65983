"""Lint is part of the test suite: ansible-lint (production profile), yamllint, ruff."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1"}
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "command",
    [
        ["ansible-lint", "--nocolor"],
        ["yamllint", "--strict", "."],
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
    ],
    ids=["ansible-lint", "yamllint", "ruff-check", "ruff-format"],
)
def test_lint_is_clean(command):
    result = _run(str(BIN / command[0]), *command[1:])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
