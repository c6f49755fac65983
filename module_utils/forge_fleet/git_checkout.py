"""Git checkouts pinned to one commit each, repaired in place without destroying anyone's work.

Pure logic around a ``run(argv, cwd) -> (rc, stdout, stderr)`` callable (the ``git_checkout``
module passes AnsibleModule.run_command). ``ensure_checkouts`` takes a list (Forge, then the
extensions inside it) so one module run keeps them all; ``ensure_checkout`` is one of them.
What it guarantees:

- The checkout is a real git checkout (``.git`` present) at the resolved commit: detached,
  or on a local ``branch`` that points at it (Forge reads an extension's active branch).
- Cloning into a folder that already holds files (models downloaded before the clone) keeps
  every one of them: it is ``git init`` + ``fetch`` + ``checkout``, which refuses to overwrite
  an untracked file instead of replacing it.
- Drift is repaired and said: another commit checked out, tracked files deleted, ``origin``
  pointing elsewhere. Tracked files changed by hand are *local changes*: listed by path and
  then kept (warned), refused (fail) or discarded after saving them as a patch. A tracked file
  named in ``reclaim`` whose content holds its marker was written by an earlier version of
  this project, not by hand: it is put back as the repository has it, whatever the policy.
- Untracked files are never touched.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: this file runs on Python 3.8 on the VMs
    from collections.abc import Callable

    Runner = Callable[[list[str], str | None], tuple[int, str, str]]

FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
LOCAL_CHANGES = ("fail", "keep", "discard")


class CheckoutError(Exception):
    """Something the operator must act on; the message says what. ``done``: the results of
    the checkouts of the same list handled before this one (what already changed)."""

    def __init__(self, message: str, done: list[dict] | None = None) -> None:
        super().__init__(message)
        self.done = done or []


class _Git:
    def __init__(self, run: Runner, git: str, dest: str) -> None:
        self.run, self.git, self.dest = run, git, dest

    def __call__(self, *args: str, what: str = "", cwd: str | None = None) -> str:
        rc, out, err = self.run([self.git, *args], cwd or self.dest)
        if rc != 0:
            detail = (err.strip() or out.strip()).splitlines()[-5:]
            raise CheckoutError(
                f"{what or 'git ' + args[0]} failed in {self.dest}: " + " / ".join(detail)
            )
        return out

    def ok(self, *args: str) -> bool:
        return self.run([self.git, *args], self.dest)[0] == 0


def parse_status(porcelain_z: str) -> tuple[list[str], list[str]]:
    """(deleted, modified) tracked paths from ``git status --porcelain=v1 -z -uno``."""
    deleted, modified = [], []
    entries = porcelain_z.split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":  # a rename/copy carries its source as the next entry
            index += 1
        if code in (" D", "D ", "DD"):
            deleted.append(path)
        else:
            modified.append(path)
    return sorted(deleted), sorted(modified)


def resolve_remote(lines: str, version: str) -> str:
    """The commit ``version`` names in ``git ls-remote`` output (branch, tag or commit)."""
    refs = {}
    for line in lines.splitlines():
        if "\t" in line:
            sha, ref = line.split("\t", 1)
            refs[ref] = sha
    for ref in (f"refs/tags/{version}^{{}}", f"refs/tags/{version}", f"refs/heads/{version}"):
        if ref in refs:
            return refs[ref]
    if FULL_COMMIT.match(version):
        return version
    return ""


def _resolve_local(git: _Git, version: str) -> str:
    """The commit ``version`` names in the local clone after a fetch ("" when unknown)."""
    candidates = (
        [f"{version}^{{commit}}"]
        if FULL_COMMIT.match(version)
        else [f"refs/tags/{version}^{{commit}}", f"refs/remotes/origin/{version}^{{commit}}"]
    )
    for ref in candidates:
        rc, out, _ = git.run([git.git, "rev-parse", "--verify", "-q", ref], git.dest)
        if rc == 0:
            return out.strip()
    return ""


def _fetch(git: _Git, repo: str) -> None:
    git("fetch", "-q", "--tags", "--force", "origin", what=f"Fetching {repo}")


def _target(git: _Git, repo: str, version: str) -> str:
    if FULL_COMMIT.match(version) and _resolve_local(git, version):
        return version  # a pinned commit already here: no network needed
    _fetch(git, repo)
    commit = _resolve_local(git, version)
    if not commit:
        raise CheckoutError(
            f"{version!r} is not a branch, tag or commit of {repo}; set the version to a full "
            "40-character commit (or an existing tag/branch) of that repository"
        )
    return commit


def _ls_remote(git: _Git, repo: str, version: str) -> str:
    out = git("ls-remote", repo, what=f"Reading {repo}", cwd="/")
    commit = resolve_remote(out, version)
    if not commit:
        raise CheckoutError(
            f"{version!r} is not a branch or tag of {repo}; set the version to a full "
            "40-character commit (or an existing tag/branch) of that repository"
        )
    return commit


def _switch(git: _Git, target: str, branch: str) -> tuple[int, str, str]:
    """Check out ``target``: detached, or as the local ``branch`` moved to it."""
    how = ["-B", branch] if branch else ["--detach"]
    return git.run([git.git, "checkout", "-q", *how, target], git.dest)


def _current_branch(git: _Git) -> str:
    rc, out, _ = git.run([git.git, "symbolic-ref", "-q", "--short", "HEAD"], git.dest)
    return out.strip() if rc == 0 else ""


def _clone_into(git: _Git, repo: str, version: str, branch: str, check_mode: bool) -> dict:
    kept = sorted(os.listdir(git.dest)) if os.path.isdir(git.dest) else []
    result = {
        "action": "clone",
        "changed": True,
        "before": "",
        "kept": kept,
        "local_changes": [],
        "discarded_to": "",
    }
    if check_mode:
        result["commit"] = _ls_remote(git, repo, version)
        result["repaired"] = []
        return result
    os.makedirs(git.dest, exist_ok=True)
    git("init", "-q", what="git init")
    git("remote", "add", "origin", repo)
    commit = _target(git, repo, version)
    rc, out, err = _switch(git, commit, branch)
    if rc != 0:
        blocking = [
            line.strip()
            for line in (err + out).splitlines()
            if line.startswith(("\t", "  ")) and line.strip()
        ]
        raise CheckoutError(
            f"Cannot check out {repo} into {git.dest}: files already there are in the way of "
            f"the repository's own files ({', '.join(blocking) or err.strip()}); move them "
            "elsewhere and run again. Nothing in the folder was overwritten."
        )
    result.update(commit=commit, repaired=[])
    return result


def ensure_checkout(
    run: Runner,
    git: str,
    repo: str,
    dest: str,
    version: str,
    *,
    local_changes: str = "keep",
    reclaim: dict[str, str] | None = None,
    branch: str = "",
    backup_dir: str = "",
    check_mode: bool = False,
) -> dict:
    """Make ``dest`` a checkout of ``repo`` at ``version``; return what was found and done.

    Returned keys: action (clone|update|present), changed, commit, before, repaired (what
    was put right, in words), local_changes (paths), discarded_to (patch path), kept.
    """
    if local_changes not in LOCAL_CHANGES:
        raise CheckoutError(f"local_changes must be one of {', '.join(LOCAL_CHANGES)}")
    g = _Git(run, git, dest)
    if not os.path.isdir(os.path.join(dest, ".git")):
        return _clone_into(g, repo, version, branch, check_mode)

    repaired: list[str] = []
    before, deleted, modified = _read_tree(g)
    ours = _reclaimable(dest, modified, reclaim or {})
    modified = [path for path in modified if path not in ours]
    if modified and local_changes == "fail":  # before anything changes
        raise CheckoutError(_refusal({dest: modified}))
    rc, url, _ = run([git, "remote", "get-url", "origin"], dest)
    url = url.strip() if rc == 0 else ""
    if url != repo:
        repaired.append(f"origin set to {repo} (was {url or 'missing'})")
        if not check_mode:
            g("remote", "set-url" if url else "add", "origin", repo)
    pinned_here = FULL_COMMIT.match(version) and _resolve_local(g, version)
    if check_mode and (repaired or not pinned_here):
        target = _ls_remote(g, repo, version)  # read-only: no fetch into the checkout
    else:
        target = _target(g, repo, version)
    discarded_to = _local_changes(
        g, modified, local_changes, backup_dir, repaired, check_mode=check_mode
    )
    _restore(g, ours, deleted, repaired, check_mode=check_mode)
    _move(g, before, target, branch, repaired, check_mode=check_mode)
    return {
        "action": "update" if repaired else "present",
        "changed": bool(repaired),
        "commit": target,
        "before": before,
        "repaired": repaired,
        "local_changes": modified,
        "discarded_to": discarded_to,
        "kept": [],
    }


def _restore(
    g: _Git, ours: list[str], deleted: list[str], repaired: list[str], *, check_mode: bool
) -> None:
    """Put back the repository's version of reclaimed and deleted tracked files."""
    if ours:
        repaired.append(
            f"gave back the repository's {', '.join(ours)} (written by an earlier Forge Fleet)"
        )
    if deleted:
        repaired.append(f"restored deleted files: {', '.join(deleted)}")
    if (ours or deleted) and not check_mode:
        g("checkout", "-q", "HEAD", "--", *ours, *deleted)


