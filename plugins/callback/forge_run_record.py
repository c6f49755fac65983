"""Callback: record what this run did to each host, for the fleet report (roles/report).

Enabled in ansible.cfg (callbacks_enabled). Keeps, per host, the names of the tasks that
changed something (or would, in --check), the first task that failed with its message, and
why the host became unreachable, and writes them as JSON after each such event to
``$FORGE_RUN_RECORD``, so the report stage, which runs last in the same ansible-playbook
process, reads an up-to-date record. Unset, the file is ``run-record.json`` in a private
(0700) folder the callback makes under the system's temporary folder for this run alone, so
two runs never mix their records and nothing appears in the repository while a run goes
(a linter or ``git status`` walking the tree would otherwise see a file come and go). Its
path is exported as ``FORGE_RUN_RECORD`` to the run's tasks; file and folder are removed
when the run ends.

Why a callback: Ansible keeps per-host counts (the recap) in the executor, out of reach of
tasks; a callback sees every result as it happens. Messages of ``no_log`` tasks arrive
already censored by Ansible, and only the first 300 characters of a message are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: forge_run_record
type: aggregate
short_description: Record per host what this run changed and what failed, for the fleet report
description:
  - Writes a JSON record (run start time, per host the changed task names, the first failure
    and the unreachable message) that the report role reads at the end of the run.
  - The file is C($FORGE_RUN_RECORD), kept after the run; unset, it is C(run-record.json)
    in a private folder made under the system's temporary folder for this run, exported as
    C(FORGE_RUN_RECORD) to the run and removed, with its folder, at its end.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""

_MAX_MESSAGE = 300


def _message(result: dict[str, Any]) -> str:
    text = str(result.get("msg") or result.get("stderr") or result.get("reason") or "")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _record_path() -> tuple[str, str]:
    """The record's path, and the private folder made for it ('' when the path was given)."""
    explicit = os.environ.get("FORGE_RUN_RECORD")
    if explicit:
        return explicit, ""
    folder = tempfile.mkdtemp(prefix="forge-run-record-")
    return os.path.join(folder, "run-record.json"), folder


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "forge_run_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = ""
        self._own_folder = ""
        self._record: dict[str, Any] = {"started": "", "hosts": {}}

    def _host(self, name: str) -> dict[str, Any]:
        return self._record["hosts"].setdefault(
            name, {"changed": [], "failed": None, "unreachable": None}
        )

    def _write(self) -> None:
        if not self._path:
            return
        folder = os.path.dirname(self._path)
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".run-record-")
        with os.fdopen(handle, "w") as stream:
            json.dump(self._record, stream, indent=1, sort_keys=True)
        os.replace(temporary, self._path)

    def v2_playbook_on_start(self, playbook) -> None:
        self._path, self._own_folder = _record_path()
        os.environ["FORGE_RUN_RECORD"] = self._path  # workers fork from here: the report reads it
        self._record["started"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._write()

    def v2_runner_on_ok(self, result) -> None:
        if result._result.get("changed"):
            self._host(result._host.get_name())["changed"].append(result._task.get_name())
            self._write()

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if ignore_errors:
            return
        host = self._host(result._host.get_name())
        if host["failed"] is None:
            host["failed"] = {"task": result._task.get_name(), "msg": _message(result._result)}
            self._write()

    def v2_runner_on_unreachable(self, result) -> None:
        host = self._host(result._host.get_name())
        host["unreachable"] = {"task": result._task.get_name(), "msg": _message(result._result)}
        self._write()

    def v2_playbook_on_stats(self, stats) -> None:
        if self._own_folder:
            shutil.rmtree(self._own_folder, ignore_errors=True)
