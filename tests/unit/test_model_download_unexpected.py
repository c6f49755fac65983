"""model_download when the engine meets something it did not expect: a failed task with a
message, never a raw traceback, and still no secret in the -vvv output."""

from __future__ import annotations

import json

from lab.tls import CA_CERT, issue_server_cert
from tests.doubles.model_hub import ModelHub
from tests.fixtures.credentials import KEY, TOKEN
from tests.fixtures.models import real_model
from tests.harness.playbook import run_task


def test_an_unexpected_error_fails_the_task_with_its_message_and_masks_the_key(tmp_path):
    cert, key = issue_server_cert(["127.0.0.1"], tmp_path / "tls")
    with ModelHub(tls=(str(cert), str(key))) as hub:
        hub.state.civitai_keys.add(KEY)
        version = hub.add_civitai_version(
            42, 4, real_model(tmp_path / "m", 3000), name="m.safetensors", restricted=True
        )
        # The API answering outside its contract: a size the engine cannot read as a number.
        version["files"][0]["sizeKB"] = "12.5 MB"
        task = {
            "name": "Run model_download against an API that broke its contract",
            "model_download": {
                "dest": str(tmp_path / "forge"),
                "catalog": [{"source": "civitai", "version_id": 42}],
                "huggingface_token": "{{ hf_token }}",
                "civitai_api_key": "{{ civitai_key }}",
                "civitai_endpoint": hub.api_url,
                "ca_file": str(CA_CERT),
            },
        }
        output, result = run_task(tmp_path, task, {"hf_token": TOKEN, "civitai_key": KEY})
    assert result["failed"] is True
    assert result["msg"].startswith("unexpected ValueError while handling the models")
    assert "12.5 MB" in result["msg"]
    assert "MODULE FAILURE" not in output
    assert "Traceback" not in output
    assert KEY not in output
    assert KEY not in json.dumps(result)
    assert TOKEN not in output
