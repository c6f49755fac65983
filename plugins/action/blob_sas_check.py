"""Action plugin blob_sas_check: judge a container SAS URL on the controller, in-process.

The check is pure computation on the URL (its ``se=`` expiry and ``sp=`` permissions), so it
needs neither the host nor a module run: run here, it costs what a ``set_fact`` costs, where
the module run on each VM cost 0.45-0.6 s of every no-op ``site.yml``, and the SAS URL is
judged without being sent anywhere. The logic is ``module_utils/forge_fleet/blob_sas.py``,
the same code the sync script's settings come from. Documented in library/blob_sas_check.py.
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet.blob_sas import SasError, check  # noqa: E402

ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True, "no_log": True},
    "required_permissions": {"type": "str", "default": "rwl"},
    "warn_days": {"type": "int", "default": 14},
    "host": {"type": "str", "default": "this host"},
}


class ActionModule(ActionBase):
    _requires_connection = False  # the URL is judged here: no connection to the host

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = args["host"]
        try:
            verdict = check(args["url"], args["required_permissions"], args["warn_days"])
        except SasError as error:
            raise AnsibleActionFail(f"SAS URL for {host} is unusable: {error}") from error
        warnings = [f"SAS URL for {host}: {warning}" for warning in verdict.pop("warnings")]
        errors = verdict.pop("errors")
        result.update(changed=False, **verdict)
        if warnings:
            result["warnings"] = warnings
        if errors:
            result.update(failed=True, msg=f"SAS URL for {host} refused: " + "; ".join(errors))
        return result
