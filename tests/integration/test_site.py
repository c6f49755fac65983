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
        yield served.settings()


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


def test_site_repairs_a_removed_package_and_changes_nothing_else(lab, forge, converged):
    host = lab.hosts[1]
    lab.exec(host, "apt-get", "remove", "-y", "-qq", "curl")
    repaired = run_playbook("site.yml", lab.inventory, extravars=forge)
    assert repaired.ok, repaired.explain()
    assert repaired.changed_tasks(host) == ["Install the packages Forge needs"]
    assert repaired.stats[lab.hosts[0]]["changed"] == 0
    assert lab.exec(host, "dpkg-query", "-W", "-f=${Status}", "curl") == "install ok installed"
