"""git_checkout against real git: repositories built by the lab's Forge stand-in builder,
cloned from their bare repositories on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from forge_fleet.git_checkout import CheckoutError, ensure_checkout, parse_status
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


def test_ignored_paths_are_neither_listed_nor_restored(built, repo, tmp_path):
    dest = tmp_path / "forge"
    checkout(repo, dest, built.forge_commits[1])
    (dest / "webui-user.sh").write_text("python_cmd=/x\n")
    result = checkout(repo, dest, built.forge_commits[1], ignore_paths=("webui-user.sh",))
    assert not result["changed"] and result["local_changes"] == []
    assert (dest / "webui-user.sh").read_text() == "python_cmd=/x\n"


def test_unknown_version_fails_clearly(repo, tmp_path):
    with pytest.raises(CheckoutError, match="is not a branch, tag or commit"):
        checkout(repo, tmp_path / "forge", "no-such-tag")


def test_parse_status_splits_deleted_from_modified():
    status = " D launch.py\0M  webui.sh\0R  new.py\0old.py\0 M modules/x.py\0"
    assert parse_status(status) == (["launch.py"], ["modules/x.py", "new.py", "webui.sh"])
