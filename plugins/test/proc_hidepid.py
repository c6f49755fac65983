"""Test plugin proc_hidepid_as_declared: would the proc_hidepid module change nothing?

    when: mountinfo is not proc_hidepid_as_declared(fstab, hidepid, gid)

``mountinfo`` holds the /proc line(s) of the VM's /proc/self/mountinfo and ``fstab`` the
content of its /etc/fstab, both as the base role's probe read them. The judgement is
``module_utils/forge_fleet/proc_mount.py``'s ``as_declared``: the very comparison the module
makes (``proc_options``, ``live_matches``, ``fstab_with``), so a skipped module run is one
that would have changed nothing. Judged here, in-process, it costs what a skipped task costs
instead of a module run on the VM (about 0.5 s of a no-op).
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet.proc_mount import as_declared  # noqa: E402


def proc_hidepid_as_declared(
    mountinfo: str, fstab: str, hidepid: str, gid: int | str | None = None
) -> bool:
    """Whether /proc is mounted with ``hidepid`` and ``gid`` and ``fstab`` keeps them (with
    ``hidepid`` "off": mounted without hidepid and no /proc line in ``fstab``)."""
    return as_declared(
        str(mountinfo),
        str(fstab),
        str(hidepid),
        None if gid is None or gid == "" else int(gid),
    )


class TestModule:
    def tests(self) -> dict:
        return {"proc_hidepid_as_declared": proc_hidepid_as_declared}
