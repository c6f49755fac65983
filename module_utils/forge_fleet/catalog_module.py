"""The AnsibleModule for modules that take the model catalog as an option."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.catalog import header_values

# The options that take the model catalog: model_catalog and model_download call it
# ``catalog``, gpu_facts (the preflight's VRAM check) ``model_catalog``.
CATALOG_OPTIONS = ("catalog", "model_catalog")


class CatalogModule(AnsibleModule):
    """An AnsibleModule whose catalog option (``catalog`` or ``model_catalog``) may carry
    header values (a private mirror's ``Authorization``, say). They are masked like ``no_log``
    options from the moment the parameters are read: in the invocation logged to the journal,
    in argument errors, in the result and its ``invocation``. A ``no_log`` sub-option cannot
    do this for a free-form list, and masking after ``__init__`` would be too late for the
    journal."""

    def _load_params(self) -> None:
        super()._load_params()
        for option in CATALOG_OPTIONS:
            self.no_log_values.update(header_values(self.params.get(option)))
