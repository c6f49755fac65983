"""The azureml_compute inventory plugin, through ansible-inventory, against the ARM
stand-in (tests/doubles/arm) and the real Azure SDK. No lab VM needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.paths import REPO_ROOT
from tests.harness.arm import RG, SUB, WS, inventory_env

ANSIBLE_INVENTORY = str(Path(sys.executable).parent / "ansible-inventory")
ALICE = ("11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000")


def inventory(arm, source, *args, token=None):
    env = {
        **os.environ,
        **inventory_env(arm, token),
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
    }
    env["NO_COLOR"] = "1"
    done = subprocess.run(
        [ANSIBLE_INVENTORY, "-i", str(source), *(args or ["--list"])],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done


def listing_of(done):
    """ansible-inventory --list output, with Ansible's untrusted-string markers unwrapped."""
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d))


def write_config(tmp_path, **options):
    path = tmp_path / "class.azureml.yml"
    config = {"plugin": "azureml_compute", "workspaces": [{"resource_group": RG, "workspace": WS}]}
    path.write_text(yaml.safe_dump({**config, **options}))
    return path


@pytest.fixture
def classroom(arm):
    """Six computes over three pages (page size 2): two reachable, four not."""
    arm.add_instance(
        SUB,
        RG,
        WS,
        "sd-alice",
        ip="20.1.1.1",
        port=50000,
        assigned=ALICE,
        tags={"course": "sd-intro"},
    )
    arm.add_instance(
        SUB,
        RG,
        WS,
        "sd-bob",
        ip="20.1.1.2",
        port=50001,
        user="instructor",
        vm_size="Standard_NC6s_v3",
    )
    arm.add_instance(SUB, RG, WS, "sd-carol", state="Stopped")
    arm.add_instance(SUB, RG, WS, "sd-dave", ssh=False)
    arm.add_instance(SUB, RG, WS, "sd-erin", state="Creating")
    arm.add_instance(SUB, RG, WS, "train-cluster", compute_type="AmlCompute")
    return arm


def test_reachable_instances_become_hosts_with_address_port_and_user(classroom, tmp_path):
    done = inventory(classroom, write_config(tmp_path))
    listing = listing_of(done)
    assert sorted(listing["forge_servers"]["hosts"]) == ["sd-alice", "sd-bob"]
    alice = listing["_meta"]["hostvars"]["sd-alice"]
    bob = listing["_meta"]["hostvars"]["sd-bob"]
    assert (alice["ansible_host"], alice["ansible_port"], alice["ansible_user"]) == (
        "20.1.1.1",
        50000,
        "azureuser",
    )
    assert (bob["ansible_host"], bob["ansible_port"], bob["ansible_user"]) == (
        "20.1.1.2",
        50001,
        "instructor",
    )
    assert alice["azureml_vm_size"] == "Standard_NC4as_T4_v3"
    assert alice["azureml_state"] == "Running"
    assert alice["azureml_assigned_user"] == ALICE[0]
    assert alice["azureml_workspace"] == WS and alice["azureml_resource_group"] == RG


def test_hosts_are_grouped_by_workspace_state_size_user_and_tag(classroom, tmp_path):
    listing = listing_of(inventory(classroom, write_config(tmp_path)))
    assert sorted(listing["azureml_ws_ws_forge_class"]["hosts"]) == ["sd-alice", "sd-bob"]
    assert sorted(listing["azureml_state_running"]["hosts"]) == ["sd-alice", "sd-bob"]
    assert listing["azureml_size_standard_nc6s_v3"]["hosts"] == ["sd-bob"]
    assert listing[f"azureml_user_{ALICE[0].replace('-', '_')}"]["hosts"] == ["sd-alice"]
    assert listing["azureml_tag_course_sd_intro"]["hosts"] == ["sd-alice"]


def test_unreachable_instances_are_left_out_with_a_warning(classroom, tmp_path):
    done = inventory(classroom, write_config(tmp_path))
    hostvars = listing_of(done)["_meta"]["hostvars"]
    assert (
        "sd-carol" not in hostvars and "sd-dave" not in hostvars and "train-cluster" not in hostvars
    )
    warnings = " ".join(done.stderr.split())
    assert "sd-carol (workspace ws-forge-class) left out: it is Stopped (not Running)" in warnings
    assert "sd-dave (workspace ws-forge-class) left out: it has no SSH access" in warnings
    assert "sd-erin (workspace ws-forge-class) left out: it is Creating" in warnings
    assert "train-cluster (workspace ws-forge-class) left out: it is a AmlCompute" in warnings


