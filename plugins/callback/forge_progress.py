"""Stdout callback: Ansible's default output, with model download progress in place of retries.

Set as the stdout callback in ansible.cfg (``stdout_callback = forge_progress``). While the
models role waits for its background download, each poll of the waiting task (its result
carries ``progress_line``, from the model_download_progress module) prints
``forge-lab-1: models 3.2/17.0 GiB, 84.1 MiB/s, ETA 2m41s, 1/3 files`` instead of Ansible's
``FAILED - RETRYING: [forge-lab-1]: ... (2879 retries left).``: a download in progress is
not a failure, and an operator reads "FAILED". A result with ``progress_label``
(forge_prepare_progress: ``forge``) prints that word instead of ``models``. Every other task
prints as the default callback prints it (``callback_result_format = yaml`` and the other
default options apply).
"""

from __future__ import annotations

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = r"""
name: forge_progress
type: stdout
short_description: Default output, with model download progress lines instead of retry lines
description:
  - Ansible's default stdout callback, except for the retries of a task whose result carries
    C(progress_line) (the models role's wait for its downloads) - those print one progress
    line per host (bytes done, rate, ETA) instead of C(FAILED - RETRYING).
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout_callback in ansible.cfg
"""


def _result_data(result) -> dict:
    data = getattr(result, "result", None)  # ansible-core 2.19+: CallbackTaskResult.result
    if not isinstance(data, dict):
        data = getattr(result, "_result", None) or {}
    return data


def progress_line(result) -> str | None:
    """The progress line of a retried task's result, if it is a download or preparation wait."""
    line = _result_data(result).get("progress_line")
    return str(line) if line else None


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "forge_progress"

    def v2_runner_retry(self, result) -> None:
        # The default callback prints a task's banner with its first result, after the retries:
        # they would read as lines of the task before. Print it first.
        if self._last_task_banner != result._task._uuid:
            self._print_task_banner(result._task)
        line = progress_line(result)
        if line is None:
            super().v2_runner_retry(result)  # any other until/retries task: as Ansible prints it
            return
        host = getattr(result, "host", None) or result._host  # `host` since ansible-core 2.19
        label = _result_data(result).get("progress_label", "models")
        self._display.display(f"{host.get_name()}: {label} {line}")