def _move(
    g: _Git, before: str, target: str, branch: str, repaired: list[str], *, check_mode: bool
) -> None:
    """Check out ``target`` (on ``branch``) unless HEAD already is exactly that."""
    on_branch = _current_branch(g) if before else ""
    if before == target and on_branch == branch:
        return
    where = f" on branch {branch}" if branch else ""
    was = before or "nothing"
    if before == target:
        was = f"branch {on_branch}" if on_branch else "detached"
    repaired.append(f"checked out {target}{where} (was {was})")
    if check_mode:
        return
    rc, out, err = _switch(g, target, branch)
    if rc != 0:
        raise CheckoutError(
            f"Cannot move {g.dest} to {target}: {(err or out).strip()}. Local changes "
            "were kept; set forge_local_changes: discard (saves them as a patch) or "
            "resolve them by hand."
        )


def ensure_checkouts(
    run: Runner,
    git: str,
    checkouts: list[dict],
    *,
    local_changes: str = "keep",
    backup_dir: str = "",
    check_mode: bool = False,
) -> list[dict]:
    """``ensure_checkout`` for each of ``checkouts`` ({repo, dest, version, reclaim, branch}), in
    their order: a repository first, then the ones checked out inside it (Forge, then its
    extensions), so a fresh clone of the first makes room for the others.

    Returns one result per checkout: ``ensure_checkout``'s keys plus repo, dest and version.
    With ``local_changes="fail"`` every existing checkout is read first, and a local change in
    any of them stops the run before anything changes in any of them. Any other error stops at
    that checkout: the error names its repository and carries the results of those before it
    (``CheckoutError.done``: what already changed).
    """
    if local_changes not in LOCAL_CHANGES:
        raise CheckoutError(f"local_changes must be one of {', '.join(LOCAL_CHANGES)}")
    if local_changes == "fail":
        found = {}
        for each in checkouts:
            if os.path.isdir(os.path.join(each["dest"], ".git")):
                g = _Git(run, git, each["dest"])
                ours = each.get("reclaim") or {}
                modified = _read_tree(g)[2]
                modified = [
                    p for p in modified if p not in _reclaimable(each["dest"], modified, ours)
                ]
                if modified:
                    found[each["dest"]] = modified
        if found:
            raise CheckoutError(_refusal(found))
    results: list[dict] = []
    for each in checkouts:
        repo, dest, version = each["repo"], each["dest"], each["version"]
        try:
            result = ensure_checkout(
                run,
                git,
                repo,
                dest,
                version,
                local_changes=local_changes,
                reclaim=each.get("reclaim") or {},
                branch=each.get("branch") or "",
                backup_dir=backup_dir,
                check_mode=check_mode,
            )
        except CheckoutError as error:
            message = str(error)
            if repo not in message:
                message = f"{repo}: {message}"
            raise CheckoutError(message, done=results) from None
        results.append({"repo": repo, "dest": dest, "version": version, **result})
    return results


