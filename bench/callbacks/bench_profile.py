"""Callback for bench/bench_noop.py: per task, the wall time from its start to the next one's.

What ansible.posix's profile_tasks measures (ansible.posix is not installed here: the
benchmark keeps to what the tests need). Enabled only by the benchmark
(ANSIBLE_CALLBACKS_ENABLED), it writes ``[[role, task, seconds], ...]`` in run order as JSON
to ``$BENCH_PROFILE_FILE`` when the run ends.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_profile
type: aggregate
short_description: Per-task wall time as JSON, for bench/bench_noop.py
description:
  - Writes [[role, task, seconds], ...] to $BENCH_PROFILE_FILE at the end of the run.
requirements:
  - enabled by bench/bench_noop.py only
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._tasks: list[list] = []
        self._started = time.monotonic()
        self._current: list | None = None

    def _close(self) -> None:
        if self._current is not None:
            self._current[2] = round(time.monotonic() - self._started, 4)
            self._tasks.append(self._current)
            self._current = None

    def _start(self, role: str, name: str) -> None:
        self._close()
        self._started = time.monotonic()
        self._current = [role, name, 0.0]

    def v2_playbook_on_play_start(self, play) -> None:
        self._start("", f"PLAY {play.get_name().strip()}")

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        role = task._role.get_name() if task._role else ""
        self._start(role, task.get_name().strip())

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats) -> None:
        self._close()
        path = os.environ.get("BENCH_PROFILE_FILE")
        if path:
            with open(path, "w") as handle:
                json.dump(self._tasks, handle)
