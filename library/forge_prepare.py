#!/usr/bin/python
"""Ansible module: run Forge's preparation (webui.sh --exit) with a log (thin adapter)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_prepare
short_description: Run Forge's preparation step and explain a failure
description:
  - Runs O(command) (Forge's C(webui.sh --exit), which installs torch, then the
    requirements, into the Python its environment file names) in O(chdir), its output going to
    O(log); writes O(status) when it ends, so M(forge_prepare_progress) can show progress
    while it runs (C(async)).
  - Succeeds only when the command exits 0 B(and) its output ends Forge's preparation with
    C(Exiting because of --exit argument), because Forge's C(webui.sh) exits 0 even when
    C(launch.py) failed.
  - On failure names the package pip could not install and shows pip's last lines.
  - Always changes the host when it runs; the role decides whether it needs to run.
options:
  command:
    description: The command, as a list.
    type: list
    elements: str
    required: true
  chdir:
    description: The Forge checkout.
    type: path
    required: true
  log:
    description: File for the command's output (0600).
    type: path
    required: true
  status:
    description: File written when the command ends.
    type: path
    required: true
  environment_file:
    description:
      - Forge's environment file (C(NAME="value") lines, as the forge role writes it); its
        variables are added to the command's environment, as the webui unit adds them to
        Forge's.
    type: path
    default: ""
  pin_requirements:
    description:
      - A requirements file in O(chdir) whose C(name==version) lines pip must keep while the
        command runs (a constraints file next to O(log), named by C(PIP_CONSTRAINT)), so
        Forge's extension installers cannot move what Forge pins.
    type: str
    default: ""
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Prepare Forge
  forge_prepare:
    command: [./webui.sh, --exit]
    chdir: /home/azureuser/stable-diffusion-webui-forge
    log: /home/azureuser/.cache/forge-fleet/prepare.log
    status: /home/azureuser/.cache/forge-fleet/prepare.status
  async: 3600
  poll: 0
"""

RETURN = r"""
rc:
  description: The command's exit code.
  type: int
  returned: always
tail:
  description: The last lines of its output.
  type: list
  returned: always
package:
  description: The package pip could not install ("" when none).
  type: str
  returned: failure
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.env_file import read as read_environment
from ansible.module_utils.forge_fleet.forge_prepare import (
    failed_package,
    failure_message,
    last_lines,
    pins,
    run_logged,
    succeeded,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "command": {"type": "list", "elements": "str", "required": True},
            "chdir": {"type": "path", "required": True},
            "log": {"type": "path", "required": True},
            "status": {"type": "path", "required": True},
            "environment_file": {"type": "path", "default": ""},
            "pin_requirements": {"type": "str", "default": ""},
        },
        supports_check_mode=False,
    )
    params = module.params
    try:
        environment = (
            read_environment(params["environment_file"]) if params["environment_file"] else {}
        )
    except (OSError, ValueError) as error:
        module.fail_json(
            msg=f"Cannot read Forge's environment file {params['environment_file']}: {error}"
        )
    constraints = []
    if params["pin_requirements"]:
        path = os.path.join(params["chdir"], params["pin_requirements"])
        try:
            with open(path, encoding="utf-8") as handle:
                constraints = pins(handle.read())
        except OSError as error:
            module.fail_json(msg=f"Cannot read Forge's requirements {path}: {error}")
    try:
        rc, text = run_logged(
            params["command"],
            params["chdir"],
            params["log"],
            params["status"],
            environment=environment,
            constraints=constraints,
        )
    except OSError as error:
        module.fail_json(msg=f"Cannot run {' '.join(params['command'])}: {error}", rc=-1, tail=[])
    tail = last_lines(text, 15)
    if not succeeded(text, rc):
        module.fail_json(
            msg=failure_message(text, rc, " ".join(params["command"])),
            rc=rc,
            tail=tail,
            package=failed_package(text),
        )
    module.exit_json(changed=True, rc=rc, tail=tail)


if __name__ == "__main__":
    main()
