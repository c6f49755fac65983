#!/usr/bin/python
"""Ansible module: check the model catalog and route every file to its Forge folder."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_catalog
short_description: Check a model catalog before any byte moves
description:
  - Expands named bundles (C(flux1_dev_fp8), C(sd15), C(sdxl_base)), checks every entry's
    keys and values (unknown keys, missing keys, bad kinds, plain-HTTP URLs, file names that
    would leave the Forge folder), routes each file to its Forge folder by kind, and refuses
    two entries that would write the same file.
  - Values of entries' C(headers) are masked like C(no_log) options (in the result, its
    invocation and the log on the host that runs it); M(model_download) takes the catalog
    itself, so nothing downstream needs them.
  - Fails listing every problem at once. Pure computation; runs anywhere (the models role
    runs it once on the controller) and behaves the same in check mode.
options:
  catalog:
    description: Catalog entries (see the models role README for the keys per source).
    type: list
    elements: raw
    default: []
  bundles:
    description: Named bundles to add before the catalog entries.
    type: list
    elements: str
    default: []
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Check the model catalog
  model_catalog:
    catalog: "{{ models_catalog }}"
    bundles: "{{ models_bundles }}"
  register: catalog
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
entries:
  description: >-
    The normalized entries, bundles first: each entry's keys plus C(label) (how findings name
    it) and C(destination) (path relative to the Forge checkout, or null until the source
    is asked, as for a CivitAI file name). Header values are masked.
  type: list
  elements: dict
  returned: success
problems:
  description: Every problem found.
  type: list
  elements: str
  returned: failure
"""

from ansible.module_utils.forge_fleet.catalog import CatalogError, normalize_catalog
from ansible.module_utils.forge_fleet.catalog_module import CatalogModule


def main() -> None:
    module = CatalogModule(
        argument_spec={
            "catalog": {"type": "list", "elements": "raw", "default": []},
            "bundles": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        entries = normalize_catalog(module.params["catalog"], module.params["bundles"])
    except CatalogError as error:
        module.fail_json(
            msg=f"The model catalog has {len(error.problems)} problem(s): "
            + " | ".join(error.problems),
            problems=error.problems,
        )
    module.exit_json(changed=False, entries=entries)


if __name__ == "__main__":
    main()
