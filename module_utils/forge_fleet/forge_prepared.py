"""What Forge's preparation depends on, read in one pass on the VM: the sha256 of the
checkout's files that feed it, the conda environment's package list (a probe run as the
Forge user) and the record of the last preparation."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
from typing import Any, Callable

from .hashing import sha256_file


class RecordUnreadable(ValueError):
    """The record of the last preparation exists but is not a JSON object."""


def file_sha256(path: str) -> str:
    """The sha256 of a regular file, "" when there is none at ``path``."""
    return sha256_file(path) if os.path.isfile(path) else ""


def files_sha256(folder: str, names: list[str]) -> dict[str, str]:
    """{name: sha256 or ""} for each name relative to ``folder``."""
    return {name: file_sha256(os.path.join(folder, name)) for name in names}


def _name(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def path_stat(path: str, kind: str = "file") -> dict[str, str]:
    """{owner, group, mode} of ``path`` when it is a ``kind`` ("file": a regular file, or
    "directory"; mode as four octal digits, "0644"), {} when it is not: enough to tell
    whether a path is as a role declares it without a module run of its own."""
    try:
        info = os.lstat(path)
    except OSError:
        return {}
    if not (stat.S_ISDIR if kind == "directory" else stat.S_ISREG)(info.st_mode):
        return {}
    return {
        "owner": _name(pwd.getpwuid, info.st_uid),
        "group": _name(grp.getgrgid, info.st_gid),
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
    }


def files_stat(folder: str, names: list[str]) -> dict[str, dict[str, str]]:
    """{name: path_stat} for each regular file named relative to ``folder``."""
    return {name: path_stat(os.path.join(folder, name)) for name in names}


def read_record(path: str) -> tuple[bool, dict[str, Any]]:
    """(found, record): (False, {}) when absent; RecordUnreadable when not a JSON object."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return False, {}
    try:
        record = json.loads(text)
    except ValueError as error:
        raise RecordUnreadable(f"{path} is not valid JSON ({error})") from error
    if not isinstance(record, dict):
        raise RecordUnreadable(f"{path} holds a {type(record).__name__}, not a JSON object")
    return True, record


def as_user(user: str) -> tuple[Callable[[], None] | None, dict[str, str], str]:
    """(preexec_fn, environment, home) to run a command as ``user``, the way become_user
    does: its uid, gid and groups, and its HOME, USER and LOGNAME. No preexec_fn when this
    process already is that user (nothing to drop)."""
    entry = pwd.getpwnam(user)
    env = dict(os.environ, HOME=entry.pw_dir, USER=user, LOGNAME=user)
    if os.geteuid() == entry.pw_uid:
        return None, env, entry.pw_dir

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.initgroups(user, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop, env, entry.pw_dir


def run_probe(python: str, code: str, user: str | None = None) -> tuple[int, str, str]:
    """(rc, stdout, stderr) of ``python -c code``, as ``user`` when given. stdout and stderr
    lose their trailing newlines, as the command module's do; a python that cannot be
    started, or a user that does not exist yet (--check on a fresh VM), is rc 127 with the
    reason in stderr: the env has no packages to compare."""
    try:
        preexec, env, cwd = (None, None, None) if user is None else as_user(user)
    except KeyError:
        return 127, "", f"no user {user} on this host"
    if cwd is not None and not os.path.isdir(cwd):
        cwd = "/"
    try:
        done = subprocess.run(
            [python, "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            cwd=cwd,
            preexec_fn=preexec,  # drops to the user before exec, nothing else
            check=False,
        )
    except OSError as error:
        return 127, "", str(error)
    out = done.stdout.decode("utf-8", "replace").rstrip("\r\n")
    err = done.stderr.decode("utf-8", "replace").rstrip("\r\n")
    return done.returncode, out, err
