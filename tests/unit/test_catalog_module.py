"""model_catalog (an in-process action) and gpu_facts (a module) through ansible-playbook -vvv
on localhost: header values stay masked."""

from __future__ import annotations

import json

import pytest

from tests.harness.playbook import run_local_playbook, run_task

SECRET = "mirror-bearer-secret-b1946ac92492d2347c62"
ENTRY = {
    "source": "url",
    "url": "https://mirror.example/loras/style.safetensors",
    "kind": "lora",
    "headers": {"Authorization": f"Bearer {SECRET}", "X-Org": "lab-team-blue"},
}


def run_catalog(tmp_path, catalog):
    task = {"name": "Check the catalog", "model_catalog": {"catalog": catalog, "bundles": ["sd15"]}}
    return run_task(tmp_path, task)


def test_header_values_are_masked_in_the_result(tmp_path):
    output, result = run_catalog(tmp_path, [ENTRY])
    assert "models/Lora/style.safetensors" in output  # the result is shown at -vvv
    assert SECRET not in output
    assert "lab-team-blue" not in output
    assert SECRET not in json.dumps(result)
    [_, entry] = result["entries"]
    assert entry["destination"] == "models/Lora/style.safetensors"
    assert set(entry["headers"]) == {"Authorization", "X-Org"}
    assert "Bearer" not in entry["headers"]["Authorization"]


def test_header_values_are_masked_when_the_catalog_is_refused(tmp_path):
    output, result = run_catalog(tmp_path, [dict(ENTRY, colour="red")])
    assert result["failed"] is True
    assert "unknown key 'colour'" in result["msg"]
    assert SECRET not in output


def test_gpu_facts_masks_the_header_values_of_its_catalog(tmp_path):
    """The preflight's VRAM check takes the whole catalog (headers and all)."""
    task = {"name": "Read the GPUs", "gpu_facts": {"model_catalog": [ENTRY]}}
    output, result = run_task(tmp_path, task)
    assert "invocation" in output  # really at -vvv
    assert SECRET not in output
    assert "lab-team-blue" not in output
    assert SECRET not in json.dumps(result)
    assert "X-Org: VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # in the invocation, masked


MAPPING = {"flux_vae": {"source": "huggingface", "repo": "a/b", "file": "ae.safetensors"}}


def test_a_catalog_written_as_a_mapping_fails_saying_what_a_catalog_looks_like(tmp_path):
    output, result = run_catalog(tmp_path, {**MAPPING, "mirror": ENTRY})
    assert SECRET not in output  # its header values are masked all the same
    assert result["failed"] is True
    assert "models_catalog must be a list of entries, one per file, got a mapping" in result["msg"]
    assert "for example: models_catalog: [{source: huggingface" in result["msg"]


def test_gpu_facts_refuses_a_catalog_written_as_a_mapping_saying_what_it_looks_like(tmp_path):
    task = {"name": "Read the GPUs", "gpu_facts": {"model_catalog": MAPPING}}
    _, result = run_task(tmp_path, task)
    assert result["failed"] is True
    assert result["msg"].startswith(
        "Cannot check the GPU memory for the catalog: models_catalog must be a list of entries"
    )


@pytest.mark.parametrize(
    ("role", "variable", "task"),
    [
        ("preflight", "preflight_model_catalog", "Read the GPUs"),
        ("models", "models_catalog", "Check the model catalog"),
    ],
)
def test_a_role_given_a_catalog_written_as_a_mapping_says_what_a_catalog_looks_like(
    tmp_path, role, variable, task
):
    """The role's own argument check lets the shape through to the catalog check, whose
    message shows what a catalog looks like (Ansible's list type error named no fix)."""
    play = {"hosts": "localhost", "gather_facts": False, "roles": [role]}
    done = run_local_playbook(tmp_path, [{**play, "vars": {variable: MAPPING}}])
    [failed] = [t for t in done.tasks if t.status == "failed"]
    assert failed.task.startswith(task)
    assert "models_catalog must be a list of entries, one per file" in failed.res["msg"]
