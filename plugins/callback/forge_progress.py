"""Callback: print download progress while the models role waits (one line per host).

Enabled in ansible.cfg (callbacks_enabled = forge_progress). Each retry of a task whose
result carries ``progress_line`` (the model_download_progress module) prints
``forge-lab-1: models 3.2/17.0 GiB, 84.1 MiB/s, ETA 2m41s, 1/3 files``; a result with
``progress_label`` (forge_prepare_progress: ``forge``) prints that word instead of ``models``.
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: forge_progress
type: aggregate
short_description: Show model download progress per host while the play waits
description:
  - Prints the C(progress_line) of each retry of a waiting task, so an operator watching a
    long download sees bytes done, rate and ETA per host every poll interval.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "forge_progress"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_retry(self, result) -> None:
        line = result._result.get("progress_line")
        if line:
            label = result._result.get("progress_label", "models")
            self._display.display(f"{result._host.get_name()}: {label} {line}")
