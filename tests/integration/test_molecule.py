"""Every role's Molecule scenarios: create, converge, idempotence, verify, destroy.

One test class per scenario (made below from the scenarios found), so that `tests/run`
(pytest-xdist, `--dist loadscope`) gives each scenario a worker of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

SCENARIOS = sorted(REPO_ROOT.glob("roles/*/molecule/*/molecule.yml"))


@pytest.mark.lab
@pytest.mark.molecule
@pytest.mark.slow
class MoleculeScenario:
    scenario: Path

    def test_molecule_scenario_passes(self) -> None:
        scenario = self.scenario
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


for _scenario in SCENARIOS:
    _role, _name = _scenario.parts[-4], _scenario.parts[-2]
    _class = "Test_" + re.sub(r"\W", "_", f"{_role}_{_name}")
    globals()[_class] = type(_class, (MoleculeScenario,), {"scenario": _scenario})