def _read_tree(g: _Git) -> tuple[str, list[str], list[str]]:
    """(HEAD commit or "", deleted, modified tracked paths) of an existing checkout."""
    rc, head, _ = g.run([g.git, "rev-parse", "--verify", "-q", "HEAD"], g.dest)
    before = head.strip() if rc == 0 else ""
    status = g("status", "--porcelain=v1", "-z", "--untracked-files=no") if before else ""
    deleted, modified = parse_status(status)
    return before, deleted, modified


def _reclaimable(dest: str, modified: list[str], reclaim: dict[str, str]) -> list[str]:
    """The modified paths of ``reclaim`` ({path: marker}) whose content holds their marker."""
    ours = []
    for path in modified:
        marker = reclaim.get(path)
        if not marker:
            continue
        try:
            with open(os.path.join(dest, path), encoding="utf-8", errors="replace") as handle:
                if marker in handle.read():
                    ours.append(path)
        except OSError:
            continue
    return ours


def _refusal(found: dict[str, list[str]]) -> str:
    """The local_changes=fail message for {checkout: changed paths}."""
    listed = "; ".join(
        f"{dest} has local changes to tracked files: {', '.join(paths)}"
        for dest, paths in found.items()
    )
    return (
        f"{listed}. Nothing was changed. Keep them with forge_local_changes: keep, drop them "
        "with forge_local_changes: discard (saved as a patch first), or undo them by hand."
    )


def _local_changes(
    g: _Git,
    modified: list[str],
    policy: str,
    backup_dir: str,
    repaired: list[str],
    *,
    check_mode: bool,
) -> str:
    """Apply the local-changes policy; return the patch path when changes were discarded."""
    if not modified or policy != "discard":
        return ""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    patch = os.path.join(backup_dir or os.path.dirname(g.dest), f"local-changes-{stamp}.patch")
    repaired.append(f"discarded local changes to {', '.join(modified)} (saved in {patch})")
    if not check_mode:
        diff = g("diff", "HEAD", "--binary", "--", *modified)
        os.makedirs(os.path.dirname(patch), exist_ok=True)
        with open(patch, "w") as handle:
            handle.write(diff)
        g("checkout", "-q", "HEAD", "--", *modified)
    return patch
