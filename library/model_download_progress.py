#!/usr/bin/python
"""Ansible module: watch the progress file model_download writes (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_download_progress
short_description: Watch a model_download running in the background, and notice when it died
description:
  - Reads the JSON progress file that M(model_download) rewrites every couple of seconds and
    returns bytes done, total, rate and ETA, and whether the download has finished.
  - Fails, naming the host, the files in hand and what to do, when the download will never
    finish - its async job's status file (O(job_id)) says the job ended, its process is gone,
    or the progress file was not updated for O(stale_after) seconds (the OOM killer,
    C(kill -9), a VM restart) - so the play does not wait for the job's whole time limit.
    The next run resumes from the C(.partial) files.
  - Meant for an C(until) loop after an C(async) M(model_download); the C(forge_progress)
    callback prints one line per host on every retry instead of Ansible's retry line.
options:
  path:
    description: The progress file.
    type: path
    required: true
  job_id:
    description: The C(ansible_job_id) of the async M(model_download) job.
    type: str
  async_dir:
    description: Where Ansible keeps async job status files for the user running the job.
    type: path
    default: ~/.ansible_async
  stale_after:
    description: Seconds without a progress update after which the download counts as dead.
    type: int
    default: 60
  host:
    description: The host's name in failure messages (the inventory name).
    type: str
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Wait for the downloads, showing progress
  model_download_progress:
    path: /var/tmp/forge-fleet-models-progress.json
    job_id: "{{ download_job.ansible_job_id }}"
    host: "{{ inventory_hostname }}"
  register: progress
  until: progress is failed or progress.finished
  retries: 2880
  delay: 15
"""

RETURN = r"""
finished:
  description: The download run has ended (successfully or not) and said so.
  type: bool
  returned: always
progress:
  description: bytes_done, bytes_total, rate_bytes_per_s, eta_s and per-file entries.
  type: dict
  returned: always
progress_line:
  description: One human line, e.g. C(3.2/17.0 GiB, 84.1 MiB/s, ETA 2m41s, 1/3 files).
  type: str
  returned: always
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.download_progress import watch


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "job_id": {"type": "str"},
            "async_dir": {"type": "path", "default": "~/.ansible_async"},
            "stale_after": {"type": "int", "default": 60},
            "host": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    job_file = os.path.join(p["async_dir"], p["job_id"]) if p["job_id"] else None
    seen = watch(p["path"], job_file, p["stale_after"], p["host"] or socket.gethostname())
    dead = seen.pop("dead")
    if dead:
        module.fail_json(msg=dead, **seen)
    module.exit_json(changed=False, **seen)


if __name__ == "__main__":
    main()
