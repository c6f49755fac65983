#!/usr/bin/python
"""Documentation of the blob_sas_check action (plugins/action/blob_sas_check.py).

The action runs entirely on the controller, in the task's own process, and never runs this
file: like ansible.builtin.debug's module file, it holds the documentation only.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: blob_sas_check
short_description: Check a container SAS URL's expiry and permissions without printing it
description:
  - Parses the SAS URL's expiry (C(se=)) and permissions (C(sp=)). Fails when the SAS has
    expired, lacks a permission the sync needs, or is not a container SAS URL; warns when it
    expires within O(warn_days) days.
  - The URL is a C(no_log) option; nothing returned contains the signature.
  - Read-only; behaves the same in check mode.
  - Runs on the controller, in the task's own process, with no connection to the host and
    no module run (the URL never leaves the controller to be judged).
options:
  url:
    description: The container SAS URL (https://<account>.blob.core.windows.net/<container>?<token>).
    type: str
    required: true
  required_permissions:
    description: Permission letters the sync needs (r, w, l; d when remote deletes are on).
    type: str
    default: rwl
  warn_days:
    description: Warn when the SAS expires within this many days.
    type: int
    default: 14
  host:
    description: How messages name the host (pass C(inventory_hostname)).
    type: str
    default: this host
"""

EXAMPLES = r"""
- name: Check the SAS URL
  blob_sas_check:
    url: "{{ sync_sas_url }}"
    required_permissions: rwl
    warn_days: 14
"""

RETURN = r"""
base_url:
  description: The container URL without its token.
  type: str
  returned: success
expiry:
  description: When the SAS expires (UTC, ISO 8601).
  type: str
  returned: success
days_left:
  description: Days until the SAS expires.
  type: float
  returned: success
permissions:
  description: The permission letters the SAS grants (sp=).
  type: str
  returned: success
"""
