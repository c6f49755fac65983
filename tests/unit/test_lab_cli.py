"""`lab/forge-lab site`: every argument after `site` reaches ansible-playbook as given."""

from __future__ import annotations

import pytest

from lab.__main__ import make_parser, site_command, split_playbook_args


def playbook_args_for(argv: list[str]) -> list[str]:
    own, rest = split_playbook_args(argv)
    make_parser().parse_args(own)  # what forge-lab keeps must still parse
    return site_command("inv.yml", "vars.yml", rest)[5:]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["site", "--check"], ["site.yml", "--check"]),
        (["site", "-e", "x=1"], ["site.yml", "-e", "x=1"]),
        (["site", "-v"], ["site.yml", "-v"]),
        (["site", "--", "--check", "--diff"], ["site.yml", "--check", "--diff"]),
        (["site", "--limit", "lab-1", "-vvv"], ["site.yml", "--limit", "lab-1", "-vvv"]),
        (["site", "--", "--", "-e", "y=2"], ["site.yml", "--", "-e", "y=2"]),
        (["site"], ["site.yml"]),
    ],
)
def test_arguments_after_site_go_to_ansible_playbook_unchanged(argv, expected):
    assert playbook_args_for(argv) == expected


def test_count_after_site_stays_with_forge_lab_and_the_rest_goes_on():
    own, rest = split_playbook_args(["--lab", "site", "site", "--count", "3", "--check"])
    args = make_parser().parse_args(own)
    assert (args.lab, args.command, args.count) == ("site", "site", 3)
    assert rest == ["--check"]
    own, rest = split_playbook_args(["site", "--count=1", "--", "--count", "-e", "a=b"])
    assert make_parser().parse_args(own).count == 1
    assert rest == ["--count", "-e", "a=b"]  # after `--`, even --count is ansible-playbook's


def test_the_lab_inventory_and_stand_ins_come_before_the_operator_arguments():
    command = site_command("inv.yml", "vars.yml", ["-e", "@mine.yml"])
    assert command[0].endswith("/ansible-playbook")
    assert command[1:] == ["-i", "inv.yml", "-e", "@vars.yml", "site.yml", "-e", "@mine.yml"]


def test_other_commands_take_no_playbook_arguments():
    assert split_playbook_args(["up", "--count", "1"]) == (["up", "--count", "1"], [])
    with pytest.raises(SystemExit):
        make_parser().parse_args(["status", "--check"])
