"""The base role's check mode and bad-input paths on one fresh lab VM they share: none of
them changes it (each asserts so), so one VM boot serves them all."""

from __future__ import annotations

import pytest

from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _installed(lab, host: str, package: str) -> bool:
    status = lab.exec(host, "dpkg-query", "-W", "-f=${Status}", package, check=False)
    return status == "install ok installed"


def test_check_mode_on_a_fresh_vm_reports_changes_and_changes_nothing(fresh_vm):
    lab = fresh_vm
    host = lab.hosts[0]
    result = run_playbook("playbooks/base.yml", lab.inventory, check=True)
    assert result.ok, result.explain()
    assert result.task("Install the packages Forge needs", host).changed
    assert not _installed(lab, host, "git")
    assert not _installed(lab, host, "libgoogle-perftools4")
    hidepid = "Hide other users' processes (/proc hidepid, now and after a reboot)"
    assert result.task(hidepid, host).changed
    assert "hidepid" not in lab.exec(host, "grep", " /proc ", "/proc/self/mountinfo")
    assert "hidepid" not in lab.exec(host, "cat", "/etc/fstab")


def test_unknown_package_fails_clearly_and_installs_nothing(fresh_vm):
    lab = fresh_vm
    host = lab.hosts[0]
    result = run_playbook(
        "playbooks/base.yml",
        lab.inventory,
        extravars={"base_extra_packages": ["no-such-package-forge-fleet"]},
    )
    assert not result.ok
    failure = result.task("Install the packages Forge needs", host)
    assert failure.failed
    assert "no-such-package-forge-fleet" in failure.msg
    assert not _installed(lab, host, "git")


def test_wrongly_typed_input_is_refused_before_any_change(fresh_vm):
    lab = fresh_vm
    host = lab.hosts[0]
    result = run_playbook(
        "playbooks/base.yml", lab.inventory, extravars={"base_apt_cache_valid_time": "soon"}
    )
    assert not result.ok
    failure = result.failures()[0]
    assert "base_apt_cache_valid_time" in failure.msg
    assert result.changed_tasks(host) == []
    assert not _installed(lab, host, "git")


def test_a_refused_proc_remount_fails_naming_the_way_out_and_writes_no_fstab_line(
    fresh_vm, tmp_path
):
    """The path a VM whose kernel refuses the remount takes (a container without
    CAP_SYS_ADMIN): here mount(8) refuses it, run as the unprivileged azureuser. The module
    must fail saying why and how to turn hidepid off, before it writes the fstab line."""
    lab = fresh_vm
    host = lab.hosts[0]
    fstab = "/home/azureuser/fstab-copy"
    lab.exec(host, "install", "-o", "azureuser", "-m", "0644", "/etc/fstab", fstab)
    before = lab.exec(host, "cat", fstab)
    playbook = tmp_path / "refused.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  become: false\n  tasks:\n"
        "    - name: Hide other users' processes\n"
        f"      proc_hidepid: {{hidepid: noaccess, gid: 0, fstab: {fstab}}}\n"
    )
    result = run_playbook(playbook, lab.inventory)
    assert not result.ok
    failure = result.task("Hide other users' processes", host)
    assert failure.failed
    assert "mount -o remount,hidepid=1,gid=0 /proc failed" in failure.msg
    assert 'base_proc_hidepid: "off"' in failure.msg
    assert lab.exec(host, "cat", fstab) == before
    assert "hidepid" not in lab.exec(host, "grep", " /proc ", "/proc/self/mountinfo")
