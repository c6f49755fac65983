#!/usr/bin/python
"""Ansible module: report free disk space for a path (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: path_free_space
short_description: Report the free space of the file system that will hold a path
description:
  - Measures the file system holding O(path), or its closest existing ancestor when the
    path does not exist yet (for example a Forge checkout that is still to be cloned).
  - Read-only; behaves the same in check mode.
options:
  path:
    description: Path whose file system to measure.
    type: path
    required: true
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Measure free disk space where Forge will live
  path_free_space:
    path: /home/azureuser/stable-diffusion-webui-forge
  register: forge_disk
"""

RETURN = r"""
path:
  description: The path asked about.
  type: str
  returned: always
measured_path:
  description: The existing path actually measured (O(path) or its closest existing ancestor).
  type: str
  returned: always
free_bytes:
  description: Bytes available to unprivileged users.
  type: int
  returned: always
total_bytes:
  description: Size of the file system in bytes.
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.disk_space import free_space


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    try:
        result = free_space(module.params["path"])
    except OSError as error:
        module.fail_json(msg=f"Cannot measure free space for {module.params['path']}: {error}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
