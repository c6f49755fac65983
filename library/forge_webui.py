#!/usr/bin/python
"""Ansible module: read Forge's systemd service, or wait until it answers behind its login."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_webui
short_description: Read Forge's service state, or wait until Forge answers behind its login
description:
  - O(state=probe) (read-only) - the unit's state, main PID, how long the main process has
    run, what gradio printed about the share link during the current start (from the
    journal of that start only), and, when the unit is active, what Forge answers to one
    C(GET /login_check) on O(port) now (so a caller can tell a healthy Forge without
    waiting).
  - O(state=ready) - waits until Forge answers C(GET /login_check) on C(127.0.0.1:port)
    (401 when O(auth) is on: the login is in force), then until gradio printed the share
    link or its failure when O(share) is on. Fails when the service stops or restarts while
    starting, or on timeout, with the unit's last journal lines; the service is left as
    systemd has it.
  - Never changes anything; C(changed) is always false.
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
author: Forge Fleet
"""

EXAMPLES = r"""
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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.webui_service import WebuiFailed, probe, wait_ready


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "forge-webui.service"},
            "state": {"type": "str", "choices": ["probe", "ready"], "default": "probe"},
            "port": {"type": "int"},
            "auth": {"type": "bool", "default": True},
            "share": {"type": "bool", "default": False},
            "timeout": {"type": "int", "default": 900},
            "share_timeout": {"type": "int", "default": 120},
            "journal_lines": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "probe":
            result = probe(p["name"], port=p["port"])
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
