"""Run a playbook through ansible-runner and expose per-task results and per-host stats.

result = run_playbook("site.yml", lab.inventory)
assert result.ok
assert result.stats["forge-test-1"]["changed"] == 0
assert result.task("Install the packages Forge needs", "forge-test-1").changed

A module task on this machine, as a play on localhost at -vvv (module unit tests):

output, outcome = run_task(tmp_path, {"model_catalog": {...}})
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

from lab.paths import REPO_ROOT

_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass(frozen=True)
class TaskResult:
    host: str
    task: str
    action: str
    status: str  # ok | failed | skipped | unreachable
    res: dict[str, Any]
    ignore_errors: bool = False
    duration: float = 0.0  # seconds this task took on this host (ansible-runner's timing)

    @property
    def changed(self) -> bool:
        return bool(self.res.get("changed"))

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")

    @property
    def msg(self) -> str:
        return str(self.res.get("msg", ""))


@dataclass
class PlaybookResult:
    rc: int
    status: str
    stdout: str
    tasks: list[TaskResult] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    duration_s: float = 0.0  # wall time of the whole ansible-playbook run

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def for_host(self, host: str) -> list[TaskResult]:
        return [t for t in self.tasks if t.host == host]

    def task(self, name: str, host: str) -> TaskResult:
        """The result of the task whose name ends with ``name`` (role prefix optional)."""
        matches = [
            t for t in self.for_host(host) if t.task == name or t.task.endswith(f" : {name}")
        ]
        if not matches:
            names = sorted({t.task for t in self.for_host(host)})
            raise KeyError(f"no task {name!r} ran on {host}; tasks were: {names}")
        return matches[-1]

    def changed_tasks(self, host: str) -> list[str]:
        return [t.task for t in self.for_host(host) if t.changed]

    def failures(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.failed and not t.ignore_errors]

    def explain(self) -> str:
        """A short failure report for assertion messages."""
        lines = [f"rc={self.rc} status={self.status}"]
        lines += [f"{t.host}: {t.task}: {t.msg or t.res}" for t in self.failures()]
        return "\n".join(lines) + "\n--- output tail ---\n" + self.stdout[-4000:]

    def slowest(self, count: int = 10) -> list[tuple[str, float]]:
        """The tasks that took longest, summed over hosts (where a run spends its time)."""
        spent: dict[str, float] = {}
        for t in self.tasks:
            spent[t.task] = spent.get(t.task, 0.0) + t.duration
        return sorted(spent.items(), key=lambda item: -item[1])[:count]


def run_playbook(
    playbook: str | Path,
    inventory: Path | str | dict[str, Any],
    *,
    extravars: dict[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    tags: str | None = None,
    limit: str | None = None,
    verbosity: int = 0,
    envvars: dict[str, str] | None = None,
) -> PlaybookResult:
    """Run ``playbook`` (relative to the repository root, or absolute) as an operator would;
    ``inventory`` is a file or an inventory as a dict (``LOCALHOST``)."""
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    with tempfile.TemporaryDirectory(prefix="forge-runner-") as private_data_dir:
        started = time.monotonic()
        runner = ansible_runner.run(
            private_data_dir=private_data_dir,
            project_dir=str(REPO_ROOT),
            playbook=str(REPO_ROOT / playbook),
            inventory=inventory if isinstance(inventory, dict) else str(inventory),
            extravars=extravars or {},
            tags=tags,
            limit=limit,
            verbosity=verbosity,
            cmdline=" ".join(cmdline) or None,
            envvars={
                "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
                # ansible-runner puts its own callback folder in this variable; keep ours too
                "ANSIBLE_CALLBACK_PLUGINS": str(REPO_ROOT / "plugins" / "callback"),
                # ansible-runner's own stdout callback builds on the one named here (not on
                # ansible.cfg's), so the output is what an operator sees
                "ANSIBLE_STDOUT_CALLBACK": "forge_progress",
                "ANSIBLE_FORCE_COLOR": "false",
                "ANSIBLE_NOCOLOR": "true",
                "PATH": os.environ["PATH"],
                **(envvars or {}),
            },
            quiet=True,
            suppress_env_files=True,
        )
        duration_s = time.monotonic() - started
        tasks = []
        for event in runner.events:
            status = _RESULT_EVENTS.get(event.get("event", ""))
            if status is None:
                continue
            data = event["event_data"]
            res = data.get("res") or {}
            if "censored" in res and "changed" not in res:
                # ansible-runner hides a no_log result whole, "changed" too; the status line
                # the stdout callback printed for it still says whether it changed
                changed = re.search(r"^changed: \[", event.get("stdout") or "", re.M)
                res = {**res, "changed": bool(changed)}
            tasks.append(
                TaskResult(
                    host=data.get("host", ""),
                    task=data.get("task", ""),
                    action=data.get("task_action", ""),
                    status=status,
                    res=res,
                    ignore_errors=bool(data.get("ignore_errors")),
                    duration=float(data.get("duration") or 0.0),
                )
            )
        stats = _host_stats(runner.stats or {})
        stdout = runner.stdout.read()
    return PlaybookResult(
        rc=runner.rc,
        status=runner.status,
        stdout=stdout,
        tasks=tasks,
        stats=stats,
        duration_s=duration_s,
    )


def _host_stats(raw: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Turn ansible's {counter: {host: n}} into {host: {counter: n}} with every counter."""
    counters = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
    hosts = {h for counter in counters for h in raw.get(counter, {})}
    return {h: {c: raw.get(c, {}).get(h, 0) for c in counters} for h in hosts}


# This machine as the only host, run with the test's own Python (modules import its packages).
LOCALHOST: dict[str, Any] = {
    "all": {
        "hosts": {
            "localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
            }
        }
    }
}


def run_local_playbook(workdir: Path, plays: list[dict[str, Any]]) -> PlaybookResult:
    """``plays`` written to ``workdir/play.yml`` and run on localhost at -vvv (the level where
    a leaked secret would show), through the same ``run_playbook``."""
    path = Path(workdir) / "play.yml"
    path.write_text(yaml.safe_dump(plays))
    return run_playbook(path, LOCALHOST, verbosity=3)


def run_task(
    workdir: Path, task: dict[str, Any], play_vars: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """One module task (ignore_errors) on localhost at -vvv: the whole output and its result."""
    task = {**task, "register": "outcome", "ignore_errors": True}
    save = {
        "name": "Save the result",
        "ansible.builtin.copy": {
            "content": "{{ outcome | to_json }}",
            "dest": str(Path(workdir) / "result.json"),
            "mode": "0600",
        },
    }
    play = {"hosts": "localhost", "gather_facts": False, "vars": play_vars or {}}
    done = run_local_playbook(workdir, [{**play, "tasks": [task, save]}])
    assert done.ok, done.explain()
    return done.stdout, json.loads((Path(workdir) / "result.json").read_text())
