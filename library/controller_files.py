#!/usr/bin/python
"""Documentation of the controller_files action (plugins/action/controller_files.py).

The action runs entirely on the controller, in the task's own process, and never runs this
file: like ansible.builtin.debug's module file, it holds the documentation only.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: controller_files
short_description: Write small files (reports, the instructor's access file) on the controller
description:
  - Makes O(path) (and missing parents) with O(dir_mode), then writes each of O(files) into it
    with O(mode), only when its content or mode differ. Each file is replaced atomically
    (a temporary file in the same folder, created with O(mode), fsynced, renamed).
  - Runs in the task's own process on the controller, with no connection to the host and no
    module run. It costs what a C(set_fact) costs, where C(template) or C(copy) delegated to
    localhost costs two local module runs per file.
  - Check mode reports what would change and writes nothing; set C(check_mode=false) on a
    task that must write in C(--check) too (the reports).
  - With C(--diff), the changed files' text before and after, unless the task is C(no_log).
  - Fails, naming the path, when a folder or other non-file is where a file should be.
options:
  path:
    description: The folder the files go in.
    type: path
    required: true
  files:
    description: The files, each with its name and full content.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: File name relative to O(path), without C(..).
        type: str
        required: true
      content:
        description:
          - The whole content.
          - Render a template with the C(ansible.builtin.template) lookup.
        type: str
        required: true
  mode:
    description: Mode of every file written.
    type: raw
    default: "0644"
  dir_mode:
    description: Mode of O(path), applied when it is created and when it differs.
    type: raw
    default: "0755"
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Write the fleet report on the controller
  controller_files:
    path: "{{ report_dir }}"
    files:
      - name: fleet-report.html
        content: "{{ lookup('ansible.builtin.template', 'fleet-report.html.j2') }}"
"""

RETURN = r"""
path:
  description: The folder.
  type: str
  returned: always
written:
  description: The files written (or, in check mode, that would be).
  type: list
  elements: str
  returned: always
"""
