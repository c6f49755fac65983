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
  - Reads only safetensors and GGUF headers; never loads tensors and never unpickles. Pickle
    files (C(.ckpt), C(.pt), C(.pth), C(.bin); zip or legacy torch) are scanned opcode by
    opcode for dangerous imports.
  - Symlinked folders are followed; broken symlinks, symlink loops and unreadable folders
    become entries whose C(integrity) says so, and the rest is still inspected.
  - Read-only; behaves the same in check mode.
options:
  paths:
    description: Files or directories to inspect (directories recursively).
    type: list
    elements: path
    required: true
  declared:
    description:
      - What the catalog says the files are for, for example a CivitAI C(baseModel)
        (C(Flux.1 D)) or a family (C(flux_dev)). Decides between families the weights leave
        open and is noted in C(details.notes) when it contradicts them.
    type: str
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

- name: Inspect a LoRA CivitAI lists for Flux.1 Dev
  model_inspect:
    paths: [/home/azureuser/stable-diffusion-webui-forge/models/Lora/style.safetensors]
    declared: Flux.1 D
  register: lora
"""

RETURN = r"""
files:
  description:
    - One entry per file, in path order, unreadable paths included. Keys - C(path), C(size),
      C(format) (safetensors, pickle, gguf, unknown), C(role), C(family), C(integrity)
      (C(ok) or the reason), C(details) (C(fits), C(bundles), C(text_encoder),
      C(latent_channels), C(lora_format), C(context_dim), C(prediction), C(metadata),
      C(notes), C(pickle_globals), ...).
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
            "declared": {"type": "str"},
            "allowed_pickle_globals": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    files = inspect_paths(
        module.params["paths"],
        frozenset(module.params["allowed_pickle_globals"]),
        declared=module.params["declared"],
    )
    module.exit_json(
        changed=False, files=files, problems=sum(f["integrity"] != "ok" for f in files)
    )


if __name__ == "__main__":
    main()
