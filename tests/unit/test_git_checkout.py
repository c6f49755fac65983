"""git_checkout against real git: repositories built by the lab's Forge stand-in builder,
cloned from their bare repositories on disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from forge_fleet.git_checkout import (
    CheckoutError,
    ensure_checkout,
    ensure_checkouts,
    parse_status,
)
from lab import forge_repo


def run(argv, cwd):
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return forge_repo.build(tmp_path_factory.mktemp("repos"))


@pytest.fixture
def repo(built):
    return str(built.git_dir / forge_repo.FORGE_REPO)


def checkout(repo, dest, version, **options):
    return ensure_checkout(run, "git", repo, str(dest), version, **options)


def git(dest, *args):
    return subprocess.run(
        ["git", "-C", str(dest), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_clone_into_a_folder_with_models_keeps_them(built, repo, tmp_path):
    dest = tmp_path / "forge"
    (dest / "models" / "Lora").mkdir(parents=True)
    (dest / "models" / "Lora" / "mine.safetensors").write_bytes(b"weights")
    result = checkout(repo, dest, built.forge_commits[1])
    assert result["action"] == "clone" and result["changed"]
    assert git(dest, "rev-parse", "HEAD") == built.forge_commits[1]
    assert (dest / "models" / "Lora" / "mine.safetensors").read_bytes() == b"weights"
    assert (dest / "webui.sh").exists()


def test_a_tag_is_resolved_to_its_commit(built, repo, tmp_path):
    result = checkout(repo, tmp_path / "forge", forge_repo.FORGE_TAG)
    assert result["commit"] == built.forge_commits[0]


def test_second_run_changes_nothing(built, repo, tmp_path):
    checkout(repo, tmp_path / "forge", built.forge_commits[1])
    again = checkout(repo, tmp_path / "forge", built.forge_commits[1])
    assert not again["changed"] and again["repaired"] == []


def test_check_mode_on_drift_reports_and_changes_nothing(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[1])
    git(dest, "checkout", "-q", built.forge_commits[0])
    (dest / "launch.py").unlink()
    result = checkout(repo, dest, built.forge_commits[1], check_mode=True)
    assert result["changed"]
    assert "restored deleted files: launch.py" in result["repaired"]
    assert git(dest, "rev-parse", "HEAD") == built.forge_commits[0]
    assert not (dest / "launch.py").exists()


def test_check_mode_clone_resolves_a_tag_without_cloning(built, repo, tmp_path):
    result = checkout(repo, tmp_path / "forge", forge_repo.FORGE_TAG, check_mode=True)
    assert result["action"] == "clone" and result["commit"] == built.forge_commits[0]
    assert not (tmp_path / "forge").exists()


def test_local_changes_fail_refuses_before_any_change(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[0])
    with (dest / "webui.sh").open("a") as handle:
        handle.write("# mine\n")
    with pytest.raises(CheckoutError, match=r"local changes to tracked files: webui\.sh"):
        checkout(repo, dest, built.forge_commits[1], local_changes="fail")
    assert git(dest, "rev-parse", "HEAD") == built.forge_commits[0]
    assert (dest / "webui.sh").read_text().endswith("# mine\n")


def test_local_changes_discard_saves_a_patch_first(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[1])
    with (dest / "webui.sh").open("a") as handle:
        handle.write("# mine\n")
    result = checkout(
        repo, dest, built.forge_commits[1], local_changes="discard", backup_dir=str(tmp_path)
    )
    assert result["changed"] and result["local_changes"] == ["webui.sh"]
    assert "# mine" in Path(result["discarded_to"]).read_text()
    assert not (dest / "webui.sh").read_text().endswith("# mine\n")


def test_a_reclaimed_path_holding_its_marker_is_given_back_whatever_the_policy(
    built, repo, tmp_path
):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[1])
    shipped = (dest / "webui-user.sh").read_text()
    (dest / "webui-user.sh").write_text("# Written by Forge Fleet\npython_cmd=/x\n")
    reclaim = {"webui-user.sh": "Written by Forge Fleet"}
    result = checkout(repo, dest, built.forge_commits[1], local_changes="fail", reclaim=reclaim)
    assert result["changed"] and result["local_changes"] == []
    assert result["repaired"] == [
        "gave back the repository's webui-user.sh (written by an earlier Forge Fleet)"
    ]
    assert (dest / "webui-user.sh").read_text() == shipped


def test_a_reclaimable_path_without_its_marker_is_a_local_change(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[1])
    (dest / "webui-user.sh").write_text("python_cmd=/mine\n")
    reclaim = {"webui-user.sh": "Written by Forge Fleet"}
    with pytest.raises(CheckoutError, match=r"local changes to tracked files: webui-user\.sh"):
        checkout(repo, dest, built.forge_commits[1], local_changes="fail", reclaim=reclaim)
    assert (dest / "webui-user.sh").read_text() == "python_cmd=/mine\n"


def test_moving_to_another_commit_is_not_blocked_by_a_reclaimed_file(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[0])
    (dest / "webui-user.sh").write_text("# Written by Forge Fleet\n")
    result = checkout(
        repo, dest, built.forge_commits[1], reclaim={"webui-user.sh": "Written by Forge Fleet"}
    )
    assert result["commit"] == built.forge_commits[1]
    assert git(dest, "rev-parse", "HEAD") == built.forge_commits[1]


def test_a_branch_checkout_keeps_the_commit_on_that_local_branch(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[1])  # detached, as before
    result = checkout(repo, dest, built.forge_commits[1], branch="pinned")
    assert result["changed"]
    assert result["repaired"] == [
        f"checked out {built.forge_commits[1]} on branch pinned (was detached)"
    ]
    assert git(dest, "symbolic-ref", "--short", "HEAD") == "pinned"
    assert git(dest, "rev-parse", "HEAD") == built.forge_commits[1]
    again = checkout(repo, dest, built.forge_commits[1], branch="pinned")
    assert not again["changed"]


def test_a_fresh_clone_with_a_branch_is_on_it(built, repo, tmp_path):
    dest = tmp_path / "forge"
    result = checkout(repo, dest, built.forge_commits[0], branch="pinned")
    assert result["action"] == "clone"
    assert git(dest, "symbolic-ref", "--short", "HEAD") == "pinned"
    assert git(dest, "rev-parse", "HEAD") == built.forge_commits[0]


def test_unknown_version_fails_clearly(repo, tmp_path):
    with pytest.raises(CheckoutError, match="is not a branch, tag or commit"):
        checkout(repo, tmp_path / "forge", "no-such-tag")


def test_parse_status_splits_deleted_from_modified():
    status = " D launch.py\0M  webui.sh\0R  new.py\0old.py\0 M modules/x.py\0"
    assert parse_status(status) == (["launch.py"], ["modules/x.py", "new.py", "webui.sh"])


# -- a list of checkouts in one call: Forge, then an extension inside it --------------------


@pytest.fixture
def pair(built, tmp_path):
    """(checkouts, forge folder, extension folder): the role's list for one extension."""
    forge, ext = tmp_path / "forge", tmp_path / "forge" / "extensions" / "ext"
    checkouts = [
        {"repo": str(built.git_dir / forge_repo.FORGE_REPO), "dest": str(forge),
         "version": built.forge_commits[1], "reclaim": {"webui-user.sh": "Written by Forge Fleet"}},
        {"repo": str(built.git_dir / forge_repo.EXTENSION_REPO), "dest": str(ext),
         "version": built.extension_commits[1]},
    ]  # fmt: skip
    return checkouts, forge, ext


