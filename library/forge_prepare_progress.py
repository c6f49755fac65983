#!/usr/bin/python
"""Ansible module: read the progress of forge_prepare running in the background (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_prepare_progress
short_description: Show the latest line of Forge's preparation while it runs
description:
  - Reads the log and status files M(forge_prepare) writes; returns whether it has finished
    and its latest output line. Meant for an C(until) loop; the C(forge_progress) callback
    prints the line for each host on every retry.
options:
  log:
    description: The preparation's log file.
    type: path
    required: true
  status:
    description: The file written when the preparation ends.
    type: path
    required: true
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Wait for the preparation, showing progress
  forge_prepare_progress:
    log: /home/azureuser/.cache/forge-fleet/prepare.log
    status: /home/azureuser/.cache/forge-fleet/prepare.status
  register: progress
  until: progress.finished
  retries: 720
  delay: 5
"""

RETURN = r"""
finished:
  description: The preparation has ended (successfully or not).
  type: bool
  returned: always
progress_line:
  description: Its latest output line.
  type: str
  returned: always
progress_label:
  description: What the forge_progress callback prints before the line (C(forge)).
  type: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.forge_prepare import progress


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "log": {"type": "path", "required": True},
            "status": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    result = progress(module.params["log"], module.params["status"])
    module.exit_json(changed=False, progress_label="forge", **result)


if __name__ == "__main__":
    main()
