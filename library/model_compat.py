#!/usr/bin/python
"""Ansible module: assert that a set of model files fits together (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_compat
short_description: Fail with every reason a set of model files does not fit together
description:
  - Checks a Forge models tree (O(forge_dir)), a list of files with what a catalog declares
    them to be (O(files)), or both in one run (the list decides; the tree is returned in
    RV(tree)). Fails listing every finding at once; each names the file, the evidence
    (tensor key, shape or metadata) and what to do.
  - Rules - every LoRA, embedding and ControlNet fits the family of a model present (SD1 vs
    SD2 vs SDXL by context width, Flux Dev vs Schnell by weights or metadata); every VAE fits
    a model present (latent channels); a Flux or SD3 diffusion-model-only file has its VAE and
    text encoders; declared kinds and families agree with the weights; integrity problems
    and pickle files fail the set.
  - Read-only; behaves the same in check mode.
options:
  forge_dir:
    description:
      - A Forge checkout (or its C(models/) folder). Files are declared to be what their
        folder holds (C(models/Lora) holds LoRAs, ...).
      - With O(files) too, the catalog's files alone decide whether the task fails (checked
        as without O(forge_dir)); every file of the tree is checked as well, as O(forge_dir)
        alone checks it, and returned in RV(tree) without failing the task. Each file is
        read once, so one run serves both a role that must fail for its catalog's problems
        only and a report of everything present.
    type: path
  files:
    description: Files to check together, each with what the catalog declares it to be.
    type: list
    elements: dict
    suboptions:
      path:
        description: File on the target.
        type: path
        required: true
      kind:
        description: Declared kind (checkpoint, diffusion_model, vae, text_encoder, lora, ...).
        type: str
      family:
        description:
          - Declared family - a family name (sd1, sdxl, flux_dev, ...), a CivitAI
            C(baseModel) (C(SDXL 1.0), C(Pony), C(Flux.1 D)) or a ModelSpec architecture.
            Unrecognised values are not compared.
        type: str
  allow_pickle:
    description: Accept pickle checkpoints whose opcode scan is clean (default refuses them).
    type: bool
    default: false
  manifest:
    description:
      - With O(forge_dir), also return the models manifest that M(model_download) keeps
        (C(models/.forge-fleet-manifest.json) - where each file came from), so the fleet
        report reads both in one run.
    type: bool
    default: false
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Check that the models fit together before the webui starts
  model_compat:
    forge_dir: /home/azureuser/stable-diffusion-webui-forge

- name: Check the catalog's files (they decide) and report every file present
  model_compat:
    files: "{{ plan.declared }}"
    forge_dir: /home/azureuser/stable-diffusion-webui-forge
    manifest: true
  register: compat  # compat.tree: every file present, its findings, the manifest

- name: Check what landed against what the catalog declares
  model_compat:
    files:
      - path: "{{ forge_dir }}/models/Stable-diffusion/flux1-dev.safetensors"
        kind: checkpoint
      - path: "{{ forge_dir }}/models/Lora/style.safetensors"
        kind: lora
        family: Flux.1 D
"""

RETURN = r"""
findings:
  description:
    - Every finding; empty when compatible. Each has C(code) (integrity, pickle,
      no_matching_model, missing_parts, kind_mismatch, family_mismatch, metadata_mismatch),
      C(paths), C(message), C(evidence) (tensor key, shape or metadata) and C(action).
  type: list
  elements: dict
  returned: always
files:
  description: The inspection of every file checked (see M(model_inspect)).
  type: list
  elements: dict
  returned: always
manifest:
  description: The models manifest, by path relative to O(forge_dir); {} when it is absent.
  type: dict
  returned: when O(manifest) is true (inside RV(tree) when O(files) is given too)
tree:
  description:
    - With both O(forge_dir) and O(files) - every file of the tree as O(forge_dir) alone
      checks it - C(forge_dir), C(files), C(findings) (never failing the task) and, with
      O(manifest), C(manifest); C(msg) instead of C(files) and C(findings) when O(forge_dir)
      is not a models tree.
  type: dict
  returned: when both O(forge_dir) and O(files) are given
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.download_plan import load_manifest
from ansible.module_utils.forge_fleet.model_compat import (
    NotAModelsTree,
    check_catalog_and_tree,
    check_files,
    check_tree,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "forge_dir": {"type": "path"},
            "files": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "path": {"type": "path", "required": True},
                    "kind": {"type": "str"},
                    "family": {"type": "str"},
                },
            },
            "allow_pickle": {"type": "bool", "default": False},
            "manifest": {"type": "bool", "default": False},
        },
        required_one_of=[("forge_dir", "files")],
        supports_check_mode=True,
    )
    forge_dir, wanted = module.params["forge_dir"], module.params["files"]
    allow_pickle = module.params["allow_pickle"]
    extra = {}
    manifest = load_manifest(forge_dir) if module.params["manifest"] and forge_dir else None
    if forge_dir and wanted is not None:
        # the catalog's files decide; the tree around them is returned, read in the same pass
        checked = check_catalog_and_tree(wanted, forge_dir, allow_pickle, manifest)
        files, findings, extra["tree"] = checked["files"], checked["findings"], checked["tree"]
    elif forge_dir:
        if manifest is not None:
            extra["manifest"] = manifest
        try:
            files, findings = check_tree(forge_dir, allow_pickle)
        except NotAModelsTree as error:
            module.fail_json(msg=str(error), findings=[], files=[], **extra)
    else:
        files, findings = check_files(wanted, allow_pickle)
    if findings:
        lines = [f"{f['message']} [{f['evidence']}] -> {f['action']}" for f in findings]
        module.fail_json(
            msg=f"{len(findings)} model problem(s): " + " | ".join(lines),
            findings=findings,
            files=files,
            **extra,
        )
    module.exit_json(changed=False, findings=[], files=files, **extra)


if __name__ == "__main__":
    main()
