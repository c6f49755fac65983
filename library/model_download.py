#!/usr/bin/python
"""Ansible module: download the model catalog into a Forge checkout, verified and resumable."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_download
short_description: Download models from Hugging Face, CivitAI and HTTPS, verified and resumable
description:
  - Takes the model catalog and bundles (checked as M(model_catalog) checks them; a bad
    catalog fails before anything is asked or written), resolves each entry (Hugging Face
    resolve metadata, CivitAI model-version API), and downloads what is missing into the Forge
    folders. Bytes go to C(<file>.partial), are hashed while they stream, and reach the final
    name only when size and sha256 match. Interrupted downloads resume with Range.
  - A manifest (C(models/.forge-fleet-manifest.json)) of size, mtime and sha256 lets re-runs
    skip verified files without asking upstream or reading them; a changed size or mtime
    triggers re-verification and repair. O(verify=true) re-hashes everything.
  - Fails before any byte moves when the downloads still to do do not fit on the disk.
  - One run at a time per O(forge_dir) (a lock file beside the manifest); a second run
    started while one is still going (an async job) fails at once, naming its process.
  - Tokens are sent only as C(Authorization) headers to their own host, never to the CDN or
    storage host a redirect points at, never in a URL, a message or the result.
  - In check mode only the metadata is asked for (HEAD on Hugging Face, the CivitAI API) and
    the free disk space is checked; the result says what would be downloaded or repaired and
    how many bytes, and nothing on disk changes. C(changed) is true when a file would be
    downloaded or repaired; a file whose size or mtime changed but whose size is still right
    is hashed (O(hash_changed)) and reported as C(repair) when its bytes are wrong.
  - Values of catalog C(headers) (e.g. a private mirror's Authorization) are masked like the
    token options - in the result, its invocation and the host's journal.
options:
  forge_dir:
    description: The Forge checkout; files go to its C(models/...) folders by kind.
    type: path
    required: true
    aliases: [dest]
  catalog:
    description:
      - Catalog entries, a list of mappings (see the models role README for the keys per
        source). Anything else (a mapping of entries, say) fails before anything is asked or
        written, with a message that shows what a catalog looks like.
    type: raw
    default: []
  bundles:
    description: Named bundles added before the catalog entries (C(flux1_dev_fp8), C(sd15),
      C(sdxl_base)).
    type: list
    elements: str
    default: []
  huggingface_token:
    description:
      - Hugging Face access token (gated repositories need one with access).
      - Sent only to O(huggingface_endpoint)'s host, never to the CDN it redirects to.
    type: str
  civitai_api_key:
    description:
      - CivitAI API key, sent only as an C(Authorization) header to O(civitai_endpoint)'s
        host, never in a URL, never to the storage host the download redirects to.
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
  hash_changed:
    description:
      - In check mode, hash the files whose size or mtime changed since they were recorded
        (the real run hashes them too), so a file replaced by another of the same size shows
        as a C(repair) and C(changed) rather than C(verify).
      - Turn it off for a plan that always runs in check mode ahead of a real download,
        which hashes them itself.
    type: bool
    default: true
  cache_sas_url:
    description:
      - Read-only container SAS URL of the fleet model cache (secret). Set, each file to
        download whose sha256 is known in advance is first copied with AzCopy from
        C(<container>/<sha256>) and verified (size and sha256) before it takes its final
        name; a missing object, an AzCopy failure or wrong bytes fall back to the origin for
        that file, and the result says so (C(source), C(cache), C(cache_bad)).
      - Unset (the default), the cache is off and nothing changes.
    type: str
  azcopy:
    description: The AzCopy binary used for O(cache_sas_url).
    type: str
    default: azcopy
  folders:
    description:
      - Folders to read as they are (exists, owner, group, mode) and compare with what is
        declared here, as M(host_files) compares a C(state=directory) entry. Read-only; the
        result says which differ (RV(folders_differ)), so a role runs its folder task only
        then. Read before the plan, so a missing folder (a fresh host) is reported, not an
        error.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The folder.
        type: path
        required: true
      owner:
        description: Declared owner (name or uid); unset, not compared.
        type: str
      group:
        description: Declared group (name or gid); unset, not compared.
        type: str
      mode:
        description: Declared mode, octal as in YAML (C("0755")); unset, not compared.
        type: raw
  compat:
    description:
      - In check mode, when every file is already in place (nothing to download or repair,
        nothing left to hash), also check that the catalog's files fit together, as
        M(model_compat) checks O(model_compat#module:files) with
        O(model_compat#module:forge_dir) and O(model_compat#module:manifest=true), and
        return its answer in RV(compat). A no-op re-run then needs no M(model_compat) run.
        Findings never fail this task; the caller runs M(model_compat) to fail with them.
    type: bool
    default: false
  allow_pickle:
    description: With O(compat), as M(model_compat)'s O(model_compat#module:allow_pickle).
    type: bool
    default: false
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Plan the downloads (what and how many bytes; changes nothing)
  model_download:
    forge_dir: /home/azureuser/stable-diffusion-webui-forge
    catalog: "{{ models_catalog }}"
    huggingface_token: "{{ models_huggingface_token }}"
  check_mode: true
  register: plan

- name: Download the models, watching /var/tmp/models-progress.json
  model_download:
    forge_dir: /home/azureuser/stable-diffusion-webui-forge
    catalog: "{{ models_catalog }}"
    huggingface_token: "{{ models_huggingface_token }}"
    civitai_api_key: "{{ models_civitai_api_key }}"
    connections_per_file: 8
    parallel_files: 2
    progress_file: /var/tmp/models-progress.json

- name: Re-hash every file, whatever the manifest says
  model_download:
    forge_dir: /home/azureuser/stable-diffusion-webui-forge
    catalog: "{{ models_catalog }}"
    verify: true
"""

