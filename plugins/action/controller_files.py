"""Action plugin controller_files: write a few small files on the controller, in-process.

The reports (preflight, fleet report) and the instructor's access file are files on the
controller. Written with ``template``/``copy`` delegated to localhost, each file costs a
forked worker, a local ``stat`` module run and a ``copy`` module run: about 0.45 s per file,
4-5 s of every no-op ``site.yml``. Here the task's worker writes them itself, like ``fetch``
writes its local copy: the folder made (with its mode), then each file replaced atomically
(a temporary file in the same folder, fsynced, renamed) only when its content or mode differ.

Check mode is honoured (nothing written, ``changed`` says what would be); a task that must
write in ``--check`` too sets ``check_mode: false``. With ``--diff`` the changed files' before
and after are returned, unless the task is ``no_log``. Documented in library/controller_files.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet import file_set as shared  # noqa: E402

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "files": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "content": {"type": "str", "required": True, "no_log": False},
        },
    },
    "mode": {"type": "raw", "default": "0644"},
    "dir_mode": {"type": "raw", "default": "0755"},
}


def _relative_name(name: str) -> str:
    parts = os.path.normpath(name).split(os.sep)
    if os.path.isabs(name) or not name or ".." in parts:
        raise AnsibleActionFail(
            f"files: {name!r} is not a file name inside path; name each file relative to path"
        )
    return name


class ActionModule(ActionBase):
    _requires_connection = False  # the files are the controller's: no connection to the host

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        folder = args["path"]
        check = bool(self._task.check_mode)
        show_diff = bool(self._task.diff) and not self._task.no_log
        try:
            mode = shared.parse_mode(args["mode"], "mode")
            dir_mode = shared.parse_mode(args["dir_mode"], "dir_mode")
            # every name checked before anything is written: bad input leaves nothing half-done
            entries = [shared.Entry(folder, state="directory", mode=dir_mode)] + [
                shared.Entry(
                    os.path.join(folder, _relative_name(item["name"])),
                    content=item["content"].encode("utf-8", "surrogateescape"),
                    mode=mode,
                )
                for item in args["files"]
            ]
            changes = shared.plan(entries)
            if not check:
                shared.apply(changes)
        except shared.FileSetError as error:
            raise AnsibleActionFail(str(error)) from error
        except OSError as error:
            where = error.filename or folder
            raise AnsibleActionFail(f"could not write {where}: {error.strerror}") from error

        written = [c.entry.path for c in changes if c.entry.state == "file"]
        result.update(changed=bool(changes), path=folder, written=written)
        if show_diff:
            diffs = [shared.diff(c) for c in changes if c.entry.state == "file"]
            if diffs:
                result["diff"] = diffs
        return result
