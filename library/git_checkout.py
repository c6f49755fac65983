#!/usr/bin/python
"""Ansible module: git checkouts pinned to one commit each (thin adapter over git_checkout)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_checkout
short_description: Keep git checkouts at one commit each, repairing drift without losing work
description:
  - Keeps each of O(checkouts) in one run, in their order (a repository first, then those
    checked out inside it, for example Forge and then its extensions).
  - Clones O(checkouts[].repo) into O(checkouts[].dest) at O(checkouts[].version) (a full
    commit, a tag or a branch, resolved and reported as a commit), detached. A folder that
    already holds files is kept, and the clone is C(git init), C(fetch) and C(checkout), which
    never overwrites an untracked file.
  - On an existing checkout it repairs drift and says what it repaired - another commit
    checked out, tracked files deleted, C(origin) pointing elsewhere.
  - Tracked files changed by hand are listed by path and then kept with a warning
    (O(local_changes=keep)), refused before any change in any of the checkouts (C(fail)) or
    saved as a patch and discarded (C(discard)). Untracked files are never touched.
  - An error stops at that checkout and names its repository; the checkouts before it are in
    the result (RV(checkouts)).
  - Check mode resolves each version with C(git ls-remote) and reports what would be cloned or
    repaired, changing nothing; on a host without git it reports the clones it would make.
options:
  checkouts:
    description: The checkouts, in the order they are made.
    type: list
    elements: dict
    required: true
    suboptions:
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
      reclaim:
        description:
          - Tracked paths that an earlier version of this project wrote over, each with a
            marker its content held (for example C(webui-user.sh)). A modified path whose
            content holds its marker is put back as the repository has it, whatever
            O(local_changes) says; without the marker it is a local change like any other.
        type: dict
        default: {}
      branch:
        description:
          - A local branch to keep at the commit (created or moved there); empty for a
            detached checkout. Forge reads an extension's active branch at every start.
        type: str
        default: ""
  local_changes:
    description: What to do with tracked files changed by hand (in every checkout).
    type: str
    choices: [fail, keep, discard]
    default: keep
  backup_dir:
    description: Where C(discard) saves the patch; default the folder above each checkout.
    type: path
    default: ""
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Check out Forge and its extensions at the pinned commits
  git_checkout:
    checkouts:
      - repo: https://github.com/lllyasviel/stable-diffusion-webui-forge.git
        dest: /home/azureuser/stable-diffusion-webui-forge
        version: dfdcbab685e57677014f05a3309b48cc87383167
        reclaim:
          webui-user.sh: Written by Forge Fleet
      - repo: https://github.com/Mikubill/sd-webui-controlnet.git
        dest: /home/azureuser/stable-diffusion-webui-forge/extensions/sd-webui-controlnet
        version: 56cec5b2958edf3b1807b7e7b2b1b5186dbd2f81
        branch: pinned
  become: true
  become_user: azureuser
"""

RETURN = r"""
checkouts:
  description: One result per checkout, in the order given (on an error, those before it).
  type: list
  elements: dict
  returned: always
  contains:
    repo:
      description: The repository, as given.
      type: str
    dest:
      description: The checkout folder, as given.
      type: str
    version:
      description: The version, as given.
      type: str
    commit:
      description: The commit the checkout is (or, in check mode, would be) at.
      type: str
    before:
      description: The commit checked out before the run ("" when there was no checkout).
      type: str
    action:
      description: clone, update or present.
      type: str
    changed:
      description: Whether this checkout was (or would be) changed.
      type: bool
    repaired:
      description: What was put right, one sentence each.
      type: list
    local_changes:
      description: Tracked files changed by hand (paths relative to dest).
      type: list
    discarded_to:
      description: The patch holding discarded local changes ("" when none).
      type: str
    kept:
      description: On a clone into an existing folder, the entries that were already there.
      type: list
repaired:
  description: What was put right in all the checkouts, each sentence after its folder.
  type: list
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.forge_fleet.git_checkout import CheckoutError, ensure_checkouts


def _summary(results: list[dict]) -> dict:
    return {
        "changed": any(r["changed"] for r in results),
        "checkouts": results,
        "repaired": [f"{r['dest']}: {line}" for r in results for line in r["repaired"]],
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "checkouts": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "repo": {"type": "str", "required": True},
                    "dest": {"type": "path", "required": True},
                    "version": {"type": "str", "required": True},
                    "reclaim": {"type": "dict", "default": {}},
                    "branch": {"type": "str", "default": ""},
                },
            },
            "local_changes": {
                "type": "str",
                "choices": ["fail", "keep", "discard"],
                "default": "keep",
            },
            "backup_dir": {"type": "path", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    checkouts = params["checkouts"]
    git = module.get_bin_path("git")
    if not git:
        if module.check_mode:
            clones = [
                {
                    "repo": c["repo"],
                    "dest": c["dest"],
                    "version": c["version"],
                    "action": "clone",
                    "changed": True,
                    "commit": c["version"],
                    "before": "",
                    "repaired": [],
                    "local_changes": [],
                    "discarded_to": "",
                    "kept": [],
                }
                for c in checkouts
            ]
            would = ", ".join(f"{c['repo']} at {c['version']}" for c in checkouts)
            module.exit_json(
                msg=f"git is not installed yet (the base stage installs it); would clone {would}",
                **_summary(clones),
            )
        module.fail_json(msg="git is not installed; run the base stage first (it installs git)")

    def run(argv, cwd):
        return module.run_command(
            argv, cwd=cwd, environ_update={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        )

    try:
        results = ensure_checkouts(
            run,
            git,
            checkouts,
            local_changes=params["local_changes"],
            backup_dir=params["backup_dir"],
            check_mode=module.check_mode,
        )
    except CheckoutError as error:
        module.fail_json(msg=str(error), **_summary(error.done))
    if params["local_changes"] == "keep":
        for r in results:
            if r["local_changes"]:
                module.warn(
                    f"{r['dest']} has local changes to tracked files, kept as they are: "
                    f"{', '.join(r['local_changes'])} (forge_local_changes: keep)"
                )
    result = _summary(results)
    if module._diff and result["changed"]:
        result["diff"] = [
            {
                "before_header": r["dest"],
                "after_header": r["dest"],
                "before": f"{r['before'] or 'absent'}\n",
                "after": f"{r['commit']}\n",
            }
            for r in results
            if r["changed"]
        ]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
