"""Action plugin model_catalog: check the model catalog on the controller, in-process.

Checking the catalog (bundles expanded, every entry's keys and values, each file routed to
its Forge folder, collisions refused) is pure computation: run here, in the task's own
process, it costs what a ``set_fact`` costs, where a module run on localhost cost 0.5-0.7 s
of every ``site.yml``. The logic is ``module_utils/forge_fleet/catalog.py``, the same code
``model_download`` and ``gpu_facts`` run on the VMs. Header values (a private mirror's
credentials) are masked in the result and in any message, as the module masked them.
Documented in library/model_catalog.py.
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet.catalog import (  # noqa: E402
    CatalogError,
    header_values,
    normalize_catalog,
)

ARGUMENT_SPEC = {
    # raw, not list: a catalog written as a mapping is refused by normalize_catalog, which
    # says what a catalog must look like (Ansible's type error named no entry and no fix)
    "catalog": {"type": "raw", "default": []},
    "bundles": {"type": "list", "elements": "str", "default": []},
}


class ActionModule(ActionBase):
    _requires_connection = False  # the catalog is checked here: no connection to the host

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        secrets = header_values(args["catalog"])
        try:
            entries = normalize_catalog(args["catalog"], args["bundles"])
        except CatalogError as error:
            problems = remove_values(error.problems, secrets)
            msg = f"The model catalog has {len(problems)} problem(s): " + " | ".join(problems)
            result.update(failed=True, msg=msg, problems=problems)
            return result
        result.update(changed=False, entries=remove_values(entries, secrets))
        return result
