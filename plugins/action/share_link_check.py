"""Action plugin share_link_check: ask every host's gradio share link from the controller.

A student reaches Forge through its share link, from the internet: so the link is asked from
where a student would ask it (here, the controller), not from the VM. One task for the whole
play (run_once), one thread per link: a class of 30 takes as long as its slowest link (a few
seconds at most, ``timeout`` per request). The logic is
``module_utils/forge_fleet/share_link.py``. Documented in library/share_link_check.py.
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.plugins.action import ActionBase

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet.share_link import LinkError, check_links  # noqa: E402

ARGUMENT_SPEC = {
    "links": {"type": "dict", "required": True},
    "via": {"type": "str", "default": ""},
    "timeout": {"type": "float", "default": 5.0},
    "retry_for": {"type": "float", "default": 0.0},
}


class ActionModule(ActionBase):
    _requires_connection = False  # asked from the controller, as a student would

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        links = {}
        for host, spec in args["links"].items():
            if not isinstance(spec, dict):
                result.update(failed=True, msg=f"links.{host} must be a dict with url and auth")
                return result
            links[str(host)] = spec
        try:
            checked = check_links(
                links, via=args["via"], timeout=args["timeout"], retry_for=args["retry_for"]
            )
        except LinkError as error:
            result.update(failed=True, msg=str(error))
            return result
        result.update(changed=False, links=checked)
        return result
