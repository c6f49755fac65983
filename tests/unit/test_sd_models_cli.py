"""The sd-models tool as an operator runs it: output, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from lab.paths import REPO_ROOT
from tests.fixtures import models as m

SD_MODELS = str(REPO_ROOT / "bin" / "sd-models")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SD_MODELS, *args], capture_output=True, text=True, check=False
    )


def test_inspect_json_spells_the_fields_exactly(tmp_path):
    m.write_model(tmp_path / "ae.safetensors", m.flux_vae())
    result = run("inspect", "--json", str(tmp_path / "ae.safetensors"))
    assert result.returncode == 0
    [item] = json.loads(result.stdout)
    assert {k: item[k] for k in ("format", "role", "family", "integrity")} == {
        "format": "safetensors",
        "role": "vae",
        "family": "unknown",
        "integrity": "ok",
    }
    assert item["path"] == str(tmp_path / "ae.safetensors")
    assert item["details"]["latent_channels"] == 16


def test_inspect_jsonl_prints_one_object_per_line(tmp_path):
    m.write_model(tmp_path / "a.safetensors", m.kohya_lora("sd1"))
    m.write_model(tmp_path / "b.safetensors", m.sd_vae())
    result = run("inspect", "--jsonl", str(tmp_path))
    assert [json.loads(line)["role"] for line in result.stdout.splitlines()] == ["lora", "vae"]


def test_inspect_human_output_names_role_family_and_integrity(tmp_path):
    m.write_model(tmp_path / "cut.safetensors", m.sd_vae(), missing_bytes=100)
    result = run("inspect", str(tmp_path / "cut.safetensors"))
    assert result.returncode == 1
    assert "safetensors vae unknown (latent_channels=4" in result.stdout
    assert "100 bytes missing (truncated download)" in result.stdout


def test_inspect_missing_path_is_a_usage_error(tmp_path):
    result = run("inspect", str(tmp_path / "nope.safetensors"))
    assert result.returncode == 2
    assert "no such file or directory" in result.stderr


def test_check_compatible_tree_exits_0(tmp_path):
    (tmp_path / "models/Stable-diffusion").mkdir(parents=True)
    m.write_model(tmp_path / "models/Stable-diffusion/v1-5.safetensors", m.sd1_checkpoint())
    result = run("check", str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "1 model file(s)" in result.stdout and "compatible" in result.stdout


def test_check_findings_exit_1_with_evidence_and_action(tmp_path):
    for folder in ("Stable-diffusion", "Lora"):
        (tmp_path / "models" / folder).mkdir(parents=True)
    m.write_model(tmp_path / "models/Stable-diffusion/xl.safetensors", m.sdxl_checkpoint())
    m.write_model(tmp_path / "models/Lora/sd15.safetensors", m.kohya_lora("sd1"))
    result = run("check", "--json", str(tmp_path / "models"))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["compatible"] is False
    [finding] = report["findings"]
    assert finding["evidence"] == "context_dim=768"
    assert finding["action"]


def test_check_on_a_folder_that_is_no_models_tree_is_a_usage_error(tmp_path):
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    assert "none of Forge's model folders" in result.stderr


def test_check_without_arguments_is_a_usage_error():
    assert run("check").returncode == 2


def test_inspect_reports_the_other_paths_when_one_is_missing(tmp_path):
    m.write_model(tmp_path / "ae.safetensors", m.flux_vae())
    result = run("inspect", "--json", str(tmp_path / "nope.safetensors"), str(tmp_path))
    assert result.returncode == 2
    assert [item["role"] for item in json.loads(result.stdout)] == ["vae"]
    assert f"no such file or directory: {tmp_path / 'nope.safetensors'}" in result.stderr


def test_check_json_names_every_finding_with_evidence_and_action(tmp_path):
    (tmp_path / "models/Stable-diffusion").mkdir(parents=True)
    (tmp_path / "models/Lora").mkdir()
    m.write_model(tmp_path / "models/Stable-diffusion/xl.safetensors", m.sdxl_checkpoint())
    m.write_model(tmp_path / "models/Lora/sd15.safetensors", m.kohya_lora("sd1"))
    (tmp_path / "models/Stable-diffusion/empty.safetensors").write_bytes(b"")
    result = run("check", "--json", str(tmp_path / "models"))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["compatible"] is False
    assert sorted(f["code"] for f in report["findings"]) == ["integrity", "no_matching_model"]
    assert all(f["paths"] and f["evidence"] and f["action"] for f in report["findings"])


def test_sd_models_runs_through_a_symlink_on_path(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sd-models").symlink_to(SD_MODELS)
    m.write_model(tmp_path / "ae.safetensors", m.flux_vae())
    result = subprocess.run(
        [str(tmp_path / "bin" / "sd-models"), "inspect", str(tmp_path / "ae.safetensors")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "safetensors vae unknown" in result.stdout
