#!/usr/bin/python
"""Ansible module: download the model catalog into a Forge checkout, verified and resumable."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_download
short_description: Download models from Hugging Face, CivitAI and HTTPS, verified and resumable
description:
  - Takes normalized catalog entries (from M(model_catalog)), resolves each one (Hugging Face
    resolve metadata, CivitAI model-version API), and downloads what is missing into the Forge
    folders. Bytes go to C(<file>.partial), are hashed while they stream, and reach the final
    name only when size and sha256 match. Interrupted downloads resume with Range.
  - A manifest (C(models/.forge-fleet-manifest.json)) of size, mtime and sha256 lets re-runs
    skip verified files without asking upstream or reading them; a changed size or mtime
    triggers re-verification and repair. O(verify=true) re-hashes everything.
  - Fails before any byte moves when the downloads still to do do not fit on the disk.
  - Tokens are sent only as C(Authorization) headers to their own host, never to the CDN or
    storage host a redirect points at, never in a URL, a message or the result.
  - In check mode only the metadata is asked for; the result says what would be downloaded
    and how many bytes.
options:
  forge_dir:
    description: The Forge checkout; files go to its C(models/...) folders by kind.
    type: path
    required: true
  entries:
    description: Normalized catalog entries (M(model_catalog) C(entries)).
    type: list
    elements: dict
    required: true
  huggingface_token:
    description: Hugging Face access token (gated repositories need one with access).
    type: str
  civitai_api_key:
    description: CivitAI API key.
    type: str
  huggingface_endpoint:
    description: Hugging Face base URL.
    type: str
    default: https://huggingface.co
  civitai_endpoint:
    description: CivitAI base URL.
    type: str
    default: https://civitai.com
  connections_per_file:
    description: Ranged connections for one large file (when the server honours Range).
    type: int
    default: 4
  parallel_files:
    description: Files downloaded at the same time.
    type: int
    default: 2
  verify:
    description: Re-hash every file already present, whatever the manifest says.
    type: bool
    default: false
  progress_file:
    description: JSON file rewritten every few seconds with bytes done, rate and ETA.
    type: path
  retries:
    description: Retries per request on dropped connections, 429 and 5xx.
    type: int
    default: 5
  ca_file:
    description: CA bundle to trust instead of the system store.
    type: path
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Download the models
  model_download:
    forge_dir: /home/azureuser/stable-diffusion-webui-forge
    entries: "{{ catalog.entries }}"
    huggingface_token: "{{ models_huggingface_token }}"
  no_log: false  # the token option is no_log in the module itself
"""

RETURN = r"""
files:
  description: >-
    Per file - label, destination (relative to forge_dir), path, kind, base_model (CivitAI),
    size, sha256, action (present, verified, downloaded, repaired; in check mode download,
    verify or present with bytes_to_fetch).
  type: list
  elements: dict
  returned: always
bytes_to_fetch:
  description: Bytes still to download (check mode and real runs alike).
  type: int
  returned: always
errors:
  description: One message per file that could not be made right.
  type: list
  elements: str
  returned: on failure
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.http_download import (
    DownloadError,
    Settings,
    check_declared_families,
    check_disk,
    execute,
    make_plan,
)

PLAN_KEYS = (
    "label",
    "destination",
    "kind",
    "action",
    "bytes_to_fetch",
    "sha256",
    "size",
    "base_model",
    "declared_family",
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "forge_dir": {"type": "path", "required": True},
            "entries": {"type": "list", "elements": "dict", "required": True},
            "huggingface_token": {"type": "str", "no_log": True},
            "civitai_api_key": {"type": "str", "no_log": True},
            "huggingface_endpoint": {"type": "str", "default": "https://huggingface.co"},
            "civitai_endpoint": {"type": "str", "default": "https://civitai.com"},
            "connections_per_file": {"type": "int", "default": 4},
            "parallel_files": {"type": "int", "default": 2},
            "verify": {"type": "bool", "default": False},
            "progress_file": {"type": "path"},
            "retries": {"type": "int", "default": 5},
            "ca_file": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    settings = Settings(
        hf_endpoint=p["huggingface_endpoint"],
        civitai_endpoint=p["civitai_endpoint"],
        hf_token=p["huggingface_token"],
        civitai_key=p["civitai_api_key"],
        connections=p["connections_per_file"],
        parallel_files=p["parallel_files"],
        verify=p["verify"],
        progress_file=p["progress_file"],
        retries=p["retries"],
        ca_file=p["ca_file"],
    )
    try:
        plan = make_plan(p["entries"], p["forge_dir"], settings)
        mismatches = check_declared_families(plan)
        if mismatches:
            module.fail_json(
                msg=f"{len(mismatches)} catalog mismatch(es), nothing downloaded: "
                + " | ".join(mismatches),
                errors=mismatches,
                files=[],
                bytes_to_fetch=0,
            )
        to_fetch = sum(item.get("bytes_to_fetch", 0) for item in plan)
        if module.check_mode:
            files = [{k: item.get(k) for k in PLAN_KEYS} for item in plan]
            module.exit_json(
                changed=any(item["action"] == "download" for item in plan),
                files=files,
                bytes_to_fetch=to_fetch,
            )
        check_disk(plan, p["forge_dir"])
        outcome = execute(plan, p["forge_dir"], settings)
    except DownloadError as error:
        module.fail_json(msg=str(error), files=[], bytes_to_fetch=0)
    if outcome["errors"]:
        module.fail_json(
            msg=f"{len(outcome['errors'])} model download(s) failed: "
            + " | ".join(outcome["errors"]),
            errors=outcome["errors"],
            files=outcome["files"],
            bytes_to_fetch=to_fetch,
            changed=outcome["changed"],
        )
    module.exit_json(changed=outcome["changed"], files=outcome["files"], bytes_to_fetch=to_fetch)


if __name__ == "__main__":
    main()
