#!/usr/bin/python
"""Ansible module: mount /proc with hidepid (and a gid exemption), now and across reboots."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proc_hidepid
short_description: Hide other users' processes by mounting /proc with hidepid
description:
  - Remounts the live /proc with O(hidepid) and O(gid) when its options differ, and keeps a
    C(proc /proc proc defaults,hidepid=N,gid=G 0 0) line in O(fstab) so a reboot keeps them.
  - With C(invisible), users see only their own processes (C(ps), C(/proc/<pid>/cmdline));
    root and members of the O(gid) group still see all of them.
  - Check mode reports exactly what a real run would remount or write, and changes nothing.
  - Fails, naming the reason, when the kernel refuses the remount (a container without
    CAP_SYS_ADMIN) or accepts it without applying the options.
options:
  hidepid:
    description: C(off) restores the default and drops the fstab line.
    type: str
    choices: ["off", noaccess, invisible, ptraceable]
    default: invisible
  gid:
    description: Group whose members still see every process; none when omitted.
    type: int
  fstab:
    description: The fstab file to keep the line in.
    type: path
    default: /etc/fstab
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Hide other users' processes
  proc_hidepid:
    hidepid: invisible
    gid: 998
"""

RETURN = r"""
before:
  description: The live /proc options before the run (hidepid name and gid).
  type: dict
  returned: always
after:
  description: The live /proc options after the run (what they would be, in check mode).
  type: dict
  returned: always
remounted:
  description: Whether /proc was (or, in check mode, would be) remounted.
  type: bool
  returned: always
fstab_changed:
  description: Whether the fstab line was (or would be) written.
  type: bool
  returned: always
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.proc_mount import (
    ProcMountError,
    fstab_with,
    live_matches,
    mount_options,
    proc_options,
)

MOUNTINFO = "/proc/self/mountinfo"


def read_live() -> dict:
    with open(MOUNTINFO, encoding="utf-8") as handle:
        return proc_options(handle.read())


def write_fstab(module: AnsibleModule, path: str, text: str) -> None:
    """Replace the fstab atomically (a temporary file beside it, then a rename)."""
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".fstab.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(temporary, mode)
    module.atomic_move(temporary, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "hidepid": {
                "type": "str",
                "choices": ["off", "noaccess", "invisible", "ptraceable"],
                "default": "invisible",
            },
            "gid": {"type": "int"},
            "fstab": {"type": "path", "default": "/etc/fstab"},
        },
        supports_check_mode=True,
    )
    hidepid, gid, fstab = module.params["hidepid"], module.params["gid"], module.params["fstab"]
    wanted = {"hidepid": hidepid, "gid": None if hidepid == "off" else gid}
    try:
        before = read_live()
    except (OSError, ProcMountError) as error:
        module.fail_json(msg=f"cannot read the /proc mount options from {MOUNTINFO}: {error}")
    live_ok = live_matches(before, hidepid, gid)

    current_fstab = ""
    if os.path.exists(fstab):
        with open(fstab, encoding="utf-8") as handle:
            current_fstab = handle.read()
    new_fstab = fstab_with(current_fstab, hidepid, gid)
    fstab_changed = new_fstab != current_fstab
    result = {
        "before": before,
        "after": before if live_ok else wanted,
        "remounted": not live_ok,
        "fstab_changed": fstab_changed,
        "changed": fstab_changed or not live_ok,
        "diff": {
            "before": current_fstab,
            "after": new_fstab,
            "before_header": fstab,
            "after_header": fstab,
        },
    }
    if module.check_mode:
        module.exit_json(**result)

    if not live_ok:
        options = mount_options(hidepid, wanted["gid"])
        rc, _out, err = module.run_command(["mount", "-o", f"remount,{options}", "/proc"])
        if rc != 0:
            module.fail_json(
                msg=(
                    f"mount -o remount,{options} /proc failed: {err.strip()}. Remounting /proc "
                    "needs root with CAP_SYS_ADMIN (a container started without it cannot). "
                    'Set base_proc_hidepid: "off" to leave /proc as it is; other users of the '
                    "VM can then read AzCopy's SAS from its command line while it runs."
                ),
                **result,
            )
        after = read_live()
        # hidepid off: a gid= the remount did not name stays (the kernel keeps what a remount
        # leaves out) and means nothing without hidepid
        if not live_matches(after, hidepid, gid):
            module.fail_json(
                msg=f"/proc was remounted with {options} but reads {after}: the kernel ignored it",
                **result,
            )
        result["after"] = after
    if fstab_changed:
        write_fstab(module, fstab, new_fstab)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