def test_a_list_is_cloned_in_order_and_each_result_names_its_checkout(built, pair):
    checkouts, forge, ext = pair
    results = ensure_checkouts(run, "git", checkouts)
    assert [(r["dest"], r["action"], r["commit"]) for r in results] == [
        (str(forge), "clone", built.forge_commits[1]),
        (str(ext), "clone", built.extension_commits[1]),
    ]
    assert git(forge, "rev-parse", "HEAD") == built.forge_commits[1]
    assert git(ext, "rev-parse", "HEAD") == built.extension_commits[1]


def test_a_list_run_again_changes_nothing(pair):
    checkouts = pair[0]
    ensure_checkouts(run, "git", checkouts)
    again = ensure_checkouts(run, "git", checkouts)
    assert [(r["action"], r["changed"], r["repaired"]) for r in again] == [
        ("present", False, []),
        ("present", False, []),
    ]


def test_a_moved_extension_is_reported_in_check_mode_then_repaired(built, pair):
    checkouts, _, ext = pair
    ensure_checkouts(run, "git", checkouts)
    git(ext, "checkout", "-q", built.extension_commits[0])
    checked = ensure_checkouts(run, "git", checkouts, check_mode=True)
    moved = f"checked out {built.extension_commits[1]} (was {built.extension_commits[0]})"
    assert [r["changed"] for r in checked] == [False, True]
    assert checked[1]["repaired"] == [moved]
    assert git(ext, "rev-parse", "HEAD") == built.extension_commits[0]
    real = ensure_checkouts(run, "git", checkouts)
    assert real[1]["repaired"] == [moved] and not real[0]["changed"]
    assert git(ext, "rev-parse", "HEAD") == built.extension_commits[1]


def test_a_removed_extension_is_reported_in_check_mode_then_cloned_again(built, pair):
    checkouts, _, ext = pair
    ensure_checkouts(run, "git", checkouts)
    shutil.rmtree(ext)
    checked = ensure_checkouts(run, "git", checkouts, check_mode=True)
    assert [r["action"] for r in checked] == ["present", "clone"]
    assert checked[1]["commit"] == built.extension_commits[1] and not ext.exists()
    real = ensure_checkouts(run, "git", checkouts)
    assert [r["action"] for r in real] == ["present", "clone"]
    assert git(ext, "rev-parse", "HEAD") == built.extension_commits[1]


def test_local_changes_fail_in_an_extension_stops_before_forge_changes(built, pair):
    checkouts, forge, ext = pair
    ensure_checkouts(run, "git", checkouts)
    git(forge, "checkout", "-q", built.forge_commits[0])
    tracked = git(ext, "ls-files").splitlines()[0]
    with (ext / tracked).open("a") as handle:
        handle.write("# mine\n")
    with pytest.raises(
        CheckoutError, match=rf"{ext} has local changes to tracked files: {tracked}"
    ):
        ensure_checkouts(run, "git", checkouts, local_changes="fail")
    assert git(forge, "rev-parse", "HEAD") == built.forge_commits[0]  # nothing changed


def test_an_error_names_the_repository_and_carries_the_checkouts_before_it(built, pair):
    checkouts, forge, _ = pair
    broken = [checkouts[0], {**checkouts[1], "version": "no-such-tag"}]
    with pytest.raises(CheckoutError) as caught:
        ensure_checkouts(run, "git", broken)
    assert checkouts[1]["repo"] in str(caught.value)
    assert "'no-such-tag' is not a branch, tag or commit" in str(caught.value)
    assert [r["dest"] for r in caught.value.done] == [str(forge)]
