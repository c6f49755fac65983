#!/usr/bin/python
"""Ansible module: read what Forge's preparation depends on, in one run (thin adapter)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_prepared
short_description: Read what Forge's preparation depends on and what was prepared before
description:
  - One read-only pass over what decides whether Forge must be prepared again - the sha256
    of O(files) in O(dir), the output of O(probe) run by O(python) as O(user) (the conda
    environment's package list), and the record of the last preparation (O(record)).
  - Runs as root under C(become) and drops to O(user) for the probe only.
  - Read-only; behaves the same in check mode (the probe runs there too).
  - Fails only when O(record) exists but is not a JSON object.
options:
  dir:
    description: The Forge checkout.
    type: path
    required: true
  files:
    description: Files in O(dir) to hash (sha256) and to stat (owner, group, mode).
    type: list
    elements: str
    default: []
  python:
    description: The Python of the conda environment.
    type: path
    required: true
  probe:
    description: Python code run with C(python -c); its standard output is returned.
    type: str
    required: true
  user:
    description: The user that runs O(probe) (the Forge user); the module's own user when omitted.
    type: str
  record:
    description: The JSON record of the last preparation.
    type: path
    required: true
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Read what was prepared before and what a preparation depends on
  forge_prepared:
    dir: /home/azureuser/stable-diffusion-webui-forge
    files: [requirements_versions.txt, webui-user.sh]
    python: /opt/miniforge/envs/forge/bin/python
    probe: import sys; print(sys.version)
    user: azureuser
    record: /var/lib/forge-fleet/forge.json
  register: prepared
"""

RETURN = r"""
sha256:
  description: The sha256 of each of O(files), by name; "" for one that is absent.
  type: dict
  returned: always
stat:
  description: >-
    The owner, group and mode (four octal digits, C("0644")) of each of O(files), by name;
    {} for one that is absent or not a regular file.
  type: dict
  returned: always
probe_rc:
  description: The probe's exit code (127 when O(python) or O(user) does not exist).
  type: int
  returned: always
probe_stdout:
  description: The probe's standard output, without its trailing newline.
  type: str
  returned: always
probe_stderr:
  description: The probe's standard error, without its trailing newline.
  type: str
  returned: always
record_found:
  description: Whether O(record) exists.
  type: bool
  returned: always
record:
  description: The parsed O(record); {} when it is absent.
  type: dict
  returned: always
record_sha256:
  description: The sha256 of O(record); "" when it is absent.
  type: str
  returned: always
record_stat:
  description: The owner, group and mode of O(record); {} when it is absent.
  type: dict
  returned: always
record_dir_stat:
  description: The owner, group and mode of the folder of O(record); {} when it is absent.
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.forge_prepared import (
    RecordUnreadable,
    file_sha256,
    files_sha256,
    files_stat,
    path_stat,
    read_record,
    run_probe,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dir": {"type": "path", "required": True},
            "files": {"type": "list", "elements": "str", "default": []},
            "python": {"type": "path", "required": True},
            "probe": {"type": "str", "required": True},
            "user": {"type": "str"},
            "record": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        found, record = read_record(p["record"])
    except RecordUnreadable as error:
        module.fail_json(
            msg=f"{error}: remove it and run again (Forge is then prepared again).",
            changed=False,
        )
    rc, stdout, stderr = run_probe(p["python"], p["probe"], p["user"])
    module.exit_json(
        changed=False,
        sha256=files_sha256(p["dir"], p["files"]),
        stat=files_stat(p["dir"], p["files"]),
        probe_rc=rc,
        probe_stdout=stdout,
        probe_stderr=stderr,
        record_found=found,
        record=record,
        record_sha256=file_sha256(p["record"]),
        record_stat=path_stat(p["record"]),
        record_dir_stat=path_stat(os.path.dirname(p["record"]), "directory"),
    )


if __name__ == "__main__":
    main()
