"""model_inspect and model_compat run for real through ansible-playbook on localhost."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from tests.fixtures import models as m
from tests.harness.playbook import run_playbook


def play(tmp_path: Path, tasks: list[dict], check: bool = False) -> tuple[int, list[dict]]:
    """Run tasks on localhost through ansible-runner; the exit code and each task's result."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    )
    inventory = tmp_path / "hosts"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    # ansible-playbook of the interpreter running the tests, whether or not its venv is active
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = run_playbook(str(playbook), inventory, check=check, envvars={"PATH": path})
    return result.rc, [{**t.res, "status": t.status} for t in result.tasks]


def test_model_inspect_reports_files_and_changes_nothing_in_check_mode(tmp_path):
    m.write_model(tmp_path / "ae.safetensors", m.flux_vae())
    m.write_model(tmp_path / "cut.safetensors", m.clip_l(), missing_bytes=5)
    rc, [result] = play(tmp_path, [{"model_inspect": {"paths": [str(tmp_path)]}}], check=True)
    assert rc == 0
    assert result["changed"] is False
    assert result["problems"] == 1
    assert [(f["role"], f["integrity"] == "ok") for f in result["files"]] == [
        ("vae", True),
        ("text_encoder", False),
    ]


def test_model_compat_fails_with_every_finding(tmp_path):
    for folder in ("Stable-diffusion", "Lora", "VAE"):
        (tmp_path / "models" / folder).mkdir(parents=True)
    m.write_model(
        tmp_path / "models/Stable-diffusion/schnell.safetensors", m.flux_schnell_diffusion_model()
    )
    m.write_model(tmp_path / "models/Lora/dev.safetensors", m.kohya_lora("flux", guidance=True))
    rc, [result] = play(tmp_path, [{"model_compat": {"forge_dir": str(tmp_path)}}])
    assert rc == 2
    assert result["status"] == "failed"
    assert sorted(f["code"] for f in result["findings"]) == ["missing_parts", "no_matching_model"]
    assert result["msg"].startswith("2 model problem(s): ")


def test_model_compat_returns_the_models_manifest_in_the_same_run(tmp_path):
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)
    m.write_model(tmp_path / "models/Stable-diffusion/xl.safetensors", m.sdxl_checkpoint())
    record = {"models/Stable-diffusion/xl.safetensors": {"fetched_from": "cache"}}
    (tmp_path / "models/.forge-fleet-manifest.json").write_text(json.dumps(record))
    task = {"model_compat": {"forge_dir": str(tmp_path), "manifest": True}}
    rc, [result] = play(tmp_path, [task], check=True)
    assert rc == 0
    assert result["manifest"] == record
    assert [f["path"].rsplit("/", 1)[-1] for f in result["files"]] == ["xl.safetensors"]


def test_model_compat_returns_an_empty_manifest_where_there_is_none(tmp_path):
    (tmp_path / "models" / "Lora").mkdir(parents=True)
    task = {"model_compat": {"forge_dir": str(tmp_path), "manifest": True}}
    rc, [result] = play(tmp_path, [task])
    assert (rc, result["manifest"]) == (0, {})


def test_model_compat_checks_catalog_declarations(tmp_path):
    ckpt = m.write_model(tmp_path / "xl.safetensors", m.sdxl_checkpoint())
    lora = m.write_model(tmp_path / "l.safetensors", m.kohya_lora("sdxl"))
    files = [
        {"path": str(ckpt), "kind": "checkpoint"},
        {"path": str(lora), "kind": "lora", "family": "sdxl"},
    ]
    rc, [result] = play(tmp_path, [{"model_compat": {"files": files}}])
    assert rc == 0
    assert result["findings"] == []
    assert [f["family"] for f in result["files"]] == ["sdxl", "sdxl"]


def test_model_inspect_lets_a_declared_base_model_decide_dev_or_schnell(tmp_path):
    lora = m.write_model(tmp_path / "style.safetensors", m.kohya_lora("flux"))
    task = {"model_inspect": {"paths": [str(lora)], "declared": "Flux.1 D"}}
    rc, [result] = play(tmp_path, [task])
    assert rc == 0
    [item] = result["files"]
    assert (item["role"], item["family"], item["details"]["declared"]) == (
        "lora",
        "flux_dev",
        "Flux.1 D",
    )


