#!/usr/bin/python
"""Ansible module: prove Forge makes an image - the student's login, then one tiny txt2img
through Forge's API (thin adapter over module_utils/forge_fleet/webui_smoke.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: forge_smoke
short_description: Prove that Forge makes an image - log in as the student, make one tiny txt2img
description:
  - >-
    Logs in as the student would (C(POST /login) with the first login of O(auth_file)), which
    must answer 200 C({"success": true}).
  - Lists the checkpoints through Forge's API (C(GET /sdapi/v1/sd-models), HTTP basic auth
    with the credentials in O(api_auth_file)) and chooses O(checkpoint), or the one Forge
    has selected (C(GET /sdapi/v1/options)), else the first one it lists.
  - Makes one image (C(POST /sdapi/v1/txt2img), O(steps) steps, O(width) by O(height)) with
    C(save_images) off (nothing lands in C(outputs/)) and Forge's settings restored
    afterwards; the image must be a PNG of that size with more than one colour.
  - Credentials are read from the files on the host, never taken as options, and never
    returned nor shown.
  - Fails, without changing anything, with the step that failed and Forge's own error line
    (from the API's error answer and the last exception line Forge printed into the journal
    of O(name)'s current start during the request).
  - Changes nothing; C(changed) is always false (no image is saved). In check mode it does
    nothing and says so.
options:
  port:
    description: Forge's port on 127.0.0.1.
    type: int
    default: 7860
  name:
    description: >-
      The systemd unit running Forge (for its main process's start time and its journal).
    type: str
    default: forge-webui.service
  auth_file:
    description: >-
      The student login file (C(user:password), Forge's C(--gradio-auth-path) syntax); not
      given - Forge runs without a login and that step is left out.
    type: path
  api_auth_file:
    description: The API credentials file (C(user:password), Forge's C(--api-auth)).
    type: path
    required: true
  checkpoint:
    description: >-
      The checkpoint to use, by title, model name or file name as Forge lists it; empty - the
      one Forge has selected (its C(sd_model_checkpoint) option, so no checkpoint switch),
      else the first checkpoint Forge lists.
    type: str
    default: ""
  width:
    description: Image width (64 is the smallest size Forge's UI offers).
    type: int
    default: 64
  height:
    description: Image height.
    type: int
    default: 64
  steps:
    description: Sampling steps.
    type: int
    default: 1
  seed:
    description: The seed (a fixed one, so a host's test image is the same each time).
    type: int
    default: 1
  timeout:
    description: >-
      Seconds to wait for the image (a first image after a start loads the checkpoint).
    type: int
    default: 600
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Prove that the host makes an image
  forge_smoke:
    port: 7860
    name: forge-webui.service
    auth_file: /home/azureuser/.config/forge-fleet/webui-auth
    api_auth_file: /home/azureuser/.config/forge-fleet/webui-api-auth
  register: smoke
"""

RETURN = r"""
checkpoint:
  description: The title of the checkpoint asked for (as Forge lists it).
  type: str
  returned: success
  sample: "tiny-sd15.safetensors [0123456789]"
model_used:
  description: >-
    The checkpoint that made the image, as Forge's answer names it (C(sd_model_name) of its
    info, the file name without extension); null when Forge did not say.
  type: str
  returned: success
width:
  description: The image's width.
  type: int
  returned: success
height:
  description: The image's height.
  type: int
  returned: success
steps:
  description: Sampling steps.
  type: int
  returned: success
seed:
  description: The seed.
  type: int
  returned: success
generation_seconds:
  description: Seconds the txt2img request took (with a checkpoint load after a start).
  type: float
  returned: success
first_image_seconds:
  description: >-
    Seconds from the start of the unit's main process to the image (the time to a first
    image after a (re)start); null when the unit is not active.
  type: float
  returned: success
image_bytes:
  description: The PNG's size in bytes.
  type: int
  returned: success
invocation_id:
  description: systemd's id of the start that made the image.
  type: str
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.webui_smoke import (
    SmokeFailed,
    read_api_auth,
    read_login,
    smoke,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "port": {"type": "int", "default": 7860},
            "name": {"type": "str", "default": "forge-webui.service"},
            "auth_file": {"type": "path"},
            "api_auth_file": {"type": "path", "required": True},
            "checkpoint": {"type": "str", "default": ""},
            "width": {"type": "int", "default": 64},
            "height": {"type": "int", "default": 64},
            "steps": {"type": "int", "default": 1},
            "seed": {"type": "int", "default": 1},
            "timeout": {"type": "int", "default": 600},
        },
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(
            changed=False,
            skipped=True,
            msg="check mode: no image made (a real run makes one and changes nothing)",
        )
    try:
        login = read_login(p["auth_file"]) if p["auth_file"] else None
        api_auth = read_api_auth(p["api_auth_file"])
        # never in a message or a result, should Forge ever echo one
        module.no_log_values.update(s for s in (api_auth[1], login[1] if login else "") if s)
        result = smoke(
            p["port"],
            p["name"],
            login=login,
            api_auth=api_auth,
            checkpoint=p["checkpoint"],
            width=p["width"],
            height=p["height"],
            steps=p["steps"],
            seed=p["seed"],
            timeout=p["timeout"],
        )
    except SmokeFailed as error:
        module.fail_json(msg=str(error), changed=False)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
