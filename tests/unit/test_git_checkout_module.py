"""The git_checkout module through ansible-playbook on localhost: Forge and an extension
inside it kept in one module run, per-checkout results, --check reporting and warnings."""

from __future__ import annotations

import subprocess

import pytest

from lab import forge_repo
from tests.harness.playbook import run_task


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return forge_repo.build(tmp_path_factory.mktemp("repos"))


def git(dest, *args):
    return subprocess.run(
        ["git", "-C", str(dest), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def checkout_task(built, forge, **options):
    checkouts = [
        {"repo": str(built.git_dir / forge_repo.FORGE_REPO), "dest": str(forge),
         "version": built.forge_commits[1], "reclaim": {"webui-user.sh": "Written by Forge Fleet"}},
        {"repo": str(built.git_dir / forge_repo.EXTENSION_REPO),
         "dest": str(forge / "extensions" / "ext"), "version": built.extension_commits[1],
         "branch": "pinned"},
    ]  # fmt: skip
    return {"git_checkout": {"checkouts": checkouts}, **options}


def test_one_run_clones_forge_then_the_extension_and_reports_each(built, tmp_path):
    forge = tmp_path / "forge"
    _, result = run_task(tmp_path, checkout_task(built, forge))
    assert not result.get("failed"), result
    assert result["changed"]
    assert [(c["dest"], c["action"], c["commit"]) for c in result["checkouts"]] == [
        (str(forge), "clone", built.forge_commits[1]),
        (str(forge / "extensions" / "ext"), "clone", built.extension_commits[1]),
    ]
    assert git(forge / "extensions" / "ext", "rev-parse", "HEAD") == built.extension_commits[1]


def test_check_reports_a_moved_extension_with_its_folder_and_changes_nothing(built, tmp_path):
    forge, ext = tmp_path / "forge", tmp_path / "forge" / "extensions" / "ext"
    run_task(tmp_path, checkout_task(built, forge))
    git(ext, "checkout", "-q", built.extension_commits[0])
    _, result = run_task(tmp_path, checkout_task(built, forge, check_mode=True))
    assert result["changed"] and not result["checkouts"][0]["changed"]
    moved = (
        f"checked out {built.extension_commits[1]} on branch pinned "
        f"(was {built.extension_commits[0]})"
    )
    assert result["repaired"] == [f"{ext}: {moved}"]
    assert git(ext, "rev-parse", "HEAD") == built.extension_commits[0]


def test_kept_local_changes_are_a_warning_naming_the_folder_and_paths(built, tmp_path):
    forge = tmp_path / "forge"
    run_task(tmp_path, checkout_task(built, forge))
    with (forge / "webui.sh").open("a") as handle:
        handle.write("# tuned by hand\n")
    _, result = run_task(tmp_path, checkout_task(built, forge))
    assert not result["changed"] and result["checkouts"][0]["local_changes"] == ["webui.sh"]
    assert result["warnings"] == [
        f"{forge} has local changes to tracked files, kept as they are: webui.sh "
        "(forge_local_changes: keep)"
    ]


def test_an_error_names_the_repository_and_lists_what_was_done(built, tmp_path):
    forge = tmp_path / "forge"
    task = checkout_task(built, forge)
    task["git_checkout"]["checkouts"][1]["version"] = "no-such-tag"
    _, result = run_task(tmp_path, task)
    assert result["failed"]
    assert str(built.git_dir / forge_repo.EXTENSION_REPO) in result["msg"]
    assert [c["dest"] for c in result["checkouts"]] == [str(forge)]
