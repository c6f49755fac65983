"""The ``files`` option of the modules that make a set of files (host_files) or compare one
(forge_webui's probe): its argument spec, the file_set entries it declares, the plan, and
the masking of each secret's content. One implementation, so a probe's answer and the
write's are the same comparison of the same entries."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.file_set import (
    Change,
    Entry,
    FileSetError,
    parse_mode,
    plan,
)

# One entry of ``files``; documented once, in plugins/doc_fragments/file_set.py.
ENTRY_SPEC = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "choices": ["file", "directory", "absent"], "default": "file"},
    "content": {"type": "str"},
    "secret_content": {"type": "str", "no_log": True},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "raw"},
}


def folders_option() -> dict:
    """The argument spec of a ``folders`` option: folders to compare, each entry as in
    ``files`` without state or content (model_download reads its folders with its plan)."""
    keys = ("path", "owner", "group", "mode")
    return {"type": "list", "elements": "dict", "default": [],
            "options": {key: ENTRY_SPEC[key] for key in keys}}  # fmt: skip


def files_option() -> dict:
    """The argument spec of a ``files`` option (unset is None: a module tells "not given")."""
    return {"type": "list", "elements": "dict", "options": ENTRY_SPEC}


def entry(item: dict) -> Entry:
    """One ``files`` item (as the argument spec parsed it) as a file_set entry."""
    if item["content"] is not None and item["secret_content"] is not None:
        raise FileSetError(f"{item['path']}: give content or secret_content, not both")
    text = item["secret_content"] if item["secret_content"] is not None else item["content"]
    return Entry(
        path=item["path"],
        state=item["state"],
        content=None if text is None else text.encode("utf-8", "surrogateescape"),
        secret=item["secret_content"] is not None,
        owner=item["owner"],
        group=item["group"],
        mode=parse_mode(item["mode"], item["path"]),
    )


def secret_forms(secret: str) -> set[str]:
    """The forms a secret takes in the invocation logged to the journal, where the files list
    is written as Python text: a newline there reads as the two characters \\n, so the value
    itself (with its real newline) would not match. Its lines and escaped form too."""
    forms = {secret, secret.strip(), secret.encode("unicode_escape").decode("ascii")}
    forms.update(line.strip() for line in secret.splitlines())
    return {form for form in forms if form}


class FilesModule(AnsibleModule):
    """An AnsibleModule with a ``files`` option that masks each secret_content in all its
    forms (``secret_forms``) from the moment the parameters are read: masking after
    ``__init__`` would be too late for the journal."""

    def _load_params(self) -> None:
        super()._load_params()
        for item in self.params.get("files") or []:
            secret = item.get("secret_content") if isinstance(item, dict) else None
            if secret:
                self.no_log_values.update(secret_forms(str(secret)))


def plan_files(module: AnsibleModule, items: list[dict]) -> list[Change]:
    """What making ``items`` would change (read-only); bad input or an unreadable path fails
    the module naming the path, before anything is written."""
    try:
        return plan([entry(item) for item in items])
    except FileSetError as error:
        module.fail_json(msg=str(error))
    except OSError as error:
        module.fail_json(msg=f"could not read {error.filename}: {error.strerror}")


def changes_by_path(changes: list[Change]) -> dict[str, list[str]]:
    """The ``changes`` a module returns: per path, what changed (or would)."""
    return {change.entry.path: change.what for change in changes}
