"""The models folders read with the plan (module_utils/forge_fleet/download_folders.py): the
state of each folder, and whether host_files would change it (the same comparison)."""

from __future__ import annotations

import grp
import os
import pwd

from forge_fleet.download_folders import check_folders, folder_state

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def declared(path, mode="0755", owner=ME, group=MY_GROUP):
    return {"path": str(path), "owner": owner, "group": group, "mode": mode}


def test_a_folder_as_declared_differs_in_nothing(tmp_path):
    folder = tmp_path / "forge"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    states, differ = check_folders([declared(folder)])
    assert differ == []
    assert states == [
        {
            "path": str(folder),
            "exists": True,
            "owner": ME,
            "group": MY_GROUP,
            "mode": "0755",
            "differs": [],
        }
    ]


def test_a_loosened_mode_differs(tmp_path):
    folder = tmp_path / "forge"
    folder.mkdir()
    os.chmod(folder, 0o777)
    states, differ = check_folders([declared(folder)])
    assert differ == [str(folder)]
    assert (states[0]["mode"], states[0]["differs"]) == ("0777", ["mode"])


def test_missing_folders_differ_and_are_read_without_error(tmp_path):
    forge = tmp_path / "forge"
    states, differ = check_folders([declared(forge), declared(forge / "models")])
    assert differ == [str(forge), str(forge / "models")]
    assert [s["exists"] for s in states] == [False, False]
    assert [s["differs"] for s in states] == [["created"], ["created"]]


def test_another_owner_differs(tmp_path):
    folder = tmp_path / "forge"
    folder.mkdir()
    os.chmod(folder, 0o755)
    other = "nobody" if ME != "nobody" else "root"
    _, differ = check_folders([declared(folder, owner=other)])
    assert differ == [str(folder)]


def test_a_folder_that_cannot_be_judged_differs_with_the_reason(tmp_path):
    path = tmp_path / "forge"
    path.write_text("a file where the folder belongs")
    states, differ = check_folders([declared(path), declared(tmp_path, owner="no-such-user-x")])
    assert differ == [str(path), str(tmp_path)]
    assert "is not a folder" in states[0]["differs"][0]
    assert states[0]["exists"] is False
    assert "does not exist on this host" in states[1]["differs"][0]


def test_folder_state_reads_a_file_as_no_folder(tmp_path):
    path = tmp_path / "f"
    path.write_text("")
    assert folder_state(str(path)) == {"path": str(path), "exists": False, "not_a_folder": True}
