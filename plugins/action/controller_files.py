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

import contextlib
import os
import stat
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

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

# Larger files are reported as changed in --diff without their text.
DIFF_MAX_BYTES = 64 * 1024


def _mode(value, name: str) -> int:
    """An octal mode as written in YAML: "0600", 0o600 (or 384), "600"."""
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise AnsibleActionFail(
            f"{name} must be an octal mode such as '0644', not {value!r}"
        ) from None


def _relative_name(name: str) -> str:
    parts = os.path.normpath(name).split(os.sep)
    if os.path.isabs(name) or not name or ".." in parts:
        raise AnsibleActionFail(
            f"files: {name!r} is not a file name inside path; name each file relative to path"
        )
    return name


def _current(target: str) -> tuple[bytes | None, int | None]:
    """The file's bytes and mode, or (None, None) when there is no file; a folder or other
    non-file in the way is an error, not something to replace."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return None, None
    if not stat.S_ISREG(info.st_mode):
        raise AnsibleActionFail(
            f"{target} exists and is not a regular file: move it away and re-run"
        )
    with open(target, "rb") as handle:
        return handle.read(), stat.S_IMODE(info.st_mode)


def _replace(target: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``target`` atomically: readers see the old file or the new one, and
    a secret never sits in a file with a looser mode, not even for a moment."""
    folder = os.path.dirname(target)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _make_folder(path: str, mode: int, check: bool) -> bool:
    """The folder (and missing parents) with ``mode``; True when it was or would be changed."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not check:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chmod(path, mode)  # makedirs' mode is filtered by the umask
        return True
    if not stat.S_ISDIR(info.st_mode):
        raise AnsibleActionFail(f"{path} exists and is not a folder: move it away and re-run")
    if stat.S_IMODE(info.st_mode) != mode:
        if not check:
            os.chmod(path, mode)
        return True
    return False


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # the files are the controller's: no connection to the host

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        folder = args["path"]
        mode = _mode(args["mode"], "mode")
        dir_mode = _mode(args["dir_mode"], "dir_mode")
        check = bool(self._task.check_mode)
        show_diff = bool(self._task.diff) and not self._task.no_log

        # every name checked before anything is written: bad input leaves nothing half-done
        targets = [
            (os.path.join(folder, _relative_name(item["name"])), item["content"])
            for item in args["files"]
        ]
        try:
            folder_changed = _make_folder(folder, dir_mode, check)
            written, diffs = [], []
            for target, content in targets:
                data = to_bytes(content, errors="surrogate_or_strict")
                before, before_mode = _current(target)
                if before == data and before_mode == mode:
                    continue
                if not check:
                    _replace(target, data, mode)
                written.append(target)
                if show_diff:
                    diffs.append(_diff(target, before, data))
        except OSError as error:
            where = error.filename or folder
            raise AnsibleActionFail(f"could not write {where}: {error.strerror}") from error

        result.update(changed=folder_changed or bool(written), path=folder, written=written)
        if diffs:
            result["diff"] = diffs
        return result


def _diff(target: str, before: bytes | None, after: bytes) -> dict:
    if max(len(before or b""), len(after)) > DIFF_MAX_BYTES:
        return {
            "before_header": target,
            "after_header": target,
            "prepared": f"{target}: changed (too large to show)\n",
        }
    return {
        "before_header": target if before is not None else "(absent)",
        "after_header": target,
        "before": to_text(before or b"", errors="surrogate_or_replace"),
        "after": to_text(after, errors="surrogate_or_replace"),
    }