def test_model_compat_reads_a_catalog_family_spelled_as_a_civitai_base_model(tmp_path):
    ckpt = m.write_model(tmp_path / "xl.safetensors", m.sdxl_checkpoint())
    lora = m.write_model(tmp_path / "l.safetensors", m.kohya_lora("sd1"))
    files = [
        {"path": str(ckpt), "kind": "checkpoint"},
        {"path": str(lora), "kind": "lora", "family": "SDXL 1.0"},
    ]
    rc, [result] = play(tmp_path, [{"model_compat": {"files": files}}])
    assert rc == 2
    assert sorted(f["code"] for f in result["findings"]) == [
        "family_mismatch",
        "no_matching_model",
    ]
    assert "the catalog says SDXL 1.0 (sdxl), the file is for sd1" in result["msg"]


def _tree_with_a_stray_lora(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An SD 1.5 tree: the catalog's checkpoint and LoRA, and an SDXL LoRA nobody declared."""
    for folder in ("Stable-diffusion", "Lora"):
        (tmp_path / "models" / folder).mkdir(parents=True)
    ckpt = m.write_model(
        tmp_path / "models/Stable-diffusion/sd.safetensors", m.tiny_checkpoint("sd1")
    )
    lora = m.write_model(tmp_path / "models/Lora/detail.safetensors", m.kohya_lora("sd1"))
    stray = m.write_model(tmp_path / "models/Lora/xl-style.safetensors", m.kohya_lora("sdxl"))
    return ckpt, lora, stray


def test_model_compat_with_a_catalog_and_its_tree_fails_only_for_the_catalogs_files(tmp_path):
    ckpt, lora, stray = _tree_with_a_stray_lora(tmp_path)
    record = {"models/Lora/detail.safetensors": {"fetched_from": "origin"}}
    (tmp_path / "models/.forge-fleet-manifest.json").write_text(json.dumps(record))
    files = [
        {"path": str(ckpt), "kind": "checkpoint"},
        {"path": str(lora), "kind": "lora", "family": "SD 1.5"},
    ]
    task = {"model_compat": {"files": files, "forge_dir": str(tmp_path), "manifest": True}}
    rc, [result] = play(tmp_path, [task])
    assert rc == 0
    assert result["findings"] == []
    assert [f["path"] for f in result["files"]] == [str(ckpt), str(lora)]
    tree = result["tree"]
    assert tree["forge_dir"] == str(tmp_path)
    assert tree["manifest"] == record
    assert sorted(f["path"] for f in tree["files"]) == sorted(map(str, (ckpt, lora, stray)))
    assert [(f["code"], f["paths"]) for f in tree["findings"]] == [
        ("no_matching_model", [str(stray)])
    ]
    # the tree part is what forge_dir alone reports (the report stage's own check)
    rc_alone, [alone] = play(tmp_path, [{"model_compat": {"forge_dir": str(tmp_path)}}])
    assert rc_alone == 2
    assert alone["findings"] == tree["findings"]


def test_model_compat_with_a_catalog_and_its_tree_still_fails_for_a_catalog_file(tmp_path):
    ckpt, lora, _ = _tree_with_a_stray_lora(tmp_path)
    files = [
        {"path": str(ckpt), "kind": "checkpoint"},
        {"path": str(lora), "kind": "lora", "family": "SDXL 1.0"},
    ]
    task = {"model_compat": {"files": files, "forge_dir": str(tmp_path)}}
    rc, [result] = play(tmp_path, [task])
    assert rc == 2
    assert [f["code"] for f in result["findings"]] == ["family_mismatch"]
    assert "detail.safetensors: the catalog says SDXL 1.0 (sdxl)" in result["msg"]
    assert "xl-style" not in result["msg"]
    assert len(result["tree"]["findings"]) == 1


def test_model_compat_with_a_catalog_and_no_models_tree_checks_the_catalog(tmp_path):
    ckpt = m.write_model(tmp_path / "sd.safetensors", m.tiny_checkpoint("sd1"))
    task = {"model_compat": {"files": [{"path": str(ckpt)}], "forge_dir": str(tmp_path)}}
    rc, [result] = play(tmp_path, [task])
    assert rc == 0
    assert [f["family"] for f in result["files"]] == ["sd1"]
    assert "none of Forge's model folders" in result["tree"]["msg"]
