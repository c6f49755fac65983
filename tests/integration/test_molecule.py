"""Every role's Molecule scenarios: create, converge, idempotence, verify, destroy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

SCENARIOS = sorted(REPO_ROOT.glob("roles/*/molecule/*/molecule.yml"))

pytestmark = [pytest.mark.lab, pytest.mark.molecule, pytest.mark.slow]


@pytest.mark.parametrize(
    "scenario", SCENARIOS, ids=[f"{p.parts[-4]}/{p.parts[-2]}" for p in SCENARIOS]
)
def test_molecule_scenario_passes(scenario: Path):
    role_dir = scenario.parent.parent.parent
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario.parent.name],
        cwd=role_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # House rule: every scenario proves idempotence and verifies real state.
    for step in ("converge", "idempotence", "verify"):
        assert f"{scenario.parent.name} > {step}: Executed: Successful" in output, step
