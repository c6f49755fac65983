"""A set of files and folders made to match what is declared, in one pass: plan, then apply.

A role's files (a systemd unit, a login file, a sync script, their folders) written with one
``template``/``copy``/``file`` task each cost two or three module runs per file on every
re-run, most of a no-op's time. Here the whole set is read and compared at once:

- ``plan`` reads every entry's current state and says what would change, per path
  ("created", "content", "mode", "owner", "group", "removed"). It checks everything first
  (owners that exist, modes, a folder where a file is declared, a missing parent), so bad
  input fails before anything is written: nothing half-done.
- ``apply`` makes the planned changes in the declared order. A file whose content changes
  is replaced atomically: a temporary file in the same folder, created with its final owner
  and mode (a secret never sits in a looser file, not even for a moment), fsynced, renamed.
  Only owner and mode differing: they are set in place, the content is left alone.
- ``read_texts`` returns the text of a few small files the set does not declare (a crontab,
  a last result), so a stage's read and its check are one module run; never a secret's.

Used by the host_files module (library/host_files.py, on the VMs) and the controller_files
action (plugins/action/controller_files.py, on the controller). Standard library only.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass, field

STATES = ("file", "directory", "absent")
DEFAULT_MODES = {"file": 0o644, "directory": 0o755}
# Larger files are reported as changed in a diff without their text.
DIFF_MAX_BYTES = 64 * 1024
# Larger files are refused by read_texts (its text comes back in the module's result).
READ_MAX_BYTES = 256 * 1024


class FileSetError(Exception):
    """Bad input or a state the set cannot fix by itself; the message says where and what to do."""


@dataclass
class Entry:
    path: str
    state: str = "file"
    content: bytes | None = None
    secret: bool = False  # content never shown (diff) nor returned
    owner: str | None = None  # None: the writer's own (new) or as it is (existing)
    group: str | None = None
    mode: int | None = None  # None: the state's default for a new path, as it is otherwise


@dataclass
class Change:
    entry: Entry
    what: list[str] = field(default_factory=list)
    before: bytes | None = None  # the old content when the content changes (for a diff)
    parents: list[str] = field(default_factory=list)  # folders to create first


def parse_mode(value, where: str) -> int | None:
    """An octal mode as written in YAML: "0600", "600", or an int (0o600 = 384)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise FileSetError(f"{where}: mode must be octal, such as '0644', not {value!r}") from None


def _uid(entry: Entry) -> int | None:
    return _id(entry.path, "owner", entry.owner, lambda name: pwd.getpwnam(name).pw_uid, "user")


def _gid(entry: Entry) -> int | None:
    return _id(entry.path, "group", entry.group, lambda name: grp.getgrnam(name).gr_gid, "group")


def _id(path: str, what: str, value: str | None, lookup, kind: str) -> int | None:
    """A numeric id from a name or number; None when not declared."""
    if value is None:
        return None
    try:
        return int(value) if str(value).isdigit() else lookup(value)
    except KeyError:
        raise FileSetError(
            f"{path}: {what} {value!r} does not exist on this host; create the {kind} first"
        ) from None


def _validate(entries: list[Entry]) -> None:
    seen = set()
    for entry in entries:
        where = entry.path
        if not os.path.isabs(entry.path):
            raise FileSetError(f"{where}: give an absolute path")
        if entry.path in seen:
            raise FileSetError(f"{where}: declared twice; declare each path once")
        seen.add(entry.path)
        if entry.state not in STATES:
            raise FileSetError(
                f"{where}: state must be one of {', '.join(STATES)}, not {entry.state!r}"
            )
        if entry.state == "file" and entry.content is None:
            raise FileSetError(f"{where}: a file needs its content")
        if entry.state != "file" and entry.content is not None:
            raise FileSetError(f"{where}: only a file has content (state is {entry.state})")


def _attributes(entry: Entry, info: os.stat_result, uid: int | None, gid: int | None) -> list[str]:
    what = []
    if entry.mode is not None and stat.S_IMODE(info.st_mode) != entry.mode:
        what.append("mode")
    if uid is not None and info.st_uid != uid:
        what.append("owner")
    if gid is not None and info.st_gid != gid:
        what.append("group")
    return what


def _missing_parents(path: str, will_exist: set[str]) -> list[str]:
    """The folders above ``path`` that neither exist nor are declared earlier, outermost first."""
    missing = []
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if parent in will_exist or os.path.isdir(parent):
            break
        if os.path.lexists(parent):
            raise FileSetError(f"{path}: " + _in_the_way(parent, "a folder"))
        missing.append(parent)
        parent = os.path.dirname(parent)
    return list(reversed(missing))


def plan(entries: list[Entry]) -> list[Change]:
    """What applying ``entries`` would change, read-only; raises FileSetError on bad input."""
    _validate(entries)
    changes = []
    will_exist: set[str] = set()  # folders declared earlier (not there yet in --check)
    for entry in entries:
        change = _plan_one(entry, will_exist)
        if entry.state == "directory":
            will_exist.update([*change.parents, entry.path])
        if change.what:
            changes.append(change)
    return changes


