#!/usr/bin/python
"""Ansible module: a role's files and folders on the host, in one module run (thin adapter)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_files
short_description: Make a set of files and folders match, in one module run
description:
  - Brings every entry of O(files) to its declared state, in order - folders (created with
    missing parents, owner and mode set), files (content, owner, mode) and paths to remove.
  - One module run for a role's whole set, where a C(template), C(copy) or C(file) task per
    file costs two or three on every re-run. Render templates on the controller with
    C(lookup('ansible.builtin.template', ...)) and read role files with
    C(lookup('ansible.builtin.file', ..., rstrip=false)).
  - Everything is read and checked before anything is written (owners and groups that exist,
    octal modes, a folder or other non-file where a file is declared, a file whose folder is
    neither there nor declared before it), so bad input fails naming the path, and nothing is
    half-done.
  - A file whose content changes is replaced atomically (a temporary file in the same folder,
    created with the final owner and mode, fsynced, renamed). When only owner or mode differ
    they are set in place.
  - Supports check mode (nothing written; C(changes) says what would change) and diff mode.
    A secret's content (O(files[].secret_content)) is never shown in a diff nor returned.
  - The C(forge_webui) probe takes the same O(files) and returns what this module would
    change, so a role can skip this module run when nothing is off (one implementation,
    C(module_utils/forge_fleet/file_set_module.py)).
options:
  read:
    description:
      - Absolute paths of small files whose text to return in RV(read), read-only and before
        anything is written, so a role's read of state it does not declare (a crontab, a last
        result) is the same module run as its check. With the task keyword C(check_mode) set to
        true the module run is read-only and RV(changes) says whether the write is needed.
      - Refused, before anything is read or written, are a relative path, a path declared
        with O(files[].secret_content) (a secret's text is never returned), something other
        than a regular file, and a file over 256 KiB.
      - Give O(files), O(read) or both.
    type: list
    elements: path
extends_documentation_fragment:
  - file_set
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Write the webui's files
  host_files:
    files:
      - path: /home/azureuser/.config/forge-fleet
        state: directory
        owner: azureuser
        group: azureuser
        mode: "0700"
      - path: /home/azureuser/.config/forge-fleet/webui-auth
        secret_content: "student:{{ password }}\n"
        owner: azureuser
        group: azureuser
        mode: "0600"
      - path: /etc/systemd/system/forge-webui.service
        content: "{{ lookup('ansible.builtin.template', 'forge-webui.service.j2') }}"
        mode: "0644"
  register: webui_files
  notify: Restart the webui

- name: Read the sync files' state, the crontab and the last result (writes nothing)
  host_files:
    files: "{{ sync_files }}"
    read:
      - /var/spool/cron/crontabs/azureuser
      - /home/azureuser/.forge-sync/last-run.json
  check_mode: true
  register: sync_read
"""

RETURN = r"""
changes:
  description: What changed (or would, in check mode), per path; each a list of
    C(created), C(content), C(mode), C(owner), C(group), C(removed). Unchanged paths are left
    out.
  type: dict
  returned: always
  sample: {"/etc/systemd/system/forge-webui.service": ["content"]}
read:
  description: The text of each path of O(read) as found (UTF-8, undecodable bytes replaced),
    V(null) for a path that does not exist.
  type: dict
  returned: always
  sample: {"/home/azureuser/.forge-sync/last-run.json": null}
"""

from ansible.module_utils.forge_fleet.file_set import FileSetError, apply, diff, read_texts
from ansible.module_utils.forge_fleet.file_set_module import (
    FilesModule,
    changes_by_path,
    files_option,
    plan_files,
)


def main() -> None:
    module = FilesModule(
        argument_spec={
            "files": files_option(),
            "read": {"type": "list", "elements": "path"},
        },
        required_one_of=[("files", "read")],
        supports_check_mode=True,
    )
    files = module.params["files"] or []
    changes = plan_files(module, files)
    try:
        secrets = [item["path"] for item in files if item["secret_content"] is not None]
        texts = read_texts(module.params["read"] or [], secrets)  # before anything is written
    except FileSetError as error:
        module.fail_json(msg=str(error))
    except OSError as error:
        module.fail_json(msg=f"could not read {error.filename}: {error.strerror}")
    if not module.check_mode:
        try:
            apply(changes)
        except OSError as error:
            module.fail_json(msg=f"could not write {error.filename}: {error.strerror}")
    result = {
        "changed": bool(changes),
        "changes": changes_by_path(changes),
        "read": texts,
    }
    if module._diff and changes:
        result["diff"] = [diff(change) for change in changes]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
