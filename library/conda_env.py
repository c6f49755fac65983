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
  install:
    description:
      - When no conda is found, install Miniforge from O(installer_url) into O(install_prefix)
        (checked against O(installer_sha256) before it runs). A conda already at
        O(install_prefix) is found and nothing is downloaded.
    type: bool
    default: false
  installer_url:
    description: URL of a Miniforge3 Linux installer (required with O(install)).
    type: str
    default: ""
  installer_sha256:
    description: Its sha256, hex (required with O(install)).
    type: str
    default: ""
  install_prefix:
    description: Where Miniforge is installed (C(~/) is the running user's home); must not exist.
    type: str
    default: ~/miniforge3
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
installed:
  description: Whether Miniforge was installed by this run (in check mode, would be).
  type: bool
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
    check_install_prefix,
    ensure_env,
    find_conda,
    install_conda,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "executable": {"type": "str", "default": ""},
            "candidates": {"type": "list", "elements": "str", "default": DEFAULT_CANDIDATES},
            "name": {"type": "str", "required": True},
            "python": {"type": "str", "required": True},
            "repair": {"type": "bool", "default": True},
            "install": {"type": "bool", "default": False},
            "installer_url": {"type": "str", "default": ""},
            "installer_sha256": {"type": "str", "default": "", "no_log": False},
            "install_prefix": {"type": "str", "default": "~/miniforge3"},
        },
        supports_check_mode=True,
    )
    params = module.params
    home = os.path.expanduser("~")
    prefix = params["install_prefix"]
    prefix = home + prefix[1:] if prefix.startswith("~/") else os.path.abspath(prefix)
    candidates = list(params["candidates"])
    if params["install"] and not params["executable"]:
        candidates.append(os.path.join(prefix, "bin", "conda"))  # installed by an earlier run
    conda, looked = find_conda(params["executable"], candidates, home)
    if not conda and not params["install"]:
        setting = "conda_executable" if params["executable"] else "conda_executable (its path)"
        module.fail_json(
            msg=(
                f"conda not found; looked at: {', '.join(looked)}. Set {setting}, or "
                "conda_install: true with conda_installer_url and conda_installer_sha256, or "
                "install conda (Azure ML compute instance images have it in /anaconda). "
                "Nothing was changed."
            ),
            looked_at=looked,
        )

    def run(argv):
        return module.run_command(argv, environ_update={"CONDA_NO_PLUGINS": "true"})

    installed = False
    try:
        if not conda:
            if module.check_mode:
                check_install_prefix(prefix)  # what the real run would refuse
                url = params["installer_url"]
                module.exit_json(
                    changed=True,
                    installed=True,
                    action="created",
                    executable=os.path.join(prefix, "bin", "conda"),
                    env_name=params["name"],
                    prefix=os.path.join(prefix, "envs", params["name"]),
                    python=os.path.join(prefix, "envs", params["name"], "bin", "python"),
                    python_version=params["python"],
                    found_version="",
                    looked_at=looked,
                    msg=(
                        f"would install Miniforge from {url} into {prefix}, then create "
                        f"conda environment '{params['name']}' with Python {params['python']}"
                    ),
                )
            # imported here: only an install downloads, and importing ansible's urls
            # (compiled from the module's zip on every run) costs a no-op 20-40 ms
            from ansible.module_utils.urls import open_url  # noqa: PLC0415 - see above

            conda = install_conda(
                lambda url: open_url(url, timeout=120),
                run,
                params["installer_url"],
                params["installer_sha256"],
                prefix,
            )
            installed = True
        result = ensure_env(
            run,
            conda,
            params["name"],
            params["python"],
            repair=params["repair"],
            check_mode=module.check_mode,
        )
    except CondaEnvError as error:
        module.fail_json(msg=str(error), looked_at=looked, installed=installed)
    result["installed"] = installed
    result["changed"] = result["changed"] or installed
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