RETURN = r"""
files:
  description: >-
    Per file - label, destination (relative to forge_dir), path, kind, base_model (CivitAI),
    size, sha256, action (present, verified, downloaded, repaired; in check mode download,
    repair, verify or present with bytes_to_fetch). Files a real run fetched also carry
    source (cache or origin), cache (hit, off, or why the cache could not give it),
    origin_bytes (bytes taken from the origin) and, for wrong bytes in the cache,
    cache_bad (sha256 expected and got).
  type: list
  elements: dict
  returned: always
  sample:
    - label: models_catalog[0] (black-forest-labs/FLUX.1-dev/ae.safetensors)
      destination: models/VAE/ae.safetensors
      path: /home/azureuser/stable-diffusion-webui-forge/models/VAE/ae.safetensors
      kind: vae
      size: 335304388
      sha256: afc8e28272cd15db3919bacdb6918ce9c1ed22e96cb12c4d5ed0fba823529e38
      action: downloaded
declared:
  description: >-
    What the catalog declares each file to be (path, kind, family), as M(model_compat) takes
    it in O(model_compat#module:files).
  type: list
  elements: dict
  returned: success
changes:
  description: In check mode, one line per file a real run would download or repair.
  type: list
  elements: str
  returned: check mode
  sample: ["repair models/Lora/detail.safetensors (144.0 MiB to fetch)"]
compat:
  description:
    - What M(model_compat) would return for the catalog's files and the tree around them -
      C(files), C(findings) (the catalog's files' only) and C(tree) (every file present, its
      findings and the manifest).
  type: dict
  returned: check mode with O(compat), when every file is in place
bytes_to_fetch:
  description: Bytes still to download (check mode and real runs alike).
  type: int
  returned: always
totals:
  description: >-
    Counts per action (downloaded, repaired, verified, present, and in check mode download,
    repair, verify), files, bytes_to_fetch, and bytes (size of all files in the result).
  type: dict
  returned: always
  sample: {files: 3, downloaded: 1, present: 2, bytes_to_fetch: 335304388, bytes: 12000000000}
folders:
  description: >-
    Per folder of O(folders) - path, exists, owner, group, mode (four octal digits) as it is
    now, and differs (what M(host_files) would change - created, mode, owner, group - or why
    it cannot; empty when the folder is as declared).
  type: list
  elements: dict
  returned: always
  sample:
    - path: /home/azureuser/stable-diffusion-webui-forge/models
      exists: true
      owner: azureuser
      group: azureuser
      mode: "0755"
      differs: []
folders_differ:
  description: The folders of O(folders) that are missing or differ from what is declared.
  type: list
  elements: str
  returned: always
errors:
  description: One message per file that could not be made right.
  type: list
  elements: str
  returned: on failure
"""

from ansible.module_utils.forge_fleet.catalog_module import CatalogModule
from ansible.module_utils.forge_fleet.download_task import run_task
from ansible.module_utils.forge_fleet.file_set_module import folders_option


def main() -> None:
    module = CatalogModule(
        argument_spec={
            "forge_dir": {"type": "path", "required": True, "aliases": ["dest"]},
            # raw: a catalog that is not a list is refused with what it must look like
            "catalog": {"type": "raw", "default": []},
            "bundles": {"type": "list", "elements": "str", "default": []},
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
            "hash_changed": {"type": "bool", "default": True},
            "cache_sas_url": {"type": "str", "no_log": True},
            "azcopy": {"type": "str", "default": "azcopy"},
            "folders": folders_option(),
            "compat": {"type": "bool", "default": False},
            "allow_pickle": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    failed, result = run_task(module.params, module.check_mode)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
