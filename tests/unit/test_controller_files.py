"""The controller_files action (plugins/action/controller_files.py) through ansible-playbook
-vvv on localhost: what it writes, when it reports changed, --check, --diff, no_log, and bad
input refused before anything is written."""

from __future__ import annotations

import os
import stat

from tests.harness.playbook import run_local_playbook

SECRET = "webui-password-7f3a9c1e55"


def play(*tasks, check=False):
    return [
        {"hosts": "localhost", "gather_facts": False, "check_mode": check, "tasks": list(tasks)}
    ]


def write(folder, files, **options):
    return {
        "name": "Write the files",
        "controller_files": {"path": str(folder), "files": files, **options},
        "register": "outcome",
    }


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_folder_and_files_then_reports_no_change_on_a_rerun(tmp_path):
    folder = tmp_path / "written" / "fleet"
    task = write(
        folder,
        [{"name": "a.txt", "content": "first\n"}, {"name": "b.csv", "content": "x,y\n"}],
    )
    first = run_local_playbook(tmp_path, play(task))
    assert first.ok, first.explain()
    assert first.task("Write the files", "localhost").changed
    assert (folder / "a.txt").read_text() == "first\n"
    assert (folder / "b.csv").read_text() == "x,y\n"
    assert mode(folder) == 0o755
    assert mode(folder / "a.txt") == 0o644
    assert sorted(os.listdir(folder)) == ["a.txt", "b.csv"]  # no temporary file left

    again = run_local_playbook(tmp_path, play(task))
    assert again.ok, again.explain()
    assert not again.task("Write the files", "localhost").changed
    assert again.task("Write the files", "localhost").res["written"] == []


def test_repairs_a_changed_file_and_a_loosened_mode_and_nothing_else(tmp_path):
    folder = tmp_path / "credentials"
    task = write(
        folder,
        [{"name": "kept.csv", "content": "same\n"}, {"name": "access.csv", "content": "row\n"}],
        mode="0600",
        dir_mode="0700",
    )
    assert run_local_playbook(tmp_path, play(task)).ok
    kept_inode = os.stat(folder / "kept.csv").st_ino
    os.chmod(folder / "access.csv", 0o644)
    os.chmod(folder, 0o755)

    repaired = run_local_playbook(tmp_path, play(task))
    assert repaired.ok, repaired.explain()
    result = repaired.task("Write the files", "localhost")
    assert result.changed
    assert result.res["written"] == [str(folder / "access.csv")]
    assert mode(folder / "access.csv") == 0o600
    assert mode(folder) == 0o700
    assert os.stat(folder / "kept.csv").st_ino == kept_inode  # untouched


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path):
    folder = tmp_path / "written"
    task = write(folder, [{"name": "a.txt", "content": "new\n"}])
    dry = run_local_playbook(tmp_path, play(task, check=True))
    assert dry.ok, dry.explain()
    result = dry.task("Write the files", "localhost")
    assert result.changed
    assert result.res["written"] == [str(folder / "a.txt")]
    assert not folder.exists()

    assert run_local_playbook(tmp_path, play(task)).ok
    (folder / "a.txt").write_text("drifted\n")
    dry = run_local_playbook(tmp_path, play(task, check=True))
    assert dry.task("Write the files", "localhost").changed
    assert (folder / "a.txt").read_text() == "drifted\n"


def test_a_task_with_check_mode_false_writes_in_check_runs_too(tmp_path):
    """What the reports do: a --check run still leaves its report."""
    folder = tmp_path / "written"
    task = {**write(folder, [{"name": "a.txt", "content": "report\n"}]), "check_mode": False}
    assert run_local_playbook(tmp_path, play(task, check=True)).ok
    assert (folder / "a.txt").read_text() == "report\n"


def test_diff_shows_the_change_but_never_for_a_no_log_task(tmp_path):
    folder = tmp_path / "out"
    plays = play(
        write(folder, [{"name": "a.txt", "content": "before-line\n"}]),
        {**write(folder, [{"name": "s.csv", "content": f"old,{SECRET}\n"}]), "no_log": True},
    )
    assert run_local_playbook(tmp_path, plays).ok
    plays = play(
        write(folder, [{"name": "a.txt", "content": "after-line\n"}]),
        {**write(folder, [{"name": "s.csv", "content": f"new,{SECRET}\n"}]), "no_log": True},
    )
    plays[0]["diff"] = True
    done = run_local_playbook(tmp_path, plays)
    assert done.ok, done.explain()
    assert "-before-line" in done.stdout and "+after-line" in done.stdout
    assert SECRET not in done.stdout  # at -vvv, with --diff on
    assert (folder / "s.csv").read_text() == f"new,{SECRET}\n"


def test_a_name_outside_the_folder_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "written"
    task = write(
        folder,
        [{"name": "ok.txt", "content": "x\n"}, {"name": "../escape.txt", "content": "y\n"}],
    )
    done = run_local_playbook(tmp_path, play({**task, "ignore_errors": True}))
    result = done.task("Write the files", "localhost")
    assert result.failed
    assert "'../escape.txt' is not a file name inside path" in result.msg
    assert not (tmp_path / "escape.txt").exists()
    assert not (folder / "ok.txt").exists()


def test_a_folder_where_a_file_belongs_fails_naming_it(tmp_path):
    folder = tmp_path / "written"
    (folder / "fleet-report.html").mkdir(parents=True)
    task = write(folder, [{"name": "fleet-report.html", "content": "<html>\n"}])
    done = run_local_playbook(tmp_path, play({**task, "ignore_errors": True}))
    result = done.task("Write the files", "localhost")
    assert result.failed
    assert f"{folder / 'fleet-report.html'} exists and is not a regular file" in result.msg
    assert (folder / "fleet-report.html").is_dir()


def test_a_bad_mode_is_refused(tmp_path):
    task = write(tmp_path / "r", [{"name": "a", "content": "x"}], mode="rw-r--r--")
    done = run_local_playbook(tmp_path, play({**task, "ignore_errors": True}))
    result = done.task("Write the files", "localhost")
    assert result.failed
    assert "mode: mode must be octal, such as '0644'" in result.msg
    assert not (tmp_path / "r").exists()
