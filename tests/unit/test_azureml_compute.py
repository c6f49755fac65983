"""module_utils/forge_fleet/azureml_compute.py in-process: the decisions alone, and the
Fleet against the ARM stand-in through the real SDK (the errors an operator must understand)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forge_fleet import azureml_compute as azureml
from lab.paths import REPO_ROOT
from lab.tls import CA_CERT
from tests.harness.arm import RG, SUB, WS, ssh_public_key


@pytest.mark.parametrize(
    ("desired", "current", "action"),
    [
        ("present", None, "create"),
        ("present", "Stopped", None),
        ("started", None, "create"),
        ("started", "Stopped", "start"),
        ("started", "Running", None),
        ("stopped", None, None),
        ("stopped", "Running", "stop"),
        ("stopped", "Stopped", None),
        ("absent", "Running", "delete"),
        ("absent", None, None),
    ],
)
def test_plan_writes_only_what_differs(desired, current, action):
    assert azureml.plan(desired, current) == action


def test_plan_judges_a_passing_state_by_where_it_is_heading():
    assert azureml.plan("stopped", azureml.settled_state("Starting")) == "stop"
    assert azureml.plan("started", azureml.settled_state("Stopping")) == "start"
    assert azureml.plan("absent", azureml.settled_state("Deleting")) is None


def test_a_broken_instance_is_explained():
    with pytest.raises(azureml.AzureMLError, match="is SetupFailed: it cannot be started; delete"):
        azureml.plan("started", "SetupFailed")


def fleet(arm, token=None, auth_source="token", **options):
    credential = azureml.make_credential(auth_source, access_token=token or arm.state.token)
    client = azureml.make_client(credential, SUB, arm.url, str(CA_CERT), polling_interval=0.1)
    settings = {"wait_timeout": 30, "poll_interval": 0.1, **options}
    return azureml.Fleet(client, RG, WS, "westeurope", **settings)


@pytest.fixture
def key(tmp_path):
    return ssh_public_key(tmp_path).read_text()


def test_quota_exceeded_is_explained_and_the_others_go_on(arm, key):
    arm.state.quota_instances = 1
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    outcome = fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    message = outcome["failed"]["sd-bob"]
    assert message.startswith("Quota exceeded for Standard_NC4as_T4_v3 (create sd-bob)")
    assert "Quotas" in message
    assert outcome["instances"]["sd-alice"]["state"] == "Running"
    assert outcome["changed"] is True


T4 = "standardNCASv3_T4Family"


def test_a_class_beyond_the_family_quota_is_refused_before_any_write(arm, key):
    arm.state.family_limits[T4] = 12
    arm.state.used_elsewhere[T4] = 4
    roster = [{"name": f"sd-student-{c}"} for c in "abc"]
    with pytest.raises(azureml.AzureMLError) as raised:
        fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    text = str(raised.value)
    assert text.startswith("Not enough vCPU quota for the 3 instance(s) to create")
    assert (
        f"family {T4} in westeurope: 3 x Standard_NC4as_T4_v3 (4 vCPUs each) need 12 vCPUs; "
        "4 of its 12 are in use, 8 free"
    ) in text
    assert "Quotas -> Machine learning" in text and "Request quota increase" in text
    assert arm.state.writes == []


def test_check_mode_refuses_a_class_beyond_the_quota_too(arm, key):
    arm.state.family_limits[T4] = 4
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    with pytest.raises(azureml.AzureMLError, match="need 8 vCPUs; 0 of its 4 are in use"):
        fleet(arm, check_mode=True).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    assert arm.state.writes == []


def test_the_regional_total_is_checked_across_families(arm, key):
    # 4 (T4 family) + 6 (NCSv3 family): each family fits its own 48, not the total of 9
    arm.state.total_dedicated_limit = 9
    roster = [{"name": "sd-alice"}, {"name": "sd-bob", "vm_size": "Standard_NC6s_v3"}]
    with pytest.raises(azureml.AzureMLError) as raised:
        fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    text = str(raised.value)
    assert (
        "all families together in westeurope (Total Cluster Dedicated Regional vCPUs): the "
        "instances to create need 10 vCPUs; 0 of 9 are in use, 9 free"
    ) in text
    assert "family standard" not in text
    assert arm.state.writes == []


def test_the_workspace_own_quota_is_checked_too(arm, key):
    arm.state.workspace_limits[(WS, T4)] = 4
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    with pytest.raises(azureml.AzureMLError) as raised:
        fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    text = str(raised.value)
    assert (
        f"family {T4} in workspace {WS} (its own quota): 2 x Standard_NC4as_T4_v3 (4 vCPUs "
        "each) need 8 vCPUs; 0 of the workspace's 4 are in use, 4 free"
    ) in text
    assert f"family {T4} in westeurope" not in text  # the region's 48 hold them
    assert arm.state.writes == []


def test_a_vm_size_the_region_does_not_offer_is_named(arm, key):
    roster = [{"name": "sd-alice", "vm_size": "Standard_NC4as_T4"}]
    with pytest.raises(azureml.AzureMLError) as raised:
        fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    assert "VM size Standard_NC4as_T4 (sd-alice) is not offered in westeurope" in str(raised.value)
    assert arm.state.writes == []


def test_only_the_instances_to_create_count_against_the_quota(arm, key):
    arm.state.family_limits[T4] = 8
    arm.add_instance(SUB, RG, WS, "sd-alice")  # running: 4 of the 8 in use
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    outcome = fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    assert outcome["failed"] == {}
    assert [(w["method"], w["name"]) for w in arm.state.writes] == [("PUT", "sd-bob")]


def test_ssh_key_rejected_by_azure_is_explained(arm, tmp_path):
    # The stand-in takes ssh-rsa and ssh-ed25519 only; an ECDSA key passes the local check.
    ecdsa = tmp_path / "ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ecdsa)], check=True)
    outcome = fleet(arm).converge(
        [{"name": "sd-alice"}],
        "started",
        "Standard_NC4as_T4_v3",
        (tmp_path / "ecdsa.pub").read_text(),
    )
    assert outcome["failed"]["sd-alice"].startswith(
        "Azure rejected the SSH public key (create sd-alice)"
    )
    assert outcome["changed"] is False
    assert arm.instance(SUB, RG, WS, "sd-alice") is None


def test_a_private_key_given_as_public_key_is_refused_before_any_write(arm):
    with pytest.raises(azureml.AzureMLError, match="not an OpenSSH public key line"):
        fleet(arm).converge(
            [{"name": "sd-alice"}], "started", "X", "-----BEGIN OPENSSH PRIVATE KEY-----"
        )
    assert arm.state.writes == []


def test_not_logged_in_says_how_to_log_in(arm):
    # No Azure CLI login on this machine: AzureCliCredential cannot get a token.
    with pytest.raises(azureml.AzureMLError) as raised:
        fleet(arm, auth_source="cli").converge([{"name": "sd-alice"}], "started")
    assert str(raised.value).startswith("Not logged in to Azure")
    assert "az login" in str(raised.value) and "AZURE_CLIENT_SECRET" in str(raised.value)
    assert arm.state.log == []


def test_no_access_to_the_workspace_is_explained(arm):
    arm.state.forbidden.add(WS)
    with pytest.raises(azureml.AzureMLError) as raised:
        fleet(arm).converge([{"name": "sd-alice"}], "started")
    assert f"No access on workspace {WS} ({RG}) (HTTP 403 AuthorizationFailed)" in str(raised.value)
    assert "AzureML Compute Operator" in str(raised.value)
    assert arm.state.writes == []


def test_bad_roster_entries_are_reported_together():
    roster = [{"name": "1-bad"}, {"name": "ok-name", "object_id": "x"}, {"name": "ok-name"}]
    with pytest.raises(azureml.AzureMLError) as raised:
        azureml.check_roster(roster, "started", "Standard_NC4as_T4_v3")
    text = str(raised.value)
    assert (
        "roster entry 1 (1-bad): Azure refuses this name: the name must start with a letter" in text
    )
    assert "roster entry 2 (ok-name): give both object_id and tenant_id" in text
    assert "roster entry 3 (ok-name): the name appears twice" in text


@pytest.mark.parametrize("name", ["sd-class-alice", "sdclass01", "sd-class-a01", "sd-x1", "abc"])
def test_names_azure_accepts_pass(name):
    assert azureml.name_problem(name) == ""


def test_names_azure_refuses_are_named_together_with_a_valid_form():
    roster = [{"name": "sd-class-01"}, {"name": "sd-class-alice"}, {"name": "sd-02-x"}]
    with pytest.raises(azureml.AzureMLError) as raised:
        azureml.check_roster(roster, "started", "Standard_NC4as_T4_v3")
    text = str(raised.value)
    assert "roster entry 1 (sd-class-01): Azure refuses this name: every '-' must be followed " in (
        text
    )
    assert "'-' needs to be followed by at least one letter" in text
    assert "use for example sd-class01" in text
    assert "roster entry 3 (sd-02-x)" in text and "use for example sd02-x" in text
    assert "sd-class-alice" not in text
    assert "fleet_roster_students" in text


@pytest.mark.parametrize(
    ("name", "why", "suggestion"),
    [
        ("ab", "the name has 2 characters; Azure takes 3-24", "ab01"),
        ("a" * 25, "the name has 25 characters", "a" * 24),
        ("sd_class_01", "only letters, digits and '-'", "sd-class01"),
        ("sd-class-", "must end with a letter or digit", "sd-class"),
        ("sd--alice", "every '-' must be followed by at least one letter", "sd-alice"),
    ],
)
def test_each_refused_name_says_why_and_suggests_one_azure_accepts(name, why, suggestion):
    assert why in azureml.name_problem(name)
    assert azureml.suggest_name(name) == suggestion
    assert azureml.name_problem(suggestion) == ""


def test_stopped_creates_nothing(arm):
    outcome = fleet(arm).converge([{"name": "sd-alice"}], "stopped")
    assert outcome["changed"] is False and arm.state.writes == []


def test_a_stopping_instance_is_waited_for_then_started(arm):
    arm.add_instance(SUB, RG, WS, "sd-alice", state="Stopping")
    arm.state.transitions[arm.instance(SUB, RG, WS, "sd-alice")["id"]] = {
        "to": "Stopped",
        "gets": 1,
    }
    lines = []
    outcome = fleet(arm, say=lines.append).converge([{"name": "sd-alice"}], "started")
    assert outcome["instances"]["sd-alice"] == {
        "action": "start",
        "state_before": "Stopping",
        "changed": True,
        "state": "Running",
    }
    assert [w["path"].rsplit("/", 1)[1] for w in arm.state.writes] == ["start"]
    assert any("sd-alice: Stopping, waiting before start" in line for line in lines)


def test_the_wait_is_bounded_and_names_what_is_still_pending(arm):
    arm.add_instance(SUB, RG, WS, "sd-alice", state="Stopped")
    arm.state.transition_gets = 10_000  # it stays Starting
    started = time.monotonic()
    outcome = fleet(arm, wait_timeout=1).converge([{"name": "sd-alice"}], "started")
    assert time.monotonic() - started < 10
    assert "sd-alice still Starting after 1 s" in outcome["failed"]["sd-alice"]
    assert outcome["instances"]["sd-alice"]["changed"] is True


def test_the_docs_say_how_a_class_cost_is_bounded_and_what_idle_shutdown_cannot_do():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "azureml_compute"],
        cwd=REPO_ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = " ".join(done.stdout.split())
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    for text in (doc, readme):
        assert "fleet_roster_state=stopped" in text
        assert "2020-08-01" in text and "no idle shutdown" in text
        assert "billed only for its disk" in text


def test_importing_it_loads_no_azure_sdk():
    # module_utils/ runs on VMs too: the SDK is imported only where Azure is called.
    probe = (
        "import sys; import forge_fleet.azureml_compute; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'requests')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(REPO_ROOT / "module_utils")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_a_create_failing_in_its_async_operation_is_named(arm, key):
    arm.state.failing_creates["sd-bob"] = (
        "QuotaExceeded",
        "Operation results in exceeding quota limits of Core. Maximum allowed: 4.",
    )
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    outcome = fleet(arm).converge(roster, "started", "Standard_NC4as_T4_v3", key)
    assert set(outcome["failed"]) == {"sd-bob"}
    assert outcome["failed"]["sd-bob"].startswith("Quota exceeded for Standard_NC4as_T4_v3")
    assert outcome["instances"]["sd-alice"]["state"] == "Running"
