"""Role, family and details of model files, read from headers built from real layouts."""

from __future__ import annotations

import pytest

from forge_fleet.model_inspect import civitai_base_model_family, inspect_file, inspect_paths
from tests.fixtures import models as m


def inspect(tmp_path, tensors, metadata=None, name="model.safetensors", **kwargs):
    path = m.write_model(tmp_path / name, tensors, metadata)
    return inspect_file(str(path), **kwargs)


@pytest.mark.parametrize(
    ("layout", "role", "family", "bundles"),
    [
        (m.sd1_checkpoint, "checkpoint", "sd1", ["vae", "clip_l"]),
        (m.sd2_checkpoint, "checkpoint", "sd2", ["vae", "clip_h"]),
        (m.sdxl_checkpoint, "checkpoint", "sdxl", ["vae", "clip_l", "clip_g"]),
        (m.sdxl_refiner_checkpoint, "checkpoint", "sdxl_refiner", ["vae", "clip_g"]),
        (m.sd3_checkpoint, "checkpoint", "sd3", ["vae", "clip_l", "clip_g", "t5xxl"]),
        (m.flux_dev_checkpoint, "checkpoint", "flux_dev", ["vae", "clip_l", "t5xxl"]),
        (m.flux_schnell_checkpoint, "checkpoint", "flux_schnell", ["vae", "clip_l", "t5xxl"]),
        (m.flux_dev_diffusion_model, "diffusion_model", "flux_dev", []),
        (m.flux_schnell_diffusion_model, "diffusion_model", "flux_schnell", []),
    ],
)
def test_models_are_recognised_with_the_parts_they_bundle(tmp_path, layout, role, family, bundles):
    result = inspect(tmp_path, layout())
    assert (result["format"], result["role"], result["family"]) == ("safetensors", role, family)
    assert result["details"]["bundles"] == bundles
    assert result["integrity"] == "ok"


def test_unet_family_comes_from_the_cross_attention_width(tmp_path):
    result = inspect(tmp_path, m.sdxl_checkpoint())
    assert result["details"]["context_dim"] == 2048
    assert result["details"]["adm_in_channels"] == 2816


def test_flux_dev_is_told_from_schnell_by_guidance_in(tmp_path):
    dev = inspect(tmp_path, m.flux_dev_diffusion_model(), name="dev.safetensors")
    schnell = inspect(tmp_path, m.flux_schnell_diffusion_model(), name="schnell.safetensors")
    assert "guidance_in.in_layer.weight" in dev["details"]["evidence"]
    assert "no guidance_in" in schnell["details"]["evidence"]


def test_sd3_variant_is_reported(tmp_path):
    result = inspect(tmp_path, m.sd3_checkpoint())
    assert result["details"]["variant"] == "3-medium"
    assert result["details"]["depth"] == 24


@pytest.mark.parametrize(
    ("layout", "channels", "fits"),
    [
        (m.sd_vae, 4, ["sd1", "sd2", "sdxl", "sdxl_refiner"]),
        (m.flux_vae, 16, ["sd3", "flux_dev", "flux_schnell"]),
    ],
)
def test_vae_latent_channels_decide_what_it_fits(tmp_path, layout, channels, fits):
    result = inspect(tmp_path, layout())
    assert result["role"] == "vae"
    assert result["details"]["latent_channels"] == channels
    assert result["details"]["fits"] == fits


@pytest.mark.parametrize(
    ("layout", "kind"), [(m.clip_l, "clip_l"), (m.clip_g, "clip_g"), (m.t5xxl, "t5xxl")]
)
def test_text_encoders_are_named(tmp_path, layout, kind):
    result = inspect(tmp_path, layout())
    assert result["role"] == "text_encoder"
    assert result["details"]["text_encoder"] == kind


@pytest.mark.parametrize(
    ("layout", "fmt", "family"),
    [
        (lambda: m.kohya_lora("sd1"), "kohya", "sd1"),
        (lambda: m.kohya_lora("sd2"), "kohya", "sd2"),
        (lambda: m.kohya_lora("sdxl"), "kohya", "sdxl"),
        (lambda: m.kohya_lora("flux", guidance=True), "kohya", "flux_dev"),
        (lambda: m.peft_lora("sd1"), "peft", "sd1"),
        (lambda: m.peft_lora("sdxl"), "peft", "sdxl"),
        (lambda: m.loha_lora("sd1"), "lycoris_loha", "sd1"),
        (lambda: m.loha_lora("sd2"), "lycoris_loha", "sd2"),
    ],
)
def test_lora_format_and_family_come_from_names_and_shapes(tmp_path, layout, fmt, family):
    result = inspect(tmp_path, layout())
    assert result["role"] == "lora"
    assert result["details"]["lora_format"] == fmt
    assert result["family"] == family


