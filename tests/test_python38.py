"""What runs on the VMs runs on their oldest Python, 3.8: the VM-side unit tests under a
real 3.8 (.venv-py38, built by scripts/bootstrap), and every module compiled by it.

The VM-side test files are the tests/unit entries of ruff's per-file-target-version in
pyproject.toml: one list for the lint target and for this run.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import tomllib

from lab.paths import REPO_ROOT

PYTHON38 = REPO_ROOT / ".venv-py38" / "bin" / "python"
TARGETS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["ruff"][
    "per-file-target-version"
]
VM_SIDE_TESTS = sorted(p for p, v in TARGETS.items() if p.startswith("tests/unit/") and v == "py38")

pytestmark = pytest.mark.slow


def python38(*args: str, timeout: int) -> subprocess.CompletedProcess:
    assert PYTHON38.exists(), (
        f"no Python 3.8 environment at {PYTHON38}: run scripts/bootstrap, which builds it from "
        "a Python 3.8 (FORGE_PYTHON38, $(pyenv root)/versions/3.8*, or python3.8 on PATH) "
        "and says which one it lacks"
    )
    return subprocess.run(
        [str(PYTHON38), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_interpreter_is_a_real_python_3_8():
    done = python38("-c", "import sys; print(sys.version_info[:2])", timeout=30)
    assert done.stdout.strip() == "(3, 8)", done.stderr


def test_every_module_and_module_util_compiles_under_python_3_8(tmp_path):
    sources = sorted(str(p) for p in (REPO_ROOT / "library").glob("*.py"))
    sources += sorted(str(p) for p in (REPO_ROOT / "module_utils").rglob("*.py"))
    sources.append(str(REPO_ROOT / "bin" / "sd-models"))
    script = (
        "import py_compile, sys\n"
        "for i, path in enumerate(sys.argv[2:]):\n"
        "    py_compile.compile(path, cfile=f'{sys.argv[1]}/{i}.pyc', doraise=True)\n"
    )
    done = python38("-c", script, str(tmp_path), *sources, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(tmp_path.iterdir())) == len(sources) > 15


def test_the_vm_side_unit_tests_pass_under_python_3_8():
    assert len(VM_SIDE_TESTS) >= 8, VM_SIDE_TESTS
    done = python38(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *VM_SIDE_TESTS, timeout=900
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 250, summary
    assert "skipped" not in summary, summary  # nothing is skipped for want of a feature
