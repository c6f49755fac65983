"""Sets of model files: every finding at once, each with evidence and what to do."""

from __future__ import annotations

import pickle

import pytest

from forge_fleet.model_compat import NotAModelsTree, check_set, check_tree
from forge_fleet.model_inspect import inspect_file
from tests.fixtures import models as m

FOLDERS = {
    "checkpoint": "models/Stable-diffusion",
    "vae": "models/VAE",
    "text_encoder": "models/text_encoder",
    "lora": "models/Lora",
    "embedding": "embeddings",
}


def forge_tree(root, files: dict[str, tuple[str, dict]]):
    """files: name -> (folder kind, tensors); returns the Forge checkout path."""
    for name, (kind, tensors) in files.items():
        folder = root / FOLDERS[kind]
        folder.mkdir(parents=True, exist_ok=True)
        m.write_model(folder / name, tensors)
    return root


def codes(findings):
    return sorted(f["code"] for f in findings)


def test_flux_dev_lora_on_a_schnell_checkpoint_is_refused(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "flux1-schnell.safetensors": ("checkpoint", m.flux_schnell_checkpoint()),
            "style.safetensors": ("lora", m.kohya_lora("flux", guidance=True)),
        },
    )
    _, findings = check_tree(str(root))
    [finding] = findings
    assert finding["code"] == "no_matching_model"
    assert finding["paths"] == [str(root / "models/Lora/style.safetensors")]
    assert "LoRA for flux_dev does not fit any model present" in finding["message"]
    assert "flux1-schnell.safetensors (flux_schnell)" in finding["message"]
    assert "lora_unet_guidance_in_in_layer" in finding["evidence"]
    assert "flux_schnell" in finding["action"]


def test_declared_dev_lora_on_schnell_is_refused_by_metadata(tmp_path):
    root = forge_tree(tmp_path, {"s.safetensors": ("checkpoint", m.flux_schnell_checkpoint())})
    (root / "models/Lora").mkdir()
    m.write_model(
        root / "models/Lora/dev.safetensors",
        m.kohya_lora("flux"),
        {"modelspec.architecture": "flux-1-dev/lora"},
    )
    _, findings = check_tree(str(root))
    assert codes(findings) == ["no_matching_model"]
    assert findings[0]["evidence"] == "metadata modelspec.architecture=flux-1-dev/lora"


def test_undecided_flux_lora_on_schnell_is_accepted(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "s.safetensors": ("checkpoint", m.flux_schnell_checkpoint()),
            "l.safetensors": ("lora", m.peft_lora("flux")),
        },
    )
    assert check_tree(str(root))[1] == []


def test_sd15_lora_on_sdxl_is_refused_with_the_context_width(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "sd_xl_base_1.0.safetensors": ("checkpoint", m.sdxl_checkpoint()),
            "detail.safetensors": ("lora", m.kohya_lora("sd1")),
        },
    )
    [finding] = check_tree(str(root))[1]
    assert "LoRA for sd1 does not fit any model present" in finding["message"]
    assert finding["evidence"] == "context_dim=768"


def test_flux_diffusion_model_without_vae_and_text_encoders_lists_what_is_missing(tmp_path):
    root = forge_tree(
        tmp_path, {"flux1-dev-fp8.safetensors": ("checkpoint", m.flux_dev_diffusion_model())}
    )
    [finding] = check_tree(str(root))[1]
    assert finding["code"] == "missing_parts"
    assert finding["message"].endswith("flux_dev diffusion model without vae, clip_l, t5xxl")
    assert "ae.safetensors" in finding["action"]
    assert "t5xxl" in finding["action"]


def test_flux_diffusion_model_with_its_parts_is_compatible(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "flux1-dev-fp8.safetensors": ("checkpoint", m.flux_dev_diffusion_model()),
            "ae.safetensors": ("vae", m.flux_vae()),
            "clip_l.safetensors": ("text_encoder", m.clip_l()),
            "t5xxl_fp8_e4m3fn.safetensors": ("text_encoder", m.t5xxl()),
        },
    )
    assert check_tree(str(root / "models"))[1] == []


def test_all_in_one_flux_checkpoint_needs_nothing_else(tmp_path):
    root = forge_tree(tmp_path, {"flux1-dev.safetensors": ("checkpoint", m.flux_dev_checkpoint())})
    assert check_tree(str(root))[1] == []


def test_vae_with_the_wrong_latent_channels_is_refused(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "v1-5.safetensors": ("checkpoint", m.sd1_checkpoint()),
            "ae.safetensors": ("vae", m.flux_vae()),
        },
    )
    [finding] = check_tree(str(root))[1]
    assert "VAE for sd3 or flux_dev or flux_schnell does not fit" in finding["message"]
    assert finding["evidence"] == "latent_channels=16"


def test_file_in_the_wrong_folder_is_a_kind_mismatch(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "v1-5.safetensors": ("checkpoint", m.sd1_checkpoint()),
            "oops.safetensors": ("vae", m.kohya_lora("sd1")),
        },
    )
    [finding] = check_tree(str(root))[1]
    assert finding["code"] == "kind_mismatch"
    assert "the folder models/VAE says vae, the file is a lora" in finding["message"]


