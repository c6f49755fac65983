"""The folders the downloads go into, read with the plan: are they as the role declares them?

The models role declares its folders (the Forge checkout and its models/) with an owner, a
group and a mode. The plan of model_download reads them in the same module run, so the
role's folder task (host_files) runs only when one is missing or differs: most re-runs
change nothing and need no module run of their own. Whether a folder is as declared is
decided by ``file_set.plan``, the comparison host_files itself makes (one implementation).
Standard library only.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Any

from .file_set import Entry, FileSetError, parse_mode, plan


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def folder_state(path: str) -> dict[str, Any]:
    """{path, exists, owner, group, mode} of a folder as it is now (mode as "0755");
    ``exists`` is false for a missing path and for one that is not a folder."""
    try:
        info = os.lstat(path)
    except OSError:
        return {"path": path, "exists": False}
    if not stat.S_ISDIR(info.st_mode):
        return {"path": path, "exists": False, "not_a_folder": True}
    return {
        "path": path,
        "exists": True,
        "owner": _name(pwd.getpwuid, info.st_uid),
        "group": _name(grp.getgrgid, info.st_gid),
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
    }


def check_folders(declared: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(states, differ): each declared folder's state with ``differs`` (what host_files would
    change: "created", "mode", "owner", "group"; or the reason it cannot), and the paths that
    differ. A folder that cannot be judged (an owner unknown on the host, a file in its
    place) differs: the folder task runs and fails with host_files' own message."""
    states, differ = [], []
    for folder in declared:
        path = os.path.normpath(folder["path"])
        state = folder_state(path)
        try:
            entry = Entry(
                path=path,
                state="directory",
                owner=folder.get("owner"),
                group=folder.get("group"),
                mode=parse_mode(folder.get("mode"), path),
            )
            changes = plan([entry])
            what = changes[0].what if changes else []
        except (FileSetError, OSError) as error:
            what = [str(error)]
        state["differs"] = what
        states.append(state)
        if what:
            differ.append(path)
    return states, differ
