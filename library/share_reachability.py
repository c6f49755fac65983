#!/usr/bin/python
"""Ansible module: whether the host reaches what gradio's --share needs (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: share_reachability
short_description: Check from the host that gradio's share server and tunnel binary are reachable
description:
  - Asks, as gradio 4.40 would at Forge's start, gradio's share server for a tunnel
    (GET https://api.gradio.app/v2/tunnel-request, then a TCP connect to the host:port it
    hands out), or connects to GRADIO_SHARE_SERVER_ADDRESS (host:port) when O(environment)
    gives it; and, unless O(frpc_provided), sends a HEAD request for gradio's frpc binary on
    its CDN (https://cdn-media.huggingface.co/frpc-gradio-0.2/frpc_linux_<machine>).
  - Returns C(share_warnings), one "sharing may fail ..." line per unreachable target with what
    to do; never fails for an unreachable target (a lab without internet still converges).
  - The probes run side by side, each bounded by O(timeout) seconds, name resolution
    included. Read-only; behaves the same in check mode.
options:
  environment:
    description: Forge's environment (forge_environment); only GRADIO_SHARE_SERVER_ADDRESS is read.
    type: dict
    default: {}
  frpc_provided:
    description: The binary comes from webui_frpc_url, so gradio's CDN is not checked.
    type: bool
    default: false
  timeout:
    description: Seconds each probe may take.
    type: float
    default: 5
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Check that sharing can work from this host
  share_reachability:
    environment: "{{ forge_environment }}"
    frpc_provided: "{{ webui_frpc_url | length > 0 }}"
  register: share_check
"""

RETURN = r"""
tunnel:
  description:
    - The share server as probed - C(what) (URL or host:port), C(ok), C(seen) (HTTP status
      or error), C(tunnel) (the host:port gradio's server handed out).
  type: dict
  returned: always
frpc:
  description:
    - The CDN URL of the binary as probed (C(what), C(ok), C(seen)); with O(frpc_provided),
      C(ok) true and C(seen) provided.
  type: dict
  returned: always
share_warnings:
  description:
    - One "sharing may fail - ..." line per unreachable target, with what to do; empty when
      all answered.
  type: list
  elements: str
  returned: always
"""

import platform

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.share_reach import check


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "environment": {"type": "dict", "default": {}},
            "frpc_provided": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 5},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = check(
            {k: str(v) for k, v in (params["environment"] or {}).items()},
            params["frpc_provided"],
            platform.machine(),
            params["timeout"],
        )
    except ValueError as error:
        module.fail_json(msg=f"forge_environment: {error}")
    # "warnings" is Ansible's own key (it would print each line as [WARNING]): returned as
    # share_warnings, which the role prints as its own warning line per host
    result["share_warnings"] = result.pop("warnings")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
