"""The forge_run_record callback (plugins/callback/forge_run_record.py) in a real
ansible-playbook run on localhost: where the record lives while the run goes, what it holds,
who can read it, and that nothing is left behind (in the repository or the temporary folder).
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.paths import REPO_ROOT
from tests.harness.playbook import LOCALHOST, run_local_playbook, run_playbook


def _play(seen):
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"name": "Change something", "ansible.builtin.command": "true"},
                {
                    "name": "Look at the record's folder",
                    "ansible.builtin.stat": {
                        "path": "{{ lookup('ansible.builtin.env', 'FORGE_RUN_RECORD') | dirname }}"
                    },
                    "register": "folder",
                },
                {
                    "name": "Look at the record",
                    "ansible.builtin.stat": {
                        "path": "{{ lookup('ansible.builtin.env', 'FORGE_RUN_RECORD') }}"
                    },
                    "register": "record",
                },
                {
                    "name": "Keep what was seen",
                    "ansible.builtin.copy": {
                        "dest": str(seen),
                        "mode": "0600",
                        "content": (
                            "{{ {'path': lookup('ansible.builtin.env', 'FORGE_RUN_RECORD'),"
                            " 'folder_mode': folder.stat.mode, 'record_mode': record.stat.mode,"
                            " 'record': lookup('ansible.builtin.file',"
                            " lookup('ansible.builtin.env', 'FORGE_RUN_RECORD')) | from_json}"
                            " | to_json }}"
                        ),
                    },
                    "changed_when": False,
                },
            ],
        }
    ]


def test_the_record_lives_in_a_private_folder_outside_the_repository_and_is_removed(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("FORGE_RUN_RECORD", raising=False)
    seen_file = tmp_path / "seen.json"
    done = run_local_playbook(tmp_path, _play(seen_file))
    assert done.ok, done.explain()

    seen = json.loads(seen_file.read_text())
    path = seen["path"]
    assert path.endswith("/run-record.json")
    assert not path.startswith(str(REPO_ROOT) + "/"), path
    assert not path.startswith(str(tmp_path) + "/"), path  # not next to the playbook either
    assert seen["folder_mode"] == "0700"
    assert seen["record_mode"] == "0600"
    assert seen["record"]["hosts"]["localhost"]["changed"] == ["Change something"]
    assert seen["record"]["started"]

    # gone at the end, folder and all; no reports/ folder made next to the playbook
    assert not (tmp_path / "reports").exists()
    assert not Path(path).parent.exists()


def test_a_record_named_by_forge_run_record_is_written_there_and_kept(tmp_path):
    record = tmp_path / "kept" / "record.json"
    (tmp_path / "play.yml").write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [{"name": "Change something", "ansible.builtin.command": "true"}],
                }
            ]
        )
    )
    done = run_playbook(tmp_path / "play.yml", LOCALHOST, envvars={"FORGE_RUN_RECORD": str(record)})
    assert done.ok, done.explain()
    assert json.loads(record.read_text())["hosts"]["localhost"]["changed"] == ["Change something"]
