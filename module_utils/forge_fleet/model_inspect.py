"""What a model file is, from its header alone: format, role, family, details, integrity.

``inspect_file(path)`` returns a plain dict (JSON-ready)::

    {"path", "size", "format": safetensors|pickle|gguf|unknown,
     "role": checkpoint|diffusion_model|vae|text_encoder|lora|embedding|controlnet|unknown,
     "family": sd1|sd2|sdxl|sdxl_refiner|sd3|flux_dev|flux_schnell|unknown,
     "integrity": "ok" | reason, "details": {...}}

``details["fits"]`` lists the families the file can serve (a 4-channel VAE fits SD1, SD2 and
SDXL; a Flux LoRA whose weights cannot tell Dev from Schnell fits both until metadata
decides). The compatibility rules (``model_compat``) work from ``fits``.
Facts behind the rules: docs/model-validation.md (what is read, and what each file says).
"""

from __future__ import annotations

import os
import re
from typing import Any

from .model_gguf import read_gguf
from .pickle_scan import scan_file
from .safetensors_header import Header, HeaderError, integrity, looks_like_safetensors, read_header
from .vocabulary import FAMILIES

FLUX = ("flux_dev", "flux_schnell")
LATENT4 = ("sd1", "sd2", "sdxl", "sdxl_refiner")
LATENT16 = ("sd3", "flux_dev", "flux_schnell")
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf", *PICKLE_EXTENSIONS)

# Context width of cross-attention (to_k in_features) per UNet family.
CONTEXT_DIM_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}

# kohya `ss_base_model_version`
KOHYA_BASE = {
    "sd_v1": "sd1",
    "sd_v1_v": "sd1",
    "sd_v2": "sd2",
    "sd_v2_v": "sd2",
    "sdxl_base_v1-0": "sdxl",
    "sdxl_refiner_v1-0": "sdxl_refiner",
    "medium": "sd3",
    "5-large": "sd3",
    "5-medium": "sd3",
    "sd3": "sd3",
}
# Stability ModelSpec `modelspec.architecture` (before any "/lora"-style suffix)
MODELSPEC_ARCH = {
    "stable-diffusion-v1": "sd1",
    "stable-diffusion-v2-512": "sd2",
    "stable-diffusion-v2-768-v": "sd2",
    "stable-diffusion-xl-v1-base": "sdxl",
    "stable-diffusion-xl-v1-refiner": "sdxl_refiner",
    "stable-diffusion-v3-medium": "sd3",
    "stable-diffusion-v3.5-medium": "sd3",
    "stable-diffusion-v3.5-large": "sd3",
    "flux-1-dev": "flux_dev",
    "flux-1-schnell": "flux_schnell",
}


def civitai_base_model_family(base_model: str) -> str:
    """Family for a CivitAI ``baseModel`` ("SD 1.5", "Pony", "Flux.1 D", ...), or "unknown"."""
    name = base_model.strip().lower()
    if name.startswith("flux.1 d"):
        return "flux_dev"
    if name.startswith("flux.1 s"):
        return "flux_schnell"
    if name.startswith(("sd 1.", "sd1")):
        return "sd1"
    if name.startswith(("sd 2.", "sd2")):
        return "sd2"
    if name.startswith("sdxl") or name in ("pony", "illustrious", "noobai"):
        return "sdxl"
    if name.startswith(("sd 3", "sd3")):
        return "sd3"
    return "unknown"


def family_from_declared(text: str | None) -> str:
    """Family for whatever a catalog or trainer declares: a family name ("flux_dev"), a
    CivitAI ``baseModel`` ("SDXL 1.0", "Flux.1 D"), a ModelSpec architecture
    ("flux-1-dev/lora") or a kohya ``ss_base_model_version`` ("sd_v1"); "unknown" otherwise.
    """
    if not text:
        return "unknown"
    name = text.strip()
    if name.lower() in FAMILIES:
        return name.lower()
    arch = MODELSPEC_ARCH.get(name.lower().split("/")[0])
    if arch:
        return arch
    if name in KOHYA_BASE:
        return KOHYA_BASE[name]
    return civitai_base_model_family(name)


