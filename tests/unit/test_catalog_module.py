"""model_catalog (an in-process action) and gpu_facts (a module) through ansible-playbook -vvv
on localhost: header values stay masked."""

from __future__ import annotations

import json

from tests.harness.playbook import run_task

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
