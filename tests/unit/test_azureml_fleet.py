"""playbooks/fleet.yml and the azureml_compute module, driven through the real Azure SDK
against the ARM stand-in (tests/doubles/arm). No lab VM needed."""

from __future__ import annotations

import pytest

from tests.doubles.arm import Injected
from tests.harness.arm import RG, SUB, WS, fleet_vars, ssh_public_key
from tests.harness.playbook import run_playbook

pytestmark = pytest.mark.slow  # each test runs ansible-playbook (about 5 s)

TASK = "Ensure the roster's compute instances are "
STUDENT = {"object_id": "11111111-2222-3333-4444-555555555555", "tenant_id": "t-1"}


@pytest.fixture(scope="module")
def empty_inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "hosts.yml"
    path.write_text("all: {}\n")
    return path


@pytest.fixture
def fleet(arm, empty_inventory, tmp_path):
    key = ssh_public_key(tmp_path)

    def run(students, state="started", check=False, **more):
        settings = {
            "fleet_roster_state": state,
            "fleet_roster_ssh_public_key_file": str(key),
            "fleet_roster_progress_file": str(tmp_path / "reports" / "fleet-progress.log"),
        }
        extravars = fleet_vars(arm, students, **{**settings, **more})
        result = run_playbook(
            "playbooks/fleet.yml", empty_inventory, extravars=extravars, check=check
        )
        return result, result.task(TASK + state, "localhost")

    run.key = key
    return run


def _state(arm, name):
    instance = arm.instance(SUB, RG, WS, name)
    return None if instance is None else instance["properties"]["properties"]["state"]


def test_roster_converges_creating_missing_and_starting_stopped(arm, fleet, tmp_path):
    arm.add_instance(SUB, RG, WS, "sd-bob", state="Stopped")
    arm.add_instance(SUB, RG, WS, "sd-carol", state="Running")
    result, task = fleet(
        [{"name": "sd-alice", **STUDENT}, {"name": "sd-bob"}, {"name": "sd-carol"}]
    )
    assert result.ok, result.explain()
    assert task.changed
    assert {n: r["action"] for n, r in task.res["instances"].items()} == {
        "sd-alice": "create",
        "sd-bob": "start",
        "sd-carol": None,
    }
    assert [(w["method"], w["name"]) for w in arm.state.writes] == [
        ("PUT", "sd-alice"),
        ("POST", "sd-bob"),
    ]
    assert _state(arm, "sd-alice") == "Running" and _state(arm, "sd-bob") == "Running"
    created = arm.instance(SUB, RG, WS, "sd-alice")["properties"]["properties"]
    assert created["sshSettings"]["sshPublicAccess"] == "Enabled"
    assert (
        created["personalComputeInstanceSettings"]["assignedUser"]["objectId"]
        == STUDENT["object_id"]
    )
    assert created["vmSize"] == "Standard_NC4as_T4_v3"
    assert any("sd-alice: create requested" in line for line in task.res["progress"])
    # the same lines were written to the progress file as they happened, for tail -f
    log = (tmp_path / "reports" / "fleet-progress.log").read_text().splitlines()
    assert log == task.res["progress"]


def test_rerun_calls_no_write_api_and_reports_unchanged(arm, fleet):
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    first, _ = fleet(roster)
    assert first.ok, first.explain()
    writes = len(arm.state.writes)
    second, task = fleet(roster)
    assert second.ok, second.explain()
    assert not task.changed
    assert len(arm.state.writes) == writes == 2
    assert second.stats["localhost"]["changed"] == 0


def test_check_mode_predicts_without_writing(arm, fleet):
    arm.add_instance(SUB, RG, WS, "sd-bob", state="Stopped")
    result, task = fleet([{"name": "sd-alice"}, {"name": "sd-bob"}], check=True)
    assert result.ok, result.explain()
    assert task.changed
    assert task.res["instances"]["sd-alice"]["action"] == "create"
    assert task.res["instances"]["sd-bob"]["action"] == "start"
    assert arm.state.writes == []
    assert _state(arm, "sd-alice") is None and _state(arm, "sd-bob") == "Stopped"


def test_check_mode_says_what_it_would_do_not_that_nothing_is_to_do(arm, fleet):
    arm.add_instance(SUB, RG, WS, "sd-bob", state="Stopped")
    arm.add_instance(SUB, RG, WS, "sd-carol", state="Running")
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}, {"name": "sd-carol"}]
    result, _ = fleet(roster, check=True)
    assert result.ok, result.explain()
    shown = result.task("Show what happened to each instance", "localhost").res["msg"]
    assert shown == [
        "Would create sd-alice",
        "Would start sd-bob",
        "Check mode: nothing was changed.",
    ]


