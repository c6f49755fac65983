"""Role, family and details of model files, read from headers built from real layouts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge_fleet.model_inspect import (
    civitai_base_model_family,
    family_from_declared,
    inspect_file,
    inspect_paths,
)
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
        (lambda: m.peft_lora("sd2"), "peft", "sd2"),
        (lambda: m.old_diffusers_lora("sd1"), "peft", "sd1"),
        (lambda: m.old_diffusers_lora("sdxl"), "peft", "sdxl"),
        (lambda: m.dora_lora("sd1"), "kohya+dora", "sd1"),
        (lambda: m.dora_lora("sdxl"), "kohya+dora", "sdxl"),
        (lambda: m.comfy_flux_lora(guidance=True), "peft", "flux_dev"),
        (lambda: m.sd3_lora("kohya"), "kohya", "sd3"),
        (lambda: m.sd3_lora("peft"), "peft", "sd3"),
    ],
)
def test_lora_format_and_family_come_from_names_and_shapes(tmp_path, layout, fmt, family):
    result = inspect(tmp_path, layout())
    assert result["role"] == "lora"
    assert result["details"]["lora_format"] == fmt
    assert result["family"] == family


@pytest.mark.parametrize(
    "layout",
    [
        lambda: m.kohya_lora("flux"),
        lambda: m.peft_lora("flux"),
        m.xlabs_flux_lora,
        m.comfy_flux_lora,
    ],
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
    result = inspect(tmp_path, m.peft_lora("flux"), declared="Flux.1 S")
    assert result["family"] == "flux_schnell"
    assert result["details"]["declared"] == "Flux.1 S"


def test_metadata_that_contradicts_the_weights_is_noted(tmp_path):
    result = inspect(tmp_path, m.kohya_lora("sd1"), {"ss_base_model_version": "sdxl_base_v1-0"})
    assert result["family"] == "sd1"
    assert result["details"]["declared_family"] == "sdxl"
    assert result["details"]["notes"] == [
        "metadata ss_base_model_version=sdxl_base_v1-0 says sdxl but the weights say sd1"
    ]


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


def test_lokr_lora_family_comes_from_its_kronecker_factors(tmp_path):
    result = inspect(tmp_path, m.lokr_lora())
    assert (result["role"], result["family"]) == ("lora", "sd1")
    assert result["details"]["lora_format"] == "lycoris_lokr"
    assert result["details"]["context_dim"] == 8 * 96


def test_lokr_lora_without_cross_attention_is_a_lora_of_unknown_family(tmp_path):
    module = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k"
    tensors = {f"{module}.lokr_w1": ([8, 8], "F16"), f"{module}.lokr_w2": ([80, 80], "F16")}
    result = inspect(tmp_path, tensors)
    assert (result["role"], result["family"]) == ("lora", "unknown")
    assert result["details"]["fits"] == []


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


@pytest.mark.parametrize(
    ("layout", "family"),
    [
        (lambda: m.flux_diffusers_transformer(dev=True), "flux_dev"),
        (lambda: m.flux_diffusers_transformer(dev=False), "flux_schnell"),
        (m.sdxl_diffusers_unet, "sdxl"),
    ],
)
def test_diffusers_layout_models_are_diffusion_models(tmp_path, layout, family):
    result = inspect(tmp_path, layout())
    assert (result["role"], result["family"]) == ("diffusion_model", family)
    assert result["details"]["layout"] == "diffusers"


def test_sd1_unet_with_its_prefix_and_nothing_else_is_a_diffusion_model(tmp_path):
    result = inspect(tmp_path, m.listing("sd1-ldm", "diffuser"))
    assert (result["role"], result["family"], result["details"]["bundles"]) == (
        "diffusion_model",
        "sd1",
        [],
    )


def test_v_prediction_markers_are_reported(tmp_path):
    result = inspect(tmp_path, m.vpred_sdxl_checkpoint())
    assert (result["family"], result["details"]["prediction"]) == ("sdxl", "v")


def test_v_prediction_from_kohya_metadata_is_reported_with_its_evidence(tmp_path):
    result = inspect(tmp_path, m.kohya_lora("sd2"), {"ss_base_model_version": "sd_v2_v"})
    assert result["details"]["prediction"] == "v"
    assert result["details"]["prediction_evidence"] == "ss_base_model_version=sd_v2_v"


def test_sdxl_controlnet_in_diffusers_layout_is_recognised(tmp_path):
    result = inspect(tmp_path, m.sdxl_controlnet())
    assert (result["role"], result["family"]) == ("controlnet", "sdxl")


def test_sd2_embedding_is_recognised_by_its_width(tmp_path):
    result = inspect(tmp_path, m.embedding("sd2"))
    assert (result["role"], result["family"]) == ("embedding", "sd2")


@pytest.mark.parametrize(
    ("declared", "family"),
    [
        ("flux_dev", "flux_dev"),
        ("SDXL 1.0", "sdxl"),
        ("Pony", "sdxl"),
        ("flux-1-schnell/lora", "flux_schnell"),
        ("stable-diffusion-v1", "sd1"),
        ("sd_v2", "sd2"),
        ("AuraFlow", "unknown"),
        ("", "unknown"),
    ],
)
def test_declared_base_models_map_to_families(declared, family):
    assert family_from_declared(declared) == family


def test_flux_gguf_is_a_diffusion_model_with_its_quantization(tmp_path):
    path = m.write_gguf(tmp_path / "flux1-dev-Q8_0.gguf", m.flux_dev_diffusion_model())
    result = inspect_file(str(path))
    assert (result["format"], result["role"], result["family"]) == (
        "gguf",
        "diffusion_model",
        "flux_dev",
    )
    assert result["integrity"] == "ok"
    assert result["details"]["quantization"] == "Q8_0"
    assert result["details"]["gguf_architecture"] == "flux"


def test_truncated_gguf_is_an_integrity_finding(tmp_path):
    path = m.write_gguf(tmp_path / "cut.gguf", m.flux_schnell_diffusion_model(), missing_bytes=1000)
    result = inspect_file(str(path))
    assert result["family"] == "flux_schnell"
    assert result["integrity"].endswith("1000 bytes missing (truncated download)")


def test_gguf_with_a_damaged_header_is_a_finding(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    result = inspect_file(str(path))
    assert result["integrity"].startswith("unreadable GGUF header: ")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([b"GGUF\x03\x00\x00\x00", b"GGUF\x02\x00\x00\x00", b"\x80\x04", b"PK\x03\x04"]),
    st.binary(max_size=200),
    st.sampled_from(["m.gguf", "m.ckpt", "m.safetensors"]),
)
def test_fuzzed_gguf_and_pickle_files_never_raise(tmp_path_factory, magic, body, name):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(magic + body)
    result = inspect_file(str(path))
    assert isinstance(result["integrity"], str)
    assert result["format"] in ("safetensors", "pickle", "gguf", "unknown")