def metadata_family(metadata: dict[str, str]) -> tuple[str, str] | None:
    """(family, evidence) from kohya or ModelSpec metadata, when it names one."""
    arch = metadata.get("modelspec.architecture")
    if arch:
        family = MODELSPEC_ARCH.get(arch.split("/")[0])
        if family:
            return family, f"modelspec.architecture={arch}"
    base = metadata.get("ss_base_model_version")
    if base:
        if base == "flux1":
            hint = (
                metadata.get("ss_sd_model_name", "") + metadata.get("ss_output_name", "")
            ).lower()
            if "schnell" in hint:
                return "flux_schnell", f"ss_base_model_version=flux1, ss_sd_model_name={hint}"
            if "dev" in hint:
                return "flux_dev", f"ss_base_model_version=flux1, ss_sd_model_name={hint}"
            return None
        family = KOHYA_BASE.get(base)
        if family:
            return family, f"ss_base_model_version={base}"
    return None


def prediction_from_metadata(metadata: dict[str, str]) -> tuple[str, str] | None:
    """("v", evidence) when kohya or ModelSpec metadata marks a v-prediction model."""
    spec = metadata.get("modelspec.prediction_type", "").strip().lower()
    if spec in ("v", "v_prediction", "v-prediction"):
        return "v", f"modelspec.prediction_type={spec}"
    if metadata.get("ss_v_parameterization", "").lower() == "true":
        return "v", "ss_v_parameterization=True"
    base = metadata.get("ss_base_model_version", "")
    if base.endswith("_v"):
        return "v", f"ss_base_model_version={base}"
    arch = metadata.get("modelspec.architecture", "")
    if arch.split("/")[0].endswith("-v"):
        return "v", f"modelspec.architecture={arch}"
    return None


# -- detection from tensor names and shapes ---------------------------------------------


def _strip(keys: list[str], prefix: str) -> dict[str, str]:
    """Keys under ``prefix`` with it removed -> original key."""
    return {k[len(prefix) :]: k for k in keys if k.startswith(prefix)}


def _unet_prefix(keys: list[str]) -> str | None:
    for prefix in ("model.diffusion_model.", "diffusion_model.", "model.", ""):
        if f"{prefix}input_blocks.0.0.weight" in keys:
            return prefix
    return None


def _find_dit(keys: list[str]) -> tuple[str, str] | None:
    """(architecture, prefix) of a Flux or SD3 transformer in any prefix."""
    for key in keys:
        if key.endswith("double_blocks.0.img_attn.norm.key_norm.scale"):
            return "flux", key[: -len("double_blocks.0.img_attn.norm.key_norm.scale")]
        if key.endswith("joint_blocks.0.context_block.attn.qkv.weight"):
            return "sd3", key[: -len("joint_blocks.0.context_block.attn.qkv.weight")]
    return None


def _unet_family(header: Header, prefix: str, details: dict[str, Any]) -> str:
    keys = header.tensors
    first = header.shape(f"{prefix}input_blocks.0.0.weight") or []
    if len(first) == 4:
        details["model_channels"] = first[0]
        details["in_channels"] = first[1]
        if first[1] == 9:
            details["variant"] = "inpainting"
        elif first[1] == 8:
            details["variant"] = "instruct-pix2pix"
    adm = header.shape(f"{prefix}label_emb.0.0.weight")
    if adm:
        details["adm_in_channels"] = adm[1]
    pattern = re.compile(
        re.escape(prefix) + r"input_blocks\.(\d+)\.1\.transformer_blocks\.0\.attn2\.to_k\.weight$"
    )
    blocks = sorted(
        (int(m.group(1)), name) for name in keys if (m := pattern.match(name)) is not None
    )
    if not blocks:
        return "unknown"
    context = header.tensors[blocks[0][1]].shape
    details["context_dim"] = context[1] if len(context) == 2 else None
    family = CONTEXT_DIM_FAMILY.get(details["context_dim"], "unknown")
    if "v_pred" in keys or "ztsnr" in keys:
        details["prediction"] = "v"
    return family