def test_check_mode_with_nothing_to_do_says_so(arm, fleet):
    arm.add_instance(SUB, RG, WS, "sd-alice", state="Running")
    result, _ = fleet([{"name": "sd-alice"}], check=True)
    assert result.ok, result.explain()
    shown = result.task("Show what happened to each instance", "localhost").res["msg"]
    assert shown == ["Nothing to do: every instance is already started."]


def test_check_mode_names_a_class_beyond_the_quota(arm, fleet):
    arm.state.family_limits["standardNCASv3_T4Family"] = 4
    result, task = fleet([{"name": "sd-alice"}, {"name": "sd-bob"}], check=True)
    assert not result.ok
    assert "Not enough vCPU quota for the 2 instance(s) to create" in task.msg
    assert "2 x Standard_NC4as_T4_v3 (4 vCPUs each) need 8 vCPUs; 0 of its 4" in task.msg
    assert "Request quota increase" in task.msg
    assert arm.state.writes == []


def test_stop_then_start(arm, fleet):
    for name in ("sd-alice", "sd-bob"):
        arm.add_instance(SUB, RG, WS, name)
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}]
    stopped, task = fleet(roster, state="stopped")
    assert stopped.ok, stopped.explain()
    assert task.changed and [w["path"].rsplit("/", 1)[1] for w in arm.state.writes] == ["stop"] * 2
    assert _state(arm, "sd-alice") == _state(arm, "sd-bob") == "Stopped"
    started, task = fleet(roster, state="started")
    assert started.ok, started.explain()
    assert [w["path"].rsplit("/", 1)[1] for w in arm.state.writes[2:]] == ["start"] * 2
    assert _state(arm, "sd-alice") == _state(arm, "sd-bob") == "Running"


def test_absent_without_the_safety_switch_deletes_nothing_and_names_them(arm, fleet):
    for name in ("sd-alice", "sd-bob"):
        arm.add_instance(SUB, RG, WS, name)
    result, task = fleet([{"name": "sd-alice"}, {"name": "sd-bob"}], state="absent")
    assert not result.ok
    assert "Refusing to delete 2 compute instance(s)" in task.msg
    assert "sd-alice, sd-bob" in task.msg and "fleet_roster_allow_delete=true" in task.msg
    assert arm.state.writes == []
    assert _state(arm, "sd-alice") == "Running"


def test_absent_with_the_safety_switch_deletes_only_the_roster(arm, fleet):
    for name in ("sd-alice", "sd-bob", "other-class"):
        arm.add_instance(SUB, RG, WS, name)
    result, task = fleet(
        [{"name": "sd-alice"}, {"name": "sd-bob"}], state="absent", fleet_roster_allow_delete=True
    )
    assert result.ok, result.explain()
    assert task.changed
    assert sorted(w["name"] for w in arm.state.writes if w["method"] == "DELETE") == [
        "sd-alice",
        "sd-bob",
    ]
    assert sorted(arm.state.workspaces[(SUB, RG, WS)]) == ["other-class"]


def test_one_failing_instance_is_named_and_the_others_are_created(arm, fleet):
    arm.state.taken_names.add("sd-bob")
    roster = [{"name": "sd-alice"}, {"name": "sd-bob"}, {"name": "sd-carol"}]
    result, task = fleet(roster)
    assert not result.ok
    assert set(task.res["failed_instances"]) == {"sd-bob"}
    assert "1 of 3 instance(s) failed (sd-bob)" in task.msg
    assert "already taken" in task.res["failed_instances"]["sd-bob"]
    assert _state(arm, "sd-alice") == _state(arm, "sd-carol") == "Running"
    assert task.res["instances"]["sd-bob"]["changed"] is False


def test_throttling_is_honoured_with_retry_after(arm, fleet):
    arm.state.inject.append(
        Injected(429, "TooManyRequests", "Slow down", "GET", "sd-alice", {"Retry-After": "2"})
    )
    arm.add_instance(SUB, RG, WS, "sd-alice")
    result, _ = fleet([{"name": "sd-alice"}])
    assert result.ok, result.explain()
    gets = [e["time"] for e in arm.state.log if e["name"] == "sd-alice" and e["method"] == "GET"]
    assert len(gets) == 2
    assert gets[1] - gets[0] >= 2.0


def test_refused_sign_in_says_how_to_log_in_and_writes_nothing(arm, fleet):
    result, task = fleet([{"name": "sd-alice"}], fleet_azureml_access_token="expired-token")
    assert not result.ok
    assert "Azure refused the sign-in" in task.msg and "az login" in task.msg
    assert "expired-token" not in result.stdout
    assert arm.state.writes == []