def test_catalog_declarations_are_checked_against_the_weights(tmp_path):
    ckpt = m.write_model(tmp_path / "xl.safetensors", m.sdxl_checkpoint())
    lora = m.write_model(tmp_path / "l.safetensors", m.kohya_lora("sdxl"))
    items = [inspect_file(str(ckpt)), inspect_file(str(lora))]
    declared = {str(lora): {"kind": "lora", "family": "sd1", "source": "the catalog"}}
    [finding] = check_set(items, declared)
    assert finding["code"] == "family_mismatch"
    assert "the catalog says sd1, the file is for sdxl" in finding["message"]


def test_integrity_and_pickle_findings_fail_the_set_and_all_are_reported(tmp_path):
    root = forge_tree(tmp_path, {"v1-5.safetensors": ("checkpoint", m.sd1_checkpoint())})
    m.write_model(
        root / "models/Stable-diffusion/cut.safetensors", m.sd1_checkpoint(), missing_bytes=10
    )
    (root / "models/Stable-diffusion/old.ckpt").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    (root / "models/Lora").mkdir()
    m.write_model(root / "models/Lora/xl.safetensors", m.kohya_lora("sdxl"))
    _, findings = check_tree(str(root))
    assert codes(findings) == ["integrity", "no_matching_model", "pickle"]


def test_clean_pickle_is_accepted_when_allowed(tmp_path):
    root = forge_tree(tmp_path, {"v1-5.safetensors": ("checkpoint", m.sd1_checkpoint())})
    (root / "models/Stable-diffusion/old.ckpt").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert check_tree(str(root), allow_pickle=True)[1] == []


def test_lora_without_any_checkpoint_says_so(tmp_path):
    root = forge_tree(tmp_path, {"l.safetensors": ("lora", m.kohya_lora("sd1"))})
    [finding] = check_tree(str(root))[1]
    assert "but no checkpoint is present" in finding["message"]


def test_a_folder_without_forge_model_folders_is_refused(tmp_path):
    with pytest.raises(NotAModelsTree, match="none of Forge's model folders"):
        check_tree(str(tmp_path))


def test_catalog_family_spelled_as_a_civitai_base_model_is_understood(tmp_path):
    ckpt = m.write_model(tmp_path / "xl.safetensors", m.sdxl_checkpoint())
    lora = m.write_model(tmp_path / "l.safetensors", m.kohya_lora("sdxl"))
    items = [inspect_file(str(ckpt)), inspect_file(str(lora))]
    declared = {str(lora): {"kind": "lora", "family": "Pony", "source": "the catalog"}}
    assert check_set(items, declared) == []


def test_catalog_civitai_base_model_that_contradicts_the_weights_is_named(tmp_path):
    ckpt = m.write_model(tmp_path / "xl.safetensors", m.sdxl_checkpoint())
    lora = m.write_model(tmp_path / "l.safetensors", m.kohya_lora("sd1"))
    items = [inspect_file(str(ckpt)), inspect_file(str(lora))]
    declared = {str(lora): {"kind": "lora", "family": "SDXL 1.0", "source": "the catalog"}}
    found = {f["code"]: f for f in check_set(items, declared)}
    assert sorted(found) == ["family_mismatch", "no_matching_model"]
    assert (
        "the catalog says SDXL 1.0 (sdxl), the file is for sd1"
        in (found["family_mismatch"]["message"])
    )


def test_checkpoint_that_bundles_only_the_vae_needs_its_text_encoders(tmp_path):
    tensors = {
        k: v for k, v in m.flux_schnell_checkpoint().items() if not k.startswith("text_encoders.")
    }
    root = forge_tree(tmp_path, {"flux-vae-only.safetensors": ("checkpoint", tensors)})
    [finding] = check_tree(str(root))[1]
    assert finding["code"] == "missing_parts"
    assert finding["message"] == (
        "flux-vae-only.safetensors: flux_schnell checkpoint without clip_l, t5xxl"
    )
    assert finding["evidence"] == "the file bundles vae; no file present provides clip_l, t5xxl"


def test_sd3_diffusion_model_is_satisfied_by_standalone_vae_and_clips(tmp_path):
    diffusion = m.strip(m.listing("sd3-comfyui", "diffuser"), "model.diffusion_model.")
    vae = m.strip(m.listing("sd3-comfyui", "vae"), "first_stage_model.")
    root = forge_tree(
        tmp_path,
        {
            "sd3.5.safetensors": ("checkpoint", diffusion),
            "sd3-vae.safetensors": ("vae", vae),
            "clip_l.safetensors": ("text_encoder", m.clip_l()),
            "clip_g.safetensors": ("text_encoder", m.clip_g()),
        },
    )
    assert check_tree(str(root))[1] == []


def test_sd2_lora_on_sd1_checkpoint_is_refused(tmp_path):
    root = forge_tree(
        tmp_path,
        {
            "v1-5.safetensors": ("checkpoint", m.sd1_checkpoint()),
            "sd2-style.safetensors": ("lora", m.peft_lora("sd2")),
        },
    )
    [finding] = check_tree(str(root))[1]
    assert finding["code"] == "no_matching_model"
    assert finding["evidence"] == "context_dim=1024"


def test_flux_gguf_without_its_parts_lists_what_is_missing(tmp_path):
    folder = tmp_path / "models/Stable-diffusion"
    folder.mkdir(parents=True)
    m.write_gguf(folder / "flux1-schnell-Q8_0.gguf", m.flux_schnell_diffusion_model())
    [finding] = check_tree(str(tmp_path))[1]
    assert finding["message"] == (
        "flux1-schnell-Q8_0.gguf: flux_schnell diffusion model without vae, clip_l, t5xxl"
    )