def _flux_family(keys: dict[str, Any], prefix: str, details: dict[str, Any]) -> str:
    details["architecture"] = "flux"
    img_in = keys.get(f"{prefix}img_in.weight")
    if img_in is not None and len(img_in.shape) == 2:
        variant = {384: "fill", 128: "depth"}.get(img_in.shape[1])
        if variant:
            details["variant"] = variant
    if f"{prefix}guidance_in.in_layer.weight" in keys:
        details["evidence"] = f"{prefix}guidance_in.in_layer.weight present (Flux.1 Dev)"
        return "flux_dev"
    if any(k.startswith(f"{prefix}distilled_guidance_layer.") for k in keys):
        details["variant"] = "chroma"
        return "unknown"
    details["evidence"] = "no guidance_in tensors (Flux.1 Schnell)"
    return "flux_schnell"


def _sd3_details(header: Header, prefix: str, details: dict[str, Any]) -> str:
    details["architecture"] = "sd3"
    embed = header.shape(f"{prefix}x_embedder.proj.weight")
    if embed:
        details["depth"] = embed[0] // 64
    has_ln_k = f"{prefix}joint_blocks.0.context_block.attn.ln_k.weight" in header.tensors
    has_attn2 = any(".x_block.attn2." in k for k in header.tensors)
    details["variant"] = (
        "3.5-large" if has_ln_k and not has_attn2 else ("3.5-medium" if has_ln_k else "3-medium")
    )
    return "sd3"


