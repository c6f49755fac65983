"""site.yml on lab VMs: converges, changes nothing on a re-run, repairs drift."""

from __future__ import annotations

import pytest

from lab import forge_repo
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORGE_DIR = "/home/azureuser/stable-diffusion-webui-forge"  # group_vars/all/fleet.yml


@pytest.fixture(scope="module")
def forge(lab, tmp_path_factory):
    """The Forge stand-in repository and package index (GitHub and PyPI are unreachable)."""
    with forge_repo.serving(lab.lab.gateway, tmp_path_factory.mktemp("forge")) as served:
        # an empty catalog: Forge has no checkpoint to make a first image with (that image
        # is tested in test_webui.py and, on the demo catalog, test_lab_site.py)
        yield {**served.settings(), "webui_smoke": "never"}


@pytest.fixture(scope="module")
def converged(lab, forge):
    first = run_playbook("site.yml", lab.inventory, extravars=forge)
    assert first.ok, first.explain()
    return first


def test_site_converges_on_two_vms(lab, converged):
    for host in lab.hosts:
        assert converged.stats[host]["failures"] == 0
        assert converged.task("Install the packages Forge needs", host).changed


def test_site_rerun_changes_nothing(lab, forge, converged):
    second = run_playbook("site.yml", lab.inventory, extravars=forge)
    assert second.ok, second.explain()
    for host in lab.hosts:
        assert second.stats[host]["changed"] == 0, second.changed_tasks(host)


@pytest.mark.parametrize("playbook", ["site.yml", "playbooks/base.yml"])
def test_group_vars_apply_to_site_and_to_a_single_playbook(lab, forge, converged, playbook):
    # base_disk_path comes only from group_vars/all/base.yml (the role default is "/").
    result = run_playbook(playbook, lab.inventory, limit=lab.hosts[0], extravars=forge)
    assert result.ok, result.explain()
    facts = result.task("Export the disk fact for later roles", lab.hosts[0]).res["ansible_facts"]
    assert facts["base_disk"]["path"] == FORGE_DIR
    # measured where the path exists: the Forge folder once the models stage has created it
    assert facts["base_disk"]["measured_path"] in ("/home/azureuser", FORGE_DIR)


def test_a_clean_run_prints_no_warning_and_no_deprecation(converged):
    assert "[WARNING]" not in converged.stdout
    assert "[DEPRECATION WARNING]" not in converged.stdout
    assert "PLAY RECAP" in converged.stdout  # the whole output, to its end
    assert "Failed hosts" not in converged.stdout


def test_site_repairs_a_vm_while_its_neighbour_fails_and_lists_the_failed_one_at_the_end(
    lab, forge, converged
):
    """One VM fails its preflight (no GPU); the other goes on through every stage and is
    repaired; the run ends with the failed VM, its task and message."""
    failing, host = lab.hosts
    scenario = lab.exec(failing, "cat", "/etc/forge-lab/gpu-scenario").strip()
    lab.exec(host, "apt-get", "remove", "-y", "-qq", "curl")
    lab.set_gpu(failing, "none")
    try:
        repaired = run_playbook("site.yml", lab.inventory, extravars=forge)
    finally:
        lab.set_gpu(failing, scenario)
    assert not repaired.ok
    assert [t.host for t in repaired.failures()] == [failing]
    assert repaired.failures()[0].task.endswith("Check that the host can run Forge")
    assert repaired.changed_tasks(host) == ["Install the packages Forge needs"]
    assert repaired.stats[host]["failures"] == 0
    assert lab.exec(host, "dpkg-query", "-W", "-f=${Status}", "curl") == "install ok installed"
    # the other VM went through every stage, the last one included
    assert repaired.task("Show one line per host and where the report is", host)
    assert "Install the packages Forge needs" not in {t.task for t in repaired.for_host(failing)}
    closing = repaired.stdout.split("PLAY RECAP")[1].splitlines()
    failed = [line for line in closing if line.startswith(("Failed hosts", f"  {failing}:"))]
    assert failed[0] == f"Failed hosts (1 of 2): fix these, then re-run with --limit {failing}"
    assert failed[1].startswith(
        f'  {failing}: failed at "preflight : Check that the host can run Forge": '
        f"Preflight failed on {failing}: "
    )
    assert len(failed) == 2
    assert "nvidia-smi" in failed[1]