def _plan_one(entry: Entry, will_exist: set[str]) -> Change:
    uid, gid = _uid(entry), _gid(entry)
    change = Change(entry)
    try:
        info = os.lstat(entry.path)
    except FileNotFoundError:
        info = None
    if entry.state == "absent":
        if info is not None:
            change.what.append("removed")
    elif info is None:
        change.parents = _missing_parents(entry.path, will_exist)
        if change.parents and entry.state == "file":
            raise FileSetError(
                f"{entry.path}: its folder {change.parents[-1]} does not exist; declare the "
                "folder before the file"
            )
        change.what.append("created")
    elif entry.state == "directory":
        if not stat.S_ISDIR(info.st_mode):
            raise FileSetError(_in_the_way(entry.path, "a folder"))
        change.what += _attributes(entry, info, uid, gid)
    else:
        if not stat.S_ISREG(info.st_mode):
            raise FileSetError(_in_the_way(entry.path, "a regular file"))
        with open(entry.path, "rb") as handle:
            before = handle.read()
        if before != entry.content:
            change.what.append("content")
            change.before = before
        change.what += _attributes(entry, info, uid, gid)
    return change


def _in_the_way(path: str, kind: str) -> str:
    return f"{path} exists and is not {kind}: move it away and re-run"


def read_texts(paths: list[str], secret_paths: list[str]) -> dict[str, str | None]:
    """The text of each of ``paths`` as it is now (UTF-8, undecodable bytes replaced), None for
    a path that does not exist; read-only. A stage's read of small state it does not declare
    (a crontab, a last result), made in the same module run as its ``plan``.

    Refused with FileSetError, before anything is read: a relative path, a path that is (or
    resolves to) one of ``secret_paths`` (a secret's text is never returned), something other
    than a regular file, a file larger than READ_MAX_BYTES."""
    secrets = {os.path.realpath(path) for path in secret_paths}
    for path in paths:
        if not os.path.isabs(path):
            raise FileSetError(f"read: {path}: give an absolute path")
        if os.path.realpath(path) in secrets:
            raise FileSetError(
                f"read: {path} is declared with secret_content, and a secret's text is never "
                "returned; leave it out of read"
            )
    texts: dict[str, str | None] = {}
    for path in paths:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            texts[path] = None
            continue
        if not stat.S_ISREG(info.st_mode):
            raise FileSetError(f"read: {path} is not a regular file; read returns files' text")
        with open(path, "rb") as handle:
            data = handle.read(READ_MAX_BYTES + 1)
        if len(data) > READ_MAX_BYTES:
            raise FileSetError(
                f"read: {path} is larger than the {READ_MAX_BYTES} bytes read returns; read "
                "only small text files"
            )
        texts[path] = data.decode("utf-8", "replace")
    return texts


def apply(changes: list[Change]) -> None:
    """Make the planned changes, in order. Raises OSError (with its filename) on failure."""
    for change in changes:
        entry = change.entry
        uid, gid = _uid(entry), _gid(entry)
        if entry.state == "absent":
            if os.path.isdir(entry.path) and not os.path.islink(entry.path):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        elif entry.state == "directory":
            for folder in [*change.parents, entry.path]:
                if not os.path.isdir(folder):
                    os.mkdir(folder)
                    _set_attributes(folder, entry, uid, gid, DEFAULT_MODES["directory"])
            _set_attributes(entry.path, entry, uid, gid, None)
        elif "created" in change.what or "content" in change.what:
            _replace(entry, uid, gid)
        else:
            _set_attributes(entry.path, entry, uid, gid, None)


def _set_attributes(path: str, entry: Entry, uid, gid, default_mode: int | None) -> None:
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    mode = entry.mode if entry.mode is not None else default_mode
    if mode is not None:
        os.chmod(path, mode)


def _replace(entry: Entry, uid, gid) -> None:
    """The file replaced atomically: readers see the old content or the new, never a part."""
    folder = os.path.dirname(entry.path)
    try:
        old_mode = stat.S_IMODE(os.stat(entry.path).st_mode)
    except FileNotFoundError:
        old_mode = DEFAULT_MODES["file"]
    mode = entry.mode if entry.mode is not None else old_mode
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(entry.path)}.")
    try:
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(entry.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, entry.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def diff(change: Change) -> dict:
    """Ansible's diff for one change: the text before and after, or a line saying what changed
    (a secret's content, a large file, owner or mode only)."""
    entry = change.entry
    path = entry.path
    if "content" in change.what or ("created" in change.what and entry.state == "file"):
        if entry.secret:
            return {"prepared": f"{path}: {', '.join(change.what)} (secret: content not shown)\n"}
        if max(len(change.before or b""), len(entry.content)) > DIFF_MAX_BYTES:
            return {"prepared": f"{path}: {', '.join(change.what)} (too large to show)\n"}
        return {
            "before_header": path if change.before is not None else "(absent)",
            "after_header": path,
            "before": (change.before or b"").decode("utf-8", "replace"),
            "after": entry.content.decode("utf-8", "replace"),
        }
    words = []
    for what in change.what:
        if what == "mode" and entry.mode is not None:
            words.append(f"mode {entry.mode:04o}")
        elif what == "owner":
            words.append(f"owner {entry.owner}")
        elif what == "group":
            words.append(f"group {entry.group}")
        else:
            words.append(what)
    return {"prepared": f"{path}: {', '.join(words)}\n"}
