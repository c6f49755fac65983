"""The base role's check mode and bad-input paths on one fresh lab VM they share: none of
them changes it (each asserts so), so one VM boot serves them all. The tests at the end
converge it, then drift its /proc hidepid and see a re-run repair it."""

from __future__ import annotations

import pytest

from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]


HIDEPID = "Hide other users' processes (/proc hidepid, now and after a reboot)"
FSTAB_LINE = "proc /proc proc defaults,hidepid=2,gid={gid} 0 0"


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
    assert result.task(HIDEPID, host).changed
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


# From here on the VM is converged: each test leaves it converged for the next.


def _proc_line(lab, host: str) -> str:
    return lab.exec(host, "grep", " /proc ", "/proc/self/mountinfo")


@pytest.fixture(scope="module")
def converged_vm(fresh_vm):
    first = run_playbook("playbooks/base.yml", fresh_vm.inventory)
    assert first.ok, first.explain()
    assert first.task(HIDEPID, fresh_vm.hosts[0]).changed
    return fresh_vm


def _gid(lab, host: str) -> str:
    return lab.exec(host, "getent", "group", "procview").split(":")[2]


def _drift_is_reported_by_check_and_repaired_by_the_hidepid_task_alone(lab, host, *, same):
    """--check names the hidepid task and changes nothing (``same`` re-reads the drifted
    state); the re-run changes that task alone; the next re-run skips it."""
    drifted = same()
    checked = run_playbook("playbooks/base.yml", lab.inventory, check=True)
    assert checked.ok, checked.explain()
    assert checked.changed_tasks(host) == [HIDEPID]
    assert same() == drifted
    repaired = run_playbook("playbooks/base.yml", lab.inventory)
    assert repaired.ok, repaired.explain()
    assert repaired.changed_tasks(host) == [HIDEPID]
    again = run_playbook("playbooks/base.yml", lab.inventory)
    assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
    assert again.task(HIDEPID, host).status == "skipped"


def test_a_noop_rerun_skips_the_hidepid_module(converged_vm):
    lab = converged_vm
    host = lab.hosts[0]
    result = run_playbook("playbooks/base.yml", lab.inventory)
    assert result.ok, result.explain()
    assert result.stats[host]["changed"] == 0, result.changed_tasks(host)
    assert result.task(HIDEPID, host).status == "skipped"
    assert result.task("Create the group that still sees every process", host).status == "skipped"
    checked = run_playbook("playbooks/base.yml", lab.inventory, check=True)
    assert checked.stats[host]["changed"] == 0, checked.changed_tasks(host)
    assert checked.task(HIDEPID, host).status == "skipped"


def test_a_removed_fstab_proc_line_is_reported_and_restored_by_the_hidepid_task(converged_vm):
    lab = converged_vm
    host = lab.hosts[0]
    lab.exec(host, "sed", "-i", "/ \\/proc  *proc /d", "/etc/fstab")
    assert "hidepid" not in lab.exec(host, "cat", "/etc/fstab")
    _drift_is_reported_by_check_and_repaired_by_the_hidepid_task_alone(
        lab, host, same=lambda: lab.exec(host, "cat", "/etc/fstab")
    )
    assert FSTAB_LINE.format(gid=_gid(lab, host)) in lab.exec(host, "cat", "/etc/fstab")


def test_a_changed_fstab_proc_line_is_reported_and_restored_by_the_hidepid_task(converged_vm):
    lab = converged_vm
    host = lab.hosts[0]
    lab.exec(host, "sed", "-i", "s/hidepid=2,gid=[0-9]*/hidepid=1/", "/etc/fstab")
    assert "hidepid=1 0 0" in lab.exec(host, "cat", "/etc/fstab")
    _drift_is_reported_by_check_and_repaired_by_the_hidepid_task_alone(
        lab, host, same=lambda: lab.exec(host, "cat", "/etc/fstab")
    )
    fstab = lab.exec(host, "cat", "/etc/fstab")
    assert FSTAB_LINE.format(gid=_gid(lab, host)) in fstab
    assert "hidepid=1" not in fstab


def test_tags_hidepid_alone_reads_and_repairs_the_fstab_line_then_skips_the_module(
    converged_vm,
):
    lab = converged_vm
    host = lab.hosts[0]
    lab.exec(host, "sed", "-i", "/ \\/proc  *proc /d", "/etc/fstab")
    repaired = run_playbook("playbooks/base.yml", lab.inventory, tags="hidepid")
    assert repaired.ok, repaired.explain()
    assert repaired.changed_tasks(host) == [HIDEPID]
    assert FSTAB_LINE.format(gid=_gid(lab, host)) in lab.exec(host, "cat", "/etc/fstab")
    again = run_playbook("playbooks/base.yml", lab.inventory, tags="hidepid")
    assert again.ok, again.explain()
    assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
    assert again.task(HIDEPID, host).status == "skipped"


def test_proc_remounted_without_hidepid_is_reported_and_remounted_by_the_hidepid_task(
    converged_vm,
):
    lab = converged_vm
    host = lab.hosts[0]
    lab.exec(host, "mount", "-o", "remount,hidepid=0", "/proc")
    assert "hidepid=invisible" not in _proc_line(lab, host)
    _drift_is_reported_by_check_and_repaired_by_the_hidepid_task_alone(
        lab, host, same=lambda: _proc_line(lab, host)
    )
    assert f"gid={_gid(lab, host)},hidepid=invisible" in _proc_line(lab, host)


def test_hidepid_off_unhides_once_then_skips_the_module_until_turned_back_on(converged_vm):
    lab = converged_vm
    host = lab.hosts[0]
    off = {"base_proc_hidepid": "off"}
    turned_off = run_playbook("playbooks/base.yml", lab.inventory, extravars=off)
    assert turned_off.ok, turned_off.explain()
    assert turned_off.changed_tasks(host) == [HIDEPID]
    assert "hidepid" not in _proc_line(lab, host)
    assert " /proc " not in lab.exec(host, "cat", "/etc/fstab")
    stays_off = run_playbook("playbooks/base.yml", lab.inventory, extravars=off)
    assert stays_off.stats[host]["changed"] == 0, stays_off.changed_tasks(host)
    assert stays_off.task(HIDEPID, host).status == "skipped"
    back_on = run_playbook("playbooks/base.yml", lab.inventory)
    assert back_on.changed_tasks(host) == [HIDEPID]
    assert "hidepid=invisible" in _proc_line(lab, host)
