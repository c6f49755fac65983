"""The proc_hidepid_as_declared test plugin (plugins/test/proc_hidepid.py): the proc_hidepid
module's own comparison judged on the controller, called directly and through
ansible-playbook (ansible.cfg's test_plugins, the base probe's base64 fstab)."""

from __future__ import annotations

import base64
import importlib.util

from lab.paths import REPO_ROOT
from tests.harness.playbook import run_local_playbook

_SPEC = importlib.util.spec_from_file_location(
    "proc_hidepid_test_plugin", REPO_ROOT / "plugins" / "test" / "proc_hidepid.py"
)
plugin = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(plugin)

# a podman lab VM's /proc line, as the base probe's grep reads it, before and after
PLAIN = "173 170 0:76 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
HIDDEN = PLAIN.replace("- proc proc rw\n", "- proc proc rw,gid=997,hidepid=invisible\n")
FSTAB = "# /etc/fstab: static file system information.\nUUID=abc / ext4 defaults 0 1\n"
KEPT = FSTAB + "proc /proc proc defaults,hidepid=2,gid=997 0 0\n"


def test_the_plugin_offers_the_test_by_its_name():
    tests = plugin.TestModule().tests()
    assert tests == {"proc_hidepid_as_declared": plugin.proc_hidepid_as_declared}


def test_as_declared_only_when_live_options_and_fstab_line_both_match():
    declared = plugin.proc_hidepid_as_declared
    assert declared(HIDDEN, KEPT, "invisible", 997)
    assert not declared(PLAIN, KEPT, "invisible", 997)  # /proc remounted without hidepid
    assert not declared(HIDDEN, FSTAB, "invisible", 997)  # fstab line removed
    assert not declared(HIDDEN, KEPT.replace("hidepid=2", "hidepid=1"), "invisible", 997)
    assert not declared(HIDDEN, KEPT, "invisible", 998)  # the group's gid changed


def test_off_is_as_declared_without_hidepid_and_without_an_fstab_line():
    declared = plugin.proc_hidepid_as_declared
    assert declared(PLAIN, FSTAB, "off", None)
    assert declared(PLAIN, FSTAB, "off", 997)
    assert not declared(PLAIN, KEPT, "off", None)
    assert not declared(HIDDEN, FSTAB, "off", None)


def test_a_gid_given_as_text_counts_as_the_number_and_empty_as_none():
    declared = plugin.proc_hidepid_as_declared
    assert declared(HIDDEN, KEPT, "invisible", "997")
    assert declared(PLAIN, FSTAB, "off", "")


def test_unreadable_input_is_not_as_declared_so_the_module_runs():
    declared = plugin.proc_hidepid_as_declared
    assert not declared("", KEPT, "invisible", 997)  # no /proc line read
    assert not declared(HIDDEN, KEPT, "hidden", 997)  # not a hidepid value


def test_ansible_finds_the_test_and_judges_the_probes_base64_fstab(tmp_path):
    checks = [
        f"mountinfo is proc_hidepid_as_declared(kept | b64decode, 'invisible', {gid})"
        for gid in (997, "'997'")
    ] + [
        "mountinfo is not proc_hidepid_as_declared(plain | b64decode, 'invisible', 997)",
        "mountinfo is not proc_hidepid_as_declared('' | b64decode, 'invisible', 997)",
        "mountinfo is not proc_hidepid_as_declared(kept | b64decode, 'off', none)",
    ]
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "mountinfo": HIDDEN,
            "kept": base64.b64encode(KEPT.encode()).decode(),
            "plain": base64.b64encode(FSTAB.encode()).decode(),
        },
        "tasks": [{"name": "Judge", "ansible.builtin.assert": {"that": checks}}],
    }
    result = run_local_playbook(tmp_path, [play])
    assert result.ok, result.explain()
    assert result.task("Judge", "localhost").status == "ok"
