#!/usr/bin/python
"""Documentation of the model_catalog action (plugins/action/model_catalog.py).

The action runs entirely on the controller, in the task's own process, and never runs this
file: like ansible.builtin.debug's module file, it holds the documentation only.
"""

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
  - Fails listing every problem at once. Pure computation, run on the controller in the
    task's own process (no connection, no module run); behaves the same in check mode.
options:
  catalog:
    description:
      - Catalog entries, a list of mappings (see the models role README for the keys per
        source). Anything else (a mapping of entries, say) fails with a message that shows
        what a catalog looks like.
    type: raw
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
