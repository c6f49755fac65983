"""site.yml against the azureml_compute inventory plugin: the ARM stand-in lists a lab VM as
a running compute instance (public IP 127.0.0.1, its SSH port), and the playbook reaches it
through the address, port and user the plugin read from the API."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.harness.arm import RG, SUB, WS, arm_stand_in, inventory_env
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_site_runs_on_the_instances_the_plugin_lists(make_lab, tmp_path):
    vm = make_lab(count=1)
    host = vm.hosts[0]
    lab_inventory = yaml.safe_load(vm.inventory.read_text())["all"]
    lab_host = lab_inventory["children"]["forge_servers"]["hosts"][host]
    with arm_stand_in(tmp_path) as arm:
        arm.state.workspaces[(SUB, RG, WS)] = {}
        arm.add_instance(SUB, RG, WS, host, ip="127.0.0.1", port=lab_host["ansible_port"])
        arm.add_instance(SUB, RG, WS, "sd-stopped", state="Stopped", ip="127.0.0.1", port=1)
        # What the plugin cannot know about the lab: the key file, the lab's known_hosts and
        # settings, given as compose expressions (JSON literals are Jinja literals).
        lab_settings = {
            **lab_inventory["vars"],
            "ansible_ssh_private_key_file": lab_host["ansible_ssh_private_key_file"],
        }
        config = tmp_path / "lab.azureml.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "plugin": "azureml_compute",
                    "workspaces": [{"resource_group": RG, "workspace": WS}],
                    "compose": {k: json.dumps(v) for k, v in lab_settings.items()},
                }
            )
        )
        result = run_playbook("site.yml", config, tags="preflight,base", envvars=inventory_env(arm))
    assert result.ok, result.explain()
    assert sorted(result.stats) == [host]  # the stopped instance was left out
    assert result.stats[host]["failures"] == 0
    assert result.task("Install the packages Forge needs", host).changed
