#!/usr/bin/python
"""Ansible module: check an Azure Blob container SAS URL (expiry, permissions) silently."""

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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.blob_sas import SasError, check


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True, "no_log": True},
            "required_permissions": {"type": "str", "default": "rwl"},
            "warn_days": {"type": "int", "default": 14},
            "host": {"type": "str", "default": "this host"},
        },
        supports_check_mode=True,
    )
    host = module.params["host"]
    try:
        result = check(
            module.params["url"], module.params["required_permissions"], module.params["warn_days"]
        )
    except SasError as error:
        module.fail_json(msg=f"SAS URL for {host} is unusable: {error}")
    for warning in result.pop("warnings"):
        module.warn(f"SAS URL for {host}: {warning}")
    errors = result.pop("errors")
    if errors:
        module.fail_json(msg=f"SAS URL for {host} refused: " + "; ".join(errors), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