def test_every_page_is_read(classroom, tmp_path):
    inventory(classroom, write_config(tmp_path))
    lists = [e for e in classroom.state.log if e["path"].endswith("/computes")]
    assert len(lists) == 3  # 6 computes, 2 per page, followed through nextLink


def test_skipped_group_and_private_ip_when_configured(classroom, tmp_path):
    config = write_config(tmp_path, skipped_group="azureml_offline", use_private_ip=True)
    listing = listing_of(inventory(classroom, config))
    assert sorted(listing["azureml_offline"]["hosts"]) == [
        "sd-carol",
        "sd-dave",
        "sd-erin",
        "train-cluster",
    ]
    assert listing["_meta"]["hostvars"]["sd-alice"]["ansible_host"] == "10.0.0.4"
    assert "ansible_host" not in listing["_meta"]["hostvars"]["sd-carol"]
    assert listing["_meta"]["hostvars"]["sd-carol"]["azureml_state"] == "Stopped"


def test_constructed_options_compose_and_keyed_groups(classroom, tmp_path):
    config = write_config(
        tmp_path,
        compose={"ansible_ssh_private_key_file": "'/keys/class'"},
        keyed_groups=[{"key": "azureml_tags.course | default('none')", "prefix": "course"}],
    )
    listing = listing_of(inventory(classroom, config))
    assert listing["_meta"]["hostvars"]["sd-bob"]["ansible_ssh_private_key_file"] == "/keys/class"
    assert listing["course_sd_intro"]["hosts"] == ["sd-alice"]
    assert listing["course_none"]["hosts"] == ["sd-bob"]


def test_the_example_inventory_graphs_against_the_stand_in(classroom):
    done = inventory(classroom, REPO_ROOT / "inventory" / "azureml.yml", "--graph")
    assert done.returncode == 0, done.stderr
    assert "@forge_servers:" in done.stdout
    assert "|  |--sd-alice" in done.stdout and "|  |--sd-bob" in done.stdout
    assert "sd-carol" not in done.stdout


def test_refused_sign_in_is_explained(classroom, tmp_path):
    done = inventory(classroom, write_config(tmp_path), token="wrong")
    text = " ".join(done.stderr.split())
    assert "Azure refused the sign-in listing workspace ws-forge-class" in text
    assert "az login" in text
    assert "Bearer wrong" not in text


def test_no_access_to_a_workspace_is_explained(classroom, tmp_path):
    classroom.state.forbidden.add(WS)
    done = inventory(classroom, write_config(tmp_path))
    text = " ".join(done.stderr.split())
    assert "No access listing workspace ws-forge-class" in text
    assert "AzureML Compute Operator" in text


def test_an_unreadable_workspace_fails_the_listing_with_the_plugins_message(classroom):
    classroom.state.forbidden.add(WS)
    done = inventory(classroom, REPO_ROOT / "inventory" / "azureml.yml", "--list")
    assert done.returncode == 1
    text = " ".join(done.stderr.split())
    assert "No access listing workspace ws-forge-class" in text
    assert "Completely failed to parse inventory source" in text
    assert '"hostvars"' not in done.stdout


def test_an_unreadable_workspace_stops_a_playbook_before_any_play(classroom):
    classroom.state.forbidden.add(WS)
    env = {
        **os.environ,
        **inventory_env(classroom),
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "inventory/azureml.yml",
            "site.yml",
            "--list-hosts",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "No access listing workspace ws-forge-class" in " ".join(done.stderr.split())
    assert "pattern: ['forge_servers']" not in done.stdout


def test_listing_is_cached_when_the_cache_is_on(classroom, tmp_path):
    config = write_config(
        tmp_path,
        cache=True,
        cache_plugin="ansible.builtin.jsonfile",
        cache_connection=str(tmp_path / "cache"),
    )
    first = inventory(classroom, config)
    assert first.returncode == 0, first.stderr
    reads = len(classroom.state.log)
    second = inventory(classroom, config)
    assert json.loads(second.stdout)["forge_servers"] == json.loads(first.stdout)["forge_servers"]
    assert len(classroom.state.log) == reads


@pytest.mark.parametrize("kind", [["-t", "inventory"], []])
def test_ansible_doc_documents_the_plugin_and_the_module(kind):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), *kind, "azureml_compute"],
        cwd=REPO_ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    expected = "include_states" if kind else "allow_delete"
    assert expected in text and "DefaultAzureCredential" in text
