"""Documentation of the ``files`` option (module_utils/forge_fleet/file_set_module.py), shared
by the modules that take it: host_files (makes the set) and forge_webui (compares it)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  files:
    description:
      - Files and folders, each with its declared state, in the order they are made.
      - Everything is read and checked before anything is written or compared - owners and
        groups that exist, octal modes, a folder or other non-file where a file is declared,
        a file whose folder is neither there nor declared before it - and bad input fails
        naming the path.
    type: list
    elements: dict
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: C(file), C(directory) or C(absent) (a folder is removed with its content).
        type: str
        choices: [file, directory, absent]
        default: file
      content:
        description: The file's content (state C(file)); give this or O(files[].secret_content).
        type: str
      secret_content:
        description: The content of a file that holds a secret; never shown nor returned.
        type: str
      owner:
        description: Owner (name or uid). Omitted, a new path is the module user's and an
          existing one keeps its owner.
        type: str
      group:
        description: Group (name or gid), like O(files[].owner).
        type: str
      mode:
        description: Octal mode such as C('0600'). Omitted, a new file is 0644 and a new folder
          0755; an existing path keeps its mode.
        type: raw
"""
