"""/proc's hidepid and gid mount options: read them from mountinfo, plan the remount and the
/etc/fstab line that keeps them across reboots.

With hidepid=invisible (2) a user sees only their own processes in /proc (ps, top,
/proc/<pid>/cmdline); members of the gid= group still see every process. AzCopy takes its SAS
only in the URL on its command line, so this is what keeps the SAS out of other users' view.
"""

from __future__ import annotations

import re

# hidepid names (Linux >= 5.8 prints them) and the numbers every kernel accepts.
HIDEPID_NUMBERS = {"off": 0, "noaccess": 1, "invisible": 2, "ptraceable": 4}
_HIDEPID_NAMES = {str(number): name for name, number in HIDEPID_NUMBERS.items()}

_FSTAB_PROC = re.compile(r"^\s*\S+\s+/proc\s+proc(\s|$)")


class ProcMountError(Exception):
    """mountinfo holds no /proc entry."""


def proc_options(mountinfo: str) -> dict:
    """hidepid (a name) and gid (int or None) of the /proc mount in a mountinfo text.

    A mountinfo line: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
    SUPER_OPTIONS; the last proc mount on /proc is the one processes see.
    """
    found = None
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, tail_fields = head.split(), tail.split()
        if sep and len(fields) >= 5 and fields[4] == "/proc" and tail_fields[:1] == ["proc"]:
            found = tail_fields[2] if len(tail_fields) > 2 else ""
    if found is None:
        raise ProcMountError("no proc file system is mounted on /proc")
    options = dict(
        option.partition("=")[::2]
        for option in found.split(",")
        if option.startswith(("hidepid=", "gid="))
    )
    hidepid = options.get("hidepid", "off")
    gid = options.get("gid")
    return {
        "hidepid": _HIDEPID_NAMES.get(hidepid, hidepid),
        "gid": int(gid) if gid not in (None, "") else None,
    }


def live_matches(live: dict, hidepid: str, gid: int | None) -> bool:
    """Whether the live options (``proc_options``) already are these: with hidepid off the
    gid does not matter (the kernel ignores it)."""
    return live["hidepid"] == hidepid and (hidepid == "off" or live["gid"] == gid)


def mount_options(hidepid: str, gid: int | None) -> str:
    """The option string for mount(8) and fstab, in the numeric form every kernel accepts."""
    options = f"hidepid={HIDEPID_NUMBERS[hidepid]}"
    return options if gid is None else f"{options},gid={gid}"


def fstab_with(fstab: str, hidepid: str, gid: int | None) -> str:
    """``fstab`` with its /proc line set for these options (removed when hidepid is off)."""
    options = mount_options(hidepid, gid)
    wanted = None if hidepid == "off" else f"proc /proc proc defaults,{options} 0 0"
    lines, placed = [], False
    for line in fstab.splitlines():
        if _FSTAB_PROC.match(line):
            if wanted is not None and not placed:
                lines.append(wanted)
                placed = True
            continue
        lines.append(line)
    if wanted is not None and not placed:
        lines.append(wanted)
    return "\n".join(lines) + "\n" if lines else ""


def as_declared(mountinfo: str, fstab: str, hidepid: str, gid: int | None) -> bool:
    """Whether the proc_hidepid module would change nothing: the /proc mount in
    ``mountinfo`` has these options and ``fstab`` already is what ``fstab_with`` makes of it.

    Read on the VM, judged anywhere (the base role asks on the controller, to skip the module
    run). Whatever it cannot judge (no /proc in ``mountinfo``, an unknown hidepid) is not as
    declared, so the module runs and names the problem.
    """
    if hidepid not in HIDEPID_NUMBERS:
        return False
    try:
        live = proc_options(mountinfo)
    except ProcMountError:
        return False
    return live_matches(live, hidepid, gid) and fstab_with(fstab, hidepid, gid) == fstab
