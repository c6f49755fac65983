#!/usr/bin/python
"""Ansible module: a git checkout pinned to one commit (thin adapter over git_checkout)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_checkout
short_description: Keep a git checkout at one commit, repairing drift without losing work
description:
  - Clones O(repo) into O(dest) at O(version) (a full commit, a tag or a branch, resolved and
    reported as a commit), detached. A folder that already holds files is kept: the clone is
    C(git init), C(fetch) and C(checkout), which never overwrites an untracked file.
  - On an existing checkout it repairs drift and says what it repaired - another commit
    checked out, tracked files deleted, C(origin) pointing elsewhere.
  - Tracked files changed by hand are listed by path and then kept with a warning
    (O(local_changes=keep)), refused before any change (C(fail)) or saved as a patch and
    discarded (C(discard)). Untracked files are never touched.
  - Check mode resolves the version with C(git ls-remote) and reports what would be cloned or
    repaired, changing nothing; on a host without git it reports the clone it would make.
options:
  repo:
    description: URL of the repository.
    type: str
    required: true
  dest:
    description: The checkout folder.
    type: path
    required: true
  version:
    description: A full 40-character commit, a tag or a branch.
    type: str
    required: true
  local_changes:
    description: What to do with tracked files changed by hand.
    type: str
    choices: [fail, keep, discard]
    default: keep
  ignore_paths:
    description:
      - Tracked paths another task manages (for example C(webui-user.sh)); never listed
        or restored.
    type: list
    elements: str
    default: []
  backup_dir:
    description: Where C(discard) saves the patch; default the folder above O(dest).
    type: path
    default: ""
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Check out Forge at the pinned commit
  git_checkout:
    repo: https://github.com/lllyasviel/stable-diffusion-webui-forge.git
    dest: /home/azureuser/stable-diffusion-webui-forge
    version: dfdcbab685e57677014f05a3309b48cc87383167
  become: true
  become_user: azureuser
"""

RETURN = r"""
commit:
  description: The commit the checkout is (or, in check mode, would be) at.
  type: str
  returned: success
before:
  description: The commit checked out before the run ("" when there was no checkout).
  type: str
  returned: success
action:
  description: clone, update or present.
  type: str
  returned: success
repaired:
  description: What was put right, one sentence each.
  type: list
  returned: success
local_changes:
  description: Tracked files changed by hand (paths relative to O(dest)).
  type: list
  returned: success
discarded_to:
  description: The patch holding discarded local changes ("" when none).
  type: str
  returned: success
kept:
  description: On a clone into an existing folder, the entries that were already there.
  type: list
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.git_checkout import CheckoutError, ensure_checkout


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "repo": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "version": {"type": "str", "required": True},
            "local_changes": {
                "type": "str",
                "choices": ["fail", "keep", "discard"],
                "default": "keep",
            },
            "ignore_paths": {"type": "list", "elements": "str", "default": []},
            "backup_dir": {"type": "path", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    git = module.get_bin_path("git")
    if not git:
        if module.check_mode:
            module.exit_json(
                changed=True,
                action="clone",
                commit=params["version"],
                before="",
                repaired=[],
                local_changes=[],
                discarded_to="",
                kept=[],
                msg="git is not installed yet (the base stage installs it); would clone "
                f"{params['repo']} at {params['version']}",
            )
        module.fail_json(msg="git is not installed; run the base stage first (it installs git)")

    def run(argv, cwd):
        return module.run_command(
            argv, cwd=cwd, environ_update={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        )

    try:
        result = ensure_checkout(
            run,
            git,
            params["repo"],
            params["dest"],
            params["version"],
            local_changes=params["local_changes"],
            ignore_paths=tuple(params["ignore_paths"]),
            backup_dir=params["backup_dir"],
            check_mode=module.check_mode,
        )
    except CheckoutError as error:
        module.fail_json(msg=str(error))
    if result.get("local_changes") and params["local_changes"] == "keep":
        module.warn(
            f"{params['dest']} has local changes to tracked files, kept as they are: "
            f"{', '.join(result['local_changes'])} (forge_local_changes: keep)"
        )
    if module._diff and result["changed"]:
        result["diff"] = {
            "before": f"{result['before'] or 'absent'}\n",
            "after": f"{result['commit']}\n",
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
