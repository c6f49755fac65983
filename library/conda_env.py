#!/usr/bin/python
"""Ansible module: one conda environment with a given Python (thin adapter over conda_env)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: conda_env
short_description: Make one conda environment exist with the requested Python
description:
  - Finds conda (O(executable), else the first of O(candidates) that exists), reads its
    environments through C(conda info --json) and C(conda env list --json), and creates
    O(name) with C(python=)O(python) when it is missing.
  - An environment whose Python is not the requested version (or does not run) is removed
    and created again when O(repair) is true; otherwise the module fails saying what it found.
  - Never touches another environment or the base environment.
  - Check mode reports what would be created or recreated and changes nothing.
options:
  executable:
    description: Path of conda; empty to search O(candidates).
    type: str
    default: ""
  candidates:
    description: Places to look for conda, in order (C(~/) is the running user's home).
    type: list
    elements: str
    default: [/anaconda/bin/conda, ~/miniforge3/bin/conda, ~/miniconda3/bin/conda,
              ~/anaconda3/bin/conda, /opt/conda/bin/conda]
  name:
    description: Environment name (not C(base)).
    type: str
    required: true
  python:
    description: Python version, as conda reads C(python=X) (C(3.10) = any 3.10.x).
    type: str
    required: true
  repair:
    description: Recreate an environment whose Python is not O(python).
    type: bool
    default: true
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Create the conda environment for Forge
  conda_env:
    name: forge
    python: "3.10"
  become: true
  become_user: azureuser
"""

RETURN = r"""
executable:
  description: The conda used.
  type: str
  returned: success
prefix:
  description: The environment's prefix (its folder).
  type: str
  returned: success
python:
  description: The environment's python executable.
  type: str
  returned: success
python_version:
  description: Its Python version (in check mode for a new env, the requested one).
  type: str
  returned: success
action:
  description: present, created or recreated (in check mode, what would be done).
  type: str
  returned: success
found_version:
  description: The Python version found before the run ("" when absent or broken).
  type: str
  returned: success
looked_at:
  description: Where conda was looked for.
  type: list
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.conda_env import (
    DEFAULT_CANDIDATES,
    CondaEnvError,
    ensure_env,
    find_conda,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "executable": {"type": "str", "default": ""},
            "candidates": {"type": "list", "elements": "str", "default": DEFAULT_CANDIDATES},
            "name": {"type": "str", "required": True},
            "python": {"type": "str", "required": True},
            "repair": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    conda, looked = find_conda(params["executable"], params["candidates"], os.path.expanduser("~"))
    if not conda:
        setting = "conda_executable" if params["executable"] else "conda_executable (its path)"
        module.fail_json(
            msg=(
                f"conda not found; looked at: {', '.join(looked)}. Set {setting}, or install "
                "conda (Azure ML compute instance images have it in /anaconda). "
                "Nothing was changed."
            ),
            looked_at=looked,
        )

    def run(argv):
        return module.run_command(argv, environ_update={"CONDA_NO_PLUGINS": "true"})

    try:
        result = ensure_env(
            run,
            conda,
            params["name"],
            params["python"],
            repair=params["repair"],
            check_mode=module.check_mode,
        )
    except CondaEnvError as error:
        module.fail_json(msg=str(error), looked_at=looked)
    before = result.pop("before")
    if module._diff and result["changed"]:
        result["diff"] = {
            "before_header": f"conda env {params['name']}",
            "after_header": f"conda env {params['name']}",
            "before": f"{before}\n",
            "after": f"python {result['python_version']}\n",
        }
    module.exit_json(looked_at=looked, **result)


if __name__ == "__main__":
    main()