@pytest.mark.parametrize(
    "layout", [lambda: m.kohya_lora("flux"), lambda: m.peft_lora("flux"), m.xlabs_flux_lora]
)
def test_flux_lora_without_guidance_or_metadata_fits_dev_and_schnell(tmp_path, layout):
    result = inspect(tmp_path, layout())
    assert result["family"] == "unknown"
    assert result["details"]["architecture"] == "flux"
    assert result["details"]["fits"] == ["flux_dev", "flux_schnell"]


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"modelspec.architecture": "flux-1-schnell/lora"}, "flux_schnell"),
        ({"modelspec.architecture": "flux-1-dev/lora"}, "flux_dev"),
        (
            {"ss_base_model_version": "flux1", "ss_sd_model_name": "flux1-schnell.safetensors"},
            "flux_schnell",
        ),
    ],
)
def test_metadata_decides_dev_or_schnell_for_a_flux_lora(tmp_path, metadata, family):
    result = inspect(tmp_path, m.kohya_lora("flux"), metadata)
    assert result["family"] == family
    assert result["details"]["fits"] == [family]
    assert result["details"]["metadata"]


def test_civitai_base_model_decides_dev_or_schnell(tmp_path):
    result = inspect(tmp_path, m.peft_lora("flux"), civitai_base_model="Flux.1 S")
    assert result["family"] == "flux_schnell"
    assert result["details"]["civitai_base_model"] == "Flux.1 S"


def test_metadata_that_contradicts_the_weights_is_noted(tmp_path):
    result = inspect(tmp_path, m.kohya_lora("sd1"), {"ss_base_model_version": "sdxl_base_v1-0"})
    assert result["family"] == "sd1"
    assert result["details"]["declared_family"] == "sdxl"
    assert "metadata says sdxl" in result["details"]["notes"][0]
    assert "weights say sd1" in result["details"]["notes"][0]


@pytest.mark.parametrize(
    ("base_model", "family"),
    [
        ("SD 1.5", "sd1"),
        ("SD 2.1", "sd2"),
        ("SDXL 1.0", "sdxl"),
        ("Pony", "sdxl"),
        ("Illustrious", "sdxl"),
        ("NoobAI", "sdxl"),
        ("SD 3.5", "sd3"),
        ("Flux.1 D", "flux_dev"),
        ("Flux.1 S", "flux_schnell"),
        ("Hunyuan Video", "unknown"),
    ],
)
def test_civitai_base_models_map_to_families(base_model, family):
    assert civitai_base_model_family(base_model) == family


def test_lokr_lora_without_evidence_is_a_lora_of_unknown_family(tmp_path):
    result = inspect(tmp_path, m.lokr_lora())
    assert (result["role"], result["family"]) == ("lora", "unknown")
    assert result["details"]["lora_format"] == "lycoris_lokr"


@pytest.mark.parametrize(("family", "expected"), [("sd1", "sd1"), ("sdxl", "sdxl")])
def test_embeddings_are_recognised(tmp_path, family, expected):
    result = inspect(tmp_path, m.embedding(family))
    assert (result["role"], result["family"]) == ("embedding", expected)


def test_controlnet_is_recognised(tmp_path):
    result = inspect(tmp_path, m.sd1_controlnet())
    assert (result["role"], result["family"]) == ("controlnet", "sd1")


def test_gguf_is_reported_as_gguf(tmp_path):
    path = tmp_path / "flux-q8.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    assert inspect_file(str(path))["format"] == "gguf"


def test_directory_walk_reports_each_model_file_and_skips_others(tmp_path):
    (tmp_path / "Lora").mkdir()
    m.write_model(tmp_path / "Lora" / "a.safetensors", m.kohya_lora("sd1"))
    (tmp_path / "Lora" / "a.preview.png").write_bytes(b"\x89PNG")
    (tmp_path / "Lora" / "notes.txt").write_text("x")
    results = inspect_paths([str(tmp_path)])
    assert [r["path"] for r in results] == [str(tmp_path / "Lora" / "a.safetensors")]
