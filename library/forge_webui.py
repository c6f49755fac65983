#!/usr/bin/python
"""Ansible module: read Forge's systemd service (and compare its files), or wait until it
answers behind its login."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_webui
short_description: Read Forge's service state, or wait until Forge answers behind its login
description:
  - O(state=probe) (read-only) - the unit's state, main PID, how long the main process has
    run, what gradio printed last about the share link during the current start and when
    (from the journal of that start only), and, when the unit is active, what Forge answers to one
    C(GET /login_check) on O(port) now (so a caller can tell a healthy Forge without
    waiting).
  - With O(files) (O(state=probe) only), also compares the files the service reads, declared
    exactly as the C(host_files) module takes them, and returns in RV(files_changes) what
    C(host_files) would change (its C(changes) in check mode, by the same comparison in
    C(module_utils/forge_fleet/file_set_module.py)). A caller runs the C(host_files) write
    only when that is not empty, so a re-run that finds everything as declared costs one
    module run. A secret's content (O(files[].secret_content)) is never shown nor returned.
  - O(state=ready) - waits until Forge answers C(GET /login_check) on C(127.0.0.1:port)
    (401 when O(auth) is on, so the login is in force), then until gradio printed the share
    link or its failure when O(share) is on. Fails when the service stops or restarts while
    starting, or on timeout, with the unit's last journal lines; the service is left as
    systemd has it.
  - Never changes anything; C(changed) is always false (also when RV(files_changes) says a
    write would).
options:
  name:
    description: The systemd unit.
    type: str
    default: forge-webui.service
  state:
    description: C(probe) reads; C(ready) waits.
    type: str
    choices: [probe, ready]
    default: probe
  port:
    description: >-
      Forge's port. O(state=ready) waits for it (7860 when not given); O(state=probe) asks it
      once, when given and the unit is active.
    type: int
  auth:
    description: Forge runs with a login (C(/login_check) must answer 401).
    type: bool
    default: true
  share:
    description: Forge runs with C(--share); wait for gradio's share line.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the first HTTP answer.
    type: int
    default: 900
  share_timeout:
    description: Seconds to wait, after the first answer, for gradio's share line.
    type: int
    default: 120
  journal_lines:
    description: Journal lines shown on failure.
    type: int
    default: 30
extends_documentation_fragment:
  - file_set
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Read the service as it is now, and what writing its files would change
  forge_webui:
    state: probe
    port: 7860
    files: "{{ webui_files }}"  # the list the host_files task below takes
  register: before

- name: Write the service's files
  host_files:
    files: "{{ webui_files }}"
  when: before.files_changes | length > 0

- name: Wait until Forge answers behind its login
  forge_webui:
    state: ready
    port: 7860
    share: true
  register: webui
"""

RETURN = r"""
main_pid:
  description: The service's main PID (0 when not running).
  type: int
  returned: always
invocation_id:
  description: systemd's id of the current start.
  type: str
  returned: always
share_url:
  description: The gradio share link printed during the current start, or null.
  type: str
  returned: always
share_error:
  description: Gradio's reason when it could not create a share link, or null.
  type: str
  returned: always
share_made_at:
  description: >-
    When gradio printed RV(share_url) or RV(share_error) (seconds since the epoch, as
    journald stamped the line), or null. Forge's "Reload UI" prints a new link in the same
    process: the newest line is the one returned, so this is the age of the link, not of
    the process.
  type: float
  returned: always
share_age_hours:
  description: Hours since gradio printed RV(share_url); null without a link.
  type: float
  returned: always
share_expires_at:
  description: When RV(share_url) expires (72 hours after it was made, gradio's limit), in
    seconds since the epoch; null without a link.
  type: float
  returned: always
local_url:
  description: The local URL gradio printed, or null.
  type: str
  returned: always
exists:
  description: Whether systemd has the unit loaded.
  type: bool
  returned: always
active_state:
  description: ActiveState of the unit (with O(state=ready), once Forge answered).
  type: str
  returned: always
sub_state:
  description: SubState of the unit, C(auto-restart) in a crash loop.
  type: str
  returned: always
n_restarts:
  description: How often systemd restarted the service (NRestarts).
  type: int
  returned: always
unit_file_state:
  description: UnitFileState of the unit, C(enabled) when it starts at boot.
  type: str
  returned: always
uptime_hours:
  description: Hours since the main process started, null when not running.
  type: float
  returned: always
http_status:
  description: >-
    What C(GET /login_check) on O(port) answered; with O(state=probe), null when the unit is
    not active or nothing answered.
  type: int
  returned: always
files_changes:
  description: What C(host_files) with the same O(files) would change, per path (each a list
    of C(created), C(content), C(mode), C(owner), C(group), C(removed)); unchanged paths are
    left out, so C({}) when every file is as declared (and when no O(files) were given).
  type: dict
  returned: with O(state=probe)
  sample: {"/home/azureuser/.config/forge-fleet/webui-auth": ["mode"]}
"""

from ansible.module_utils.forge_fleet.file_set_module import (
    FilesModule,
    changes_by_path,
    files_option,
    plan_files,
)
from ansible.module_utils.forge_fleet.webui_service import WebuiFailed, probe, wait_ready


def main() -> None:
    # FilesModule: a secret_content in files is masked everywhere, the journal included
    module = FilesModule(
        argument_spec={
            "name": {"type": "str", "default": "forge-webui.service"},
            "state": {"type": "str", "choices": ["probe", "ready"], "default": "probe"},
            "port": {"type": "int"},
            "auth": {"type": "bool", "default": True},
            "share": {"type": "bool", "default": False},
            "timeout": {"type": "int", "default": 900},
            "share_timeout": {"type": "int", "default": 120},
            "journal_lines": {"type": "int", "default": 30},
            "files": files_option(),
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["files"] is not None and p["state"] != "probe":
        module.fail_json(
            msg=f"files is an option of state=probe only (state is {p['state']}): "
            "compare the files with a probe, write them with host_files",
            changed=False,
        )
    try:
        if p["state"] == "probe":
            # the files first: bad input fails before systemd is asked anything
            files = changes_by_path(plan_files(module, p["files"] or []))
            result = {**probe(p["name"], port=p["port"]), "files_changes": files}
        else:
            result = wait_ready(
                p["name"],
                p["port"] or 7860,
                auth=p["auth"],
                share=p["share"],
                timeout=p["timeout"],
                share_timeout=p["share_timeout"],
                tail=p["journal_lines"],
            )
    except WebuiFailed as error:
        module.fail_json(msg=str(error), changed=False)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
