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

After the recap, the hosts that failed or could not be reached are listed once more, one line
each with the task that stopped them and its message, so that in a class of 30 VMs the operator
does not have to scroll back for them::

    Failed hosts (1 of 30): fix these, then re-run with --limit forge-lab-7
      forge-lab-7: failed at "preflight : Check that the host can run Forge": GPU check ...
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
  - After the recap, one line per failed or unreachable host with the task that stopped it
    and its message.
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


_MAX_MESSAGE = 300


def _host_name(result) -> str:
    host = getattr(result, "host", None) or result._host  # `host` since ansible-core 2.19
    return host.get_name()


def failure_message(data: dict) -> str:
    """A failed result's message on one line (no_log results arrive censored by Ansible)."""
    text = str(data.get("msg") or data.get("stderr") or data.get("reason") or "no message")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def failed_hosts_lines(failures: dict[str, tuple[str, str, str]], summaries: dict) -> list[str]:
    """The closing list: hosts the recap counts as failed or unreachable, each with the task
    and message that stopped it (``failures``: host -> (kind, task, message), the last one
    seen; ``summaries``: host -> the recap's counts). Empty when every host is fine."""
    bad = sorted(h for h, t in summaries.items() if t.get("failures") or t.get("unreachable"))
    if not bad:
        return []
    lines = [
        f"Failed hosts ({len(bad)} of {len(summaries)}): fix these, then re-run with "
        f"--limit {','.join(bad)}"
    ]
    for host in bad:
        kind, task, message = failures.get(host, ("failed", "unknown task", "no message"))
        lines.append(f'  {host}: {kind} at "{task}": {message}')
    return lines


def progress_line(result) -> str | None:
    """The progress line of a retried task's result, if it is a download or preparation wait."""
    line = _result_data(result).get("progress_line")
    return str(line) if line else None


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "forge_progress"

    def __init__(self) -> None:
        super().__init__()
        self._failures: dict[str, tuple[str, str, str]] = {}

    def _note(self, result, kind: str) -> None:
        task = result._task.get_name().strip()
        self._failures[_host_name(result)] = (kind, task, failure_message(_result_data(result)))

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        super().v2_runner_on_failed(result, ignore_errors)
        if not ignore_errors:
            self._note(result, "failed")

    def v2_runner_on_unreachable(self, result) -> None:
        super().v2_runner_on_unreachable(result)
        self._note(result, "unreachable")

    def v2_playbook_on_stats(self, stats) -> None:
        super().v2_playbook_on_stats(stats)
        summaries = {host: stats.summarize(host) for host in stats.processed}
        for line in failed_hosts_lines(self._failures, summaries):
            self._display.display(line, stderr=False)

    def v2_runner_retry(self, result) -> None:
        # The default callback prints a task's banner with its first result, after the retries:
        # they would read as lines of the task before. Print it first.
        if self._last_task_banner != result._task._uuid:
            self._print_task_banner(result._task)
        line = progress_line(result)
        if line is None:
            super().v2_runner_retry(result)  # any other until/retries task: as Ansible prints it
            return
        label = _result_data(result).get("progress_label", "models")
        self._display.display(f"{_host_name(result)}: {label} {line}")
