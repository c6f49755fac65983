#!/usr/bin/python
"""Ansible module: inspect model files on the target from their headers (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_inspect
short_description: Tell what Stable Diffusion model files are, from their headers alone
description:
  - For each file (directories are walked recursively) reports its format (safetensors,
    pickle, gguf, unknown), role (checkpoint, diffusion_model, vae, text_encoder, lora,
    embedding, controlnet, unknown), family (sd1, sd2, sdxl, sdxl_refiner, sd3, flux_dev,
    flux_schnell, unknown), details and integrity.
  - Reads only safetensors headers; never loads tensors and never unpickles. Pickle files
    are scanned opcode by opcode for dangerous imports.
  - Read-only; behaves the same in check mode.
options:
  paths:
    description: Files or directories to inspect.
    type: list
    elements: path
    required: true
  allowed_pickle_globals:
    description: Globals (C(module.name)) a pickle may import beyond the known-safe ones.
    type: list
    elements: str
    default: []
seealso:
  - module: model_compat
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Inspect the models Forge will load
  model_inspect:
    paths:
      - /home/azureuser/stable-diffusion-webui-forge/models
  register: models
"""

RETURN = r"""
files:
  description: One entry per file, in path order, unreadable paths included.
  type: list
  elements: dict
  returned: always
  sample:
    - path: /home/azureuser/stable-diffusion-webui-forge/models/VAE/ae.safetensors
      size: 335304388
      format: safetensors
      role: vae
      family: unknown
      integrity: ok
      details: {latent_channels: 16, fits: [sd3, flux_dev, flux_schnell]}
problems:
  description: Number of files whose integrity is not C(ok).
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.model_inspect import inspect_paths


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "required": True},
            "allowed_pickle_globals": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    files = inspect_paths(
        module.params["paths"], frozenset(module.params["allowed_pickle_globals"])
    )
    module.exit_json(
        changed=False, files=files, problems=sum(f["integrity"] != "ok" for f in files)
    )


if __name__ == "__main__":
    main()
