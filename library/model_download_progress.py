#!/usr/bin/python
"""Ansible module: read the progress file model_download writes (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_download_progress
short_description: Read the progress of a model_download running in the background
description:
  - Reads the JSON progress file that M(model_download) rewrites every few seconds and returns
    bytes done, total, rate and ETA, and whether the download has finished.
  - Meant for an C(until) loop after an C(async) M(model_download); the C(forge_progress)
    callback prints one line per host on every retry.
options:
  path:
    description: The progress file.
    type: path
    required: true
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Wait for the downloads, showing progress
  model_download_progress:
    path: /var/tmp/forge-fleet-models-progress.json
  register: progress
  until: progress.finished
  retries: 1440
  delay: 15
"""

RETURN = r"""
finished:
  description: The download run has ended (successfully or not).
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

import json

from ansible.module_utils.basic import AnsibleModule


def human(progress: dict) -> str:
    done = progress.get("bytes_done") or 0
    total = progress.get("bytes_total") or 0
    rate = progress.get("rate_bytes_per_s") or 0
    eta = progress.get("eta_s")
    files = progress.get("files") or []
    finished_files = sum(1 for f in files if f.get("state") == "done")
    eta_text = f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s" if eta is not None else "ETA -"
    return (
        f"{done / 1024**3:.1f}/{total / 1024**3:.1f} GiB, {rate / 1024**2:.1f} MiB/s, "
        f"{eta_text}, {finished_files}/{len(files)} files"
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True
    )
    try:
        with open(module.params["path"]) as handle:
            progress = json.load(handle)
    except (OSError, ValueError):
        module.exit_json(changed=False, finished=False, progress={}, progress_line="starting")
    module.exit_json(
        changed=False,
        finished=bool(progress.get("finished")),
        progress=progress,
        progress_line=human(progress),
    )


if __name__ == "__main__":
    main()