def _diffusers_unet_family(header: Header, details: dict[str, Any]) -> str:
    add = header.shape("add_embedding.linear_1.weight")
    if add and len(add) == 2 and add[1] == 2816:
        return "sdxl"
    to_k = header.shape("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    if to_k and len(to_k) == 2:
        details["context_dim"] = to_k[1]
        return CONTEXT_DIM_FAMILY.get(to_k[1], "unknown")
    return "unknown"


def _text_encoder_kind(keys: list[str]) -> str | None:
    joined = "\n".join(keys)
    # Hugging Face layout (text_model.encoder.layers.N) or OpenCLIP (transformer.resblocks.N)
    if "text_model.encoder.layers.30.mlp.fc1.weight" in joined or (
        "transformer.resblocks.30.mlp.c_fc.weight" in joined
    ):
        return "clip_g"
    if "text_model.encoder.layers.22.mlp.fc1.weight" in joined or (
        "transformer.resblocks.22.mlp.c_fc.weight" in joined
    ):
        return "clip_h"
    if "text_model.encoder.layers.0." in joined:
        return "clip_l"
    if "encoder.block.23.layer.1.DenseReluDense.wi_1.weight" in joined or (
        "encoder.block.23.layer.1.DenseReluDense.wi.weight" in joined
    ):
        return "t5xxl"
    return None


def _bundled_parts(keys: list[str]) -> list[str]:
    parts = []
    if any(k.startswith(("first_stage_model.", "vae.")) for k in keys):
        parts.append("vae")
    groups = {
        "clip_l": (
            "cond_stage_model.transformer.",
            "conditioner.embedders.0.transformer.",
            "text_encoders.clip_l.",
        ),
        "clip_g": ("conditioner.embedders.1.model.", "text_encoders.clip_g."),
        "clip_h": ("cond_stage_model.model.",),
        "t5xxl": ("text_encoders.t5xxl.",),
    }
    for part, prefixes in groups.items():
        if any(k.startswith(prefixes) for k in keys):
            parts.append(part)
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        parts.append("clip_g")
    return parts


_LORA_MARKERS = (
    "lora_down",
    "lora_up",
    "lora_A",
    "lora_B",
    ".lora.down",
    ".lora.up",
    "_lora.down",
    "qkv_lora",
    "proj_lora",
    "hada_w1",
    "lokr_w1",
    "lokr_w2",
    "dora_scale",
)


def _is_lora_key(key: str) -> bool:
    return key.endswith((".diff", ".diff_b")) or any(m in key for m in _LORA_MARKERS)


def _lora_format(keys: list[str]) -> str:
    joined = "\n".join(keys)
    if "hada_w1_a" in joined:
        return "lycoris_loha"
    if "lokr_w1" in joined or "lokr_w2" in joined:
        return "lycoris_lokr"
    if "qkv_lora1" in joined or "proj_lora1" in joined:
        return "xlabs"
    if "lora_A" in joined or "lora_B" in joined or "to_k_lora" in joined or ".lora.down" in joined:
        fmt = "peft"
    elif "lora_unet_" in joined or "lora_te" in joined:
        fmt = "kohya"
    else:
        fmt = "unknown"
    if "dora_scale" in joined:
        fmt += "+dora"
    return fmt


def _lora_family(header: Header, details: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(family or "unknown", families it fits) from LoRA tensor names and shapes."""
    keys = list(header.tensors)
    joined = "\n".join(keys)
    if (
        "double_blocks" in joined
        or "single_blocks" in joined
        or ("single_transformer_blocks" in joined)
    ):
        details["architecture"] = "flux"
        guidance = next((k for k in keys if "guidance_in" in k or "guidance_embedder" in k), None)
        if guidance:
            details["evidence"] = f"{guidance} (guidance_in exists only in Flux.1 Dev)"
            return "flux_dev", ("flux_dev",)
        return "unknown", FLUX
    if "joint_blocks" in joined or ("lora_te3" in joined and "lora_unet_" in joined):
        return "sd3", ("sd3",)
    if (
        "transformer.transformer_blocks." in joined
        or "transformer_blocks.0.attn.add_k_proj" in joined
    ):
        width = _lora_width(header, ("to_q", "to_k"))
        details["hidden_width"] = width
        if width == 3072:
            details["architecture"] = "flux"
            return "unknown", FLUX
        if width in (1536, 2432):
            return "sd3", ("sd3",)
    context = _lora_context_dim(header)
    if context is not None:
        details["context_dim"] = context
        family = CONTEXT_DIM_FAMILY.get(context, "unknown")
        return family, ((family,) if family != "unknown" else ())
    if "lora_te2_" in joined or "text_encoder_2." in joined:
        return "sdxl", ("sdxl",)
    if re.search(r"lora_unet_(input_blocks|output_blocks|middle_block)_", joined):
        return "sdxl", ("sdxl",)
    return "unknown", ()


def _lora_down_weights(header: Header) -> list[tuple[str, list[int]]]:
    return [
        (name, t.shape)
        for name, t in header.tensors.items()
        if (
            name.endswith(
                (
                    "lora_down.weight",
                    "lora_A.weight",
                    "lora.down.weight",
                    "_lora.down.weight",
                    ".hada_w1_b",
                )
            )
            and len(t.shape) >= 2
        )
    ]


_CROSS_ATTENTION = re.compile(r"attn2[._](?:processor[._])?to_[kv]")


def _lora_context_dim(header: Header) -> int | None:
    """in_features of a cross-attention to_k/to_v: the text context width of the UNet."""
    for name, shape in _lora_down_weights(header):
        if _CROSS_ATTENTION.search(name):
            return shape[1]
    return _lokr_context_dim(header)


def _lokr_context_dim(header: Header) -> int | None:
    """LoKr stores W = kron(w1, w2): in_features = w1 columns x w2 columns (each possibly
    factored as ``*_a @ *_b``)."""
    for name in header.tensors:
        if not (name.endswith((".lokr_w1", ".lokr_w1_b")) and _CROSS_ATTENTION.search(name)):
            continue
        module = name.rsplit(".", 1)[0]
        w1 = header.shape(f"{module}.lokr_w1") or header.shape(f"{module}.lokr_w1_b")
        w2 = header.shape(f"{module}.lokr_w2") or header.shape(f"{module}.lokr_w2_b")
        if w1 and w2 and len(w1) == 2 and len(w2) >= 2:
            return w1[1] * w2[1]
    return None


def _lora_width(header: Header, projections: tuple[str, ...]) -> int | None:
    for name, shape in _lora_down_weights(header):
        if any(f".{p}." in name or f"_{p}." in name for p in projections):
            return shape[1]
    return None


def _embedding(header: Header) -> dict[str, Any] | None:
    keys = set(header.tensors)
    if keys and keys <= {"emb_params", "string_to_param.*", "string_to_token", "name", "step"}:
        shape = header.shape("emb_params") or header.shape("string_to_param.*") or []
        return {"vectors": shape[0] if shape else None, "width": shape[-1] if shape else None}
    if keys == {"clip_l", "clip_g"}:
        return {"vectors": header.shape("clip_l")[0], "width": "clip_l+clip_g"}
    return None


def _classify_model(
    header: Header, keys: list[str], details: dict[str, Any]
) -> tuple[str, str, dict[str, Any]] | None:
    """(role, family, details) for a UNet/transformer file (with or without bundled parts)."""
    dit = _find_dit(keys)
    unet_prefix = _unet_prefix(keys)
    if dit is not None or unet_prefix is not None:
        if dit is not None:
            arch, prefix = dit
            family = (
                _flux_family(header.tensors, prefix, details)
                if arch == "flux"
                else _sd3_details(header, prefix, details)
            )
        else:
            prefix = unet_prefix or ""
            family = _unet_family(header, prefix, details)
        parts = _bundled_parts(keys)
        if family == "sd2" and "clip_g" in parts:
            # SD2 in sgm layout keeps OpenCLIP-H where the refiner keeps CLIP-G
            parts = [("clip_h" if p == "clip_g" else p) for p in parts]
        details["bundles"] = parts
        details["fits"] = [family] if family != "unknown" else []
        role = "checkpoint" if parts else "diffusion_model"
        return role, family, details

    if any(k.endswith("transformer_blocks.0.attn.add_k_proj.bias") for k in keys):
        details["architecture"] = (
            "flux" if any(k.startswith("single_transformer_blocks.") for k in keys) else "sd3"
        )
        details["layout"] = "diffusers"
        if details["architecture"] == "flux":
            dev = any(k.startswith("time_text_embed.guidance_embedder.") for k in keys)
            family = "flux_dev" if dev else "flux_schnell"
        else:
            family = "sd3"
        details["fits"] = [family]
        details["bundles"] = []
        return "diffusion_model", family, details
    if (
        "conv_in.weight" in keys
        and any(k.startswith("down_blocks.") for k in keys)
        and ("decoder.conv_in.weight" not in keys)
    ):
        details["layout"] = "diffusers"
        family = _diffusers_unet_family(header, details)
        details["fits"] = [family] if family != "unknown" else []
        details["bundles"] = []
        return "diffusion_model", family, details

    return None


def classify_safetensors(header: Header) -> tuple[str, str, dict[str, Any]]:
    """(role, family, details) for a safetensors header."""
    keys = list(header.tensors)
    details: dict[str, Any] = {}
    if any(q in k for k in keys for q in ("bitsandbytes__nf4", "bitsandbytes__fp4")):
        details["quantization"] = "nf4" if any("nf4" in k for k in keys) else "fp4"

    if any(_is_lora_key(k) for k in keys):
        details["lora_format"] = _lora_format(keys)
        family, fits = _lora_family(header, details)
        details["fits"] = list(fits)
        return "lora", family, details

    embedding = _embedding(header)
    if embedding is not None:
        details.update(embedding)
        width = embedding["width"]
        family = {768: "sd1", 1024: "sd2", "clip_l+clip_g": "sdxl"}.get(width, "unknown")
        details["fits"] = [family] if family != "unknown" else []
        return "embedding", family, details

    if any(
        k.startswith(("control_model.", "input_hint_block.", "controlnet_cond_embedding."))
        or ".input_hint_block." in k
        for k in keys
    ):
        context = None
        for name, tensor in header.tensors.items():
            if "attn2.to_k.weight" in name and len(tensor.shape) == 2:
                context = tensor.shape[1]
                break
        family = CONTEXT_DIM_FAMILY.get(context, "unknown") if context else "unknown"
        if any("double_blocks" in k for k in keys):
            family = "unknown"
            details["fits"] = list(FLUX)
        else:
            details["fits"] = [family] if family != "unknown" else []
        return "controlnet", family, details

    model = _classify_model(header, keys, details)
    if model is not None:
        return model

    vae = next((k for k in keys if k.endswith("decoder.conv_in.weight")), None)
    if vae is not None and _text_encoder_kind(keys) is None:
        shape = header.tensors[vae].shape
        channels = shape[1] if len(shape) == 4 else None
        details["latent_channels"] = channels
        details["fits"] = list(LATENT16 if channels == 16 else LATENT4 if channels == 4 else ())
        return "vae", "unknown", details

    encoder = _text_encoder_kind(keys)
    if encoder is not None:
        details["text_encoder"] = encoder
        details["fits"] = {
            "clip_l": ["sd1", "sdxl", "sd3", *FLUX],
            "clip_g": ["sdxl", "sdxl_refiner", "sd3"],
            "clip_h": ["sd2"],
            "t5xxl": ["sd3", *FLUX],
        }[encoder]
        return "text_encoder", "unknown", details

    details["fits"] = []
    return "unknown", "unknown", details


# -- one file ---------------------------------------------------------------------------


def detect_format(path: str) -> str:
    with open(path, "rb") as handle:
        prefix = handle.read(16)
    if looks_like_safetensors(prefix):
        return "safetensors"
    if prefix.startswith(b"GGUF"):
        return "gguf"
    if prefix.startswith(b"PK\x03\x04") or (
        prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    ):
        return "pickle"
    lowered = path.lower()
    if lowered.endswith((".safetensors", ".sft")):
        return "safetensors"  # damaged: the header check says why
    if lowered.endswith(PICKLE_EXTENSIONS):
        return "pickle"
    return "unknown"


def inspect_file(
    path: str,
    declared: str | None = None,
    allowed_globals: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Everything the header tells about one file; never raises for bad content.

    ``declared`` is what a catalog says the file is for (a CivitAI ``baseModel`` such as
    "Flux.1 D", or a family name): it decides between families the weights leave open
    (Flux Dev vs Schnell LoRAs) and is noted when it contradicts them.
    ``allowed_globals`` are pickle globals (``module.name``) accepted beyond the safe ones.
    """
    result: dict[str, Any] = {
        "path": path,
        "size": None,
        "format": "unknown",
        "role": "unknown",
        "family": "unknown",
        "integrity": "ok",
        "details": {"fits": []},
    }
    try:
        result["size"] = os.path.getsize(path)
        result["format"] = detect_format(path)
    except OSError as error:
        result["integrity"] = f"cannot read: {error.strerror or error}"
        return result
    if result["format"] == "safetensors":
        _inspect_safetensors(path, result)
    elif result["format"] == "pickle":
        scan = scan_file(path, allowed_globals)
        result["integrity"] = scan.integrity
        result["details"]["pickle_globals"] = scan.globals
    elif result["format"] == "gguf":
        _inspect_gguf(path, result)
    else:
        result["integrity"] = "not a model file: no safetensors, pickle or GGUF signature"
    if declared:
        _apply_declared(result, declared)
    return result


def _inspect_safetensors(path: str, result: dict[str, Any]) -> None:
    try:
        header = read_header(path)
    except HeaderError as error:
        result["integrity"] = str(error)
        return
    except OSError as error:
        result["integrity"] = f"cannot read: {error.strerror or error}"
        return
    result["integrity"] = integrity(header)
    role, family, details = classify_safetensors(header)
    evidence = {
        k: v
        for k, v in header.metadata.items()
        if k
        in (
            "ss_base_model_version",
            "modelspec.architecture",
            "ss_network_module",
            "ss_sd_model_name",
            "modelspec.title",
            "modelspec.prediction_type",
            "ss_v_parameterization",
        )
    }
    if evidence:
        details["metadata"] = evidence
    prediction = prediction_from_metadata(header.metadata)
    if prediction and "prediction" not in details:
        details["prediction"], details["prediction_evidence"] = prediction
    declared = metadata_family(header.metadata)
    result.update(role=role, family=family, details=details)
    if declared:
        _reconcile(result, declared[0], "metadata " + declared[1])


def _inspect_gguf(path: str, result: dict[str, Any]) -> None:
    try:
        header, metadata, verdict = read_gguf(path)
    except HeaderError as error:
        result["integrity"] = f"unreadable GGUF header: {error}"
        return
    except OSError as error:
        result["integrity"] = f"cannot read: {error.strerror or error}"
        return
    # A damaged header can nest arrays without end or hold values of odd types.
    except (RecursionError, ValueError, OverflowError, MemoryError) as error:
        result["integrity"] = f"unreadable GGUF header: {error}"
        return
    role, family, details = classify_safetensors(header)
    types = [t.dtype for t in header.tensors.values() if len(t.shape) == 2]
    if types:
        details["quantization"] = max(sorted(set(types)), key=types.count)
    architecture = metadata.get("general.architecture")
    if isinstance(architecture, str):
        details["gguf_architecture"] = architecture
    result.update(role=role, family=family, details=details, integrity=verdict)


def _reconcile(result: dict[str, Any], declared: str, evidence: str) -> None:
    """Let metadata narrow an undecided family; note it when it contradicts the weights."""
    details = result["details"]
    fits = details.get("fits", [])
    if result["family"] == "unknown" and declared in fits and result["role"] != "vae":
        result["family"] = declared
        details["fits"] = [declared]
        details["evidence"] = evidence
    elif result["family"] not in ("unknown", declared) or (fits and declared not in fits):
        details.setdefault("notes", []).append(
            f"{evidence} says {declared} but the weights say "
            f"{result['family'] if result['family'] != 'unknown' else '/'.join(fits)}"
        )
        details["declared_family"] = declared


def _apply_declared(result: dict[str, Any], declared: str) -> None:
    family = family_from_declared(declared)
    result["details"]["declared"] = declared
    if family != "unknown" and result["integrity"] == "ok":
        _reconcile(result, family, f"declared base model {declared!r}")


# -- many files -------------------------------------------------------------------------


def iter_model_files(root: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Model files under ``root`` (or ``root`` itself) and per-path read problems.

    Symlinked folders are followed (model trees often link to a data disk); a folder met
    twice on one path (a symlink loop) is reported once and not entered again.
    """
    problems: list[dict[str, Any]] = []
    if os.path.isfile(root):
        return [root], problems
    if not os.path.exists(root):
        kind = "broken or looping symlink" if os.path.islink(root) else "no such file or directory"
        return [], [_problem(root, kind)]
    files: list[str] = []
    _walk(root, set(), files, problems)
    return files, problems


def _walk(
    folder: str, ancestors: set[tuple[int, int]], files: list[str], problems: list[dict]
) -> None:
    try:
        status = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        problems.append(_problem(folder, f"cannot read folder: {error.strerror or error}"))
        return
    identity = (status.st_dev, status.st_ino)
    if identity in ancestors:
        problems.append(_problem(folder, "symlink loop: this folder contains itself"))
        return
    ancestors = ancestors | {identity}
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            _walk(entry.path, ancestors, files, problems)
        elif entry.name.lower().endswith(MODEL_EXTENSIONS):
            if entry.is_symlink() and not os.path.exists(entry.path):
                problems.append(_problem(entry.path, "broken or looping symlink"))
            else:
                files.append(entry.path)


def _problem(path: str, reason: str) -> dict[str, Any]:
    return {
        "path": path,
        "size": None,
        "format": "unknown",
        "role": "unknown",
        "family": "unknown",
        "integrity": reason,
        "details": {"fits": []},
    }


def inspect_paths(
    paths: list[str],
    allowed_globals: frozenset[str] = frozenset(),
    declared: str | None = None,
) -> list[dict[str, Any]]:
    """Inspect files and directories (recursively); unreadable paths become entries too.

    ``declared`` and ``allowed_globals`` apply to every file (see ``inspect_file``).
    """
    results = []
    for root in paths:
        files, problems = iter_model_files(root)
        results.extend(problems)
        results.extend(inspect_file(f, declared, allowed_globals) for f in files)
    return results
