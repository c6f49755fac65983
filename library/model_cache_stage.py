"""Ansible module: put the model catalog's files into the fleet model cache (the stager)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_cache_stage
short_description: Upload verified model files into the fleet model cache, named by sha256
description:
  - Lists the cache container with AzCopy, then uploads each given file whose object
    C(<sha256>) is missing or has another size, and re-uploads the objects named in
    O(replace) (a reader found wrong bytes under that name). Every upload comes from this
    host's copy, whose sha256 is checked first; a copy that no longer matches is not
    uploaded and fails the task.
  - Files without a known sha256 are skipped (their object could not be found by name).
  - In check mode only the listing is read; the result says what would be uploaded.
  - The SAS is never in the result; AzCopy's job plans and logs are removed after each call.
options:
  sas_url:
    description: Container SAS URL with read, write and list (the stager's; secret).
    type: str
    required: true
  azcopy:
    description: The AzCopy binary.
    type: str
    default: azcopy
  files:
    description: Files to cache, each C(label), C(path), C(sha256), C(size).
    type: list
    elements: dict
    default: []
  replace:
    description: sha256 names of objects to upload again whatever their size.
    type: list
    elements: str
    default: []
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Put the catalog into the fleet model cache
  model_cache_stage:
    sas_url: "{{ models_cache_stager_sas_url }}"
    azcopy: /opt/azcopy/10.32.2/azcopy
    files: "{{ result.files }}"
  no_log: true
"""

RETURN = r"""
uploaded:
  description: Objects uploaded as missing or of the wrong size (sha256, label, size).
  type: list
  elements: dict
  returned: always
replaced:
  description: Objects uploaded again because a reader found wrong bytes in them.
  type: list
  elements: dict
  returned: always
cached:
  description: sha256 names already in the cache with the right size.
  type: list
  elements: str
  returned: always
skipped:
  description: One line per file that cannot be cached (no sha256 known in advance).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.model_cache import Cache, stage


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sas_url": {"type": "str", "required": True, "no_log": True},
            "azcopy": {"type": "str", "default": "azcopy"},
            "files": {"type": "list", "elements": "dict", "default": []},
            "replace": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        cache = Cache(module.params["sas_url"], module.params["azcopy"])
        result = stage(cache, module.params["files"], module.params["replace"], module.check_mode)
    except (ValueError, RuntimeError) as error:
        module.fail_json(msg=str(error))
    if result["errors"]:
        module.fail_json(
            msg=f"{len(result['errors'])} file(s) could not be put into the model cache: "
            + " | ".join(result["errors"]),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
