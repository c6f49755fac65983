"""Do these model files fit together? Every finding at once, each saying what to do.

Works on inspections from ``model_inspect`` (one dict per file), optionally with what a
catalog or a Forge folder declares each file to be. Rules:

- a LoRA, embedding or ControlNet fits the family of at least one model present;
- a VAE fits at least one model present (latent channels);
- a diffusion-model-only file (or a checkpoint that bundles only some parts) has its VAE and
  text encoders present, unless a checkpoint of its family bundles them;
- what is declared (catalog kind/family, Forge folder, metadata) agrees with the weights;
- integrity problems and pickle findings fail the set (pickle is refused by default).
"""

from __future__ import annotations

import os
from typing import Any

from .model_inspect import family_from_declared, inspect_paths
from .vocabulary import folder_kinds

MODEL_ROLES = ("checkpoint", "diffusion_model")
ADD_ON_ROLES = ("lora", "embedding", "controlnet")
# What a diffusion model needs besides itself, per family.
REQUIRED_PARTS = {
    "sd1": ("vae", "clip_l"),
    "sd2": ("vae", "clip_h"),
    "sdxl": ("vae", "clip_l", "clip_g"),
    "sdxl_refiner": ("vae", "clip_g"),
    "sd3": ("vae", "clip_l", "clip_g"),
    "flux_dev": ("vae", "clip_l", "t5xxl"),
    "flux_schnell": ("vae", "clip_l", "t5xxl"),
}
# Forge folders (relative to the checkout) and the kinds they hold (vocabulary.KIND_DIRS).
FOLDER_ROLES = folder_kinds()
KIND_ROLES = {
    "checkpoint": ("checkpoint", "diffusion_model"),
    "diffusion_model": ("diffusion_model", "checkpoint"),
    "vae": ("vae",),
    "text_encoder": ("text_encoder",),
    "lora": ("lora",),
    "embedding": ("embedding",),
    "controlnet": ("controlnet",),
    "upscaler": ("upscaler",),
}


def finding(code: str, paths: list[str], message: str, evidence: str, action: str) -> dict:
    return {
        "code": code,
        "paths": paths,
        "message": message,
        "evidence": evidence,
        "action": action,
    }


def _name(item: dict[str, Any]) -> str:
    return os.path.basename(item["path"])


def _family_text(item: dict[str, Any]) -> str:
    if item["family"] != "unknown":
        return item["family"]
    fits = item["details"].get("fits") or []
    return " or ".join(fits) if fits else "an unrecognised family"


def _weights_evidence(item: dict[str, Any]) -> str:
    details = item["details"]
    if details.get("evidence"):
        return str(details["evidence"])
    for key in ("context_dim", "hidden_width", "latent_channels", "text_encoder"):
        if details.get(key) is not None:
            return f"{key}={details[key]}"
    return f"role={item['role']}"


def check_set(
    items: list[dict[str, Any]],
    declared: dict[str, dict[str, Any]] | None = None,
    allow_pickle: bool = False,
) -> list[dict[str, Any]]:
    """Every finding for a set of inspected files; empty when they fit together.

    ``declared`` maps a path to ``{"kind": ..., "family": ..., "source": ...}`` as a catalog
    or a Forge folder states it; ``family`` may be a family name or anything
    ``family_from_declared`` reads (a CivitAI baseModel such as "SDXL 1.0", a ModelSpec
    architecture). ``allow_pickle`` accepts pickle files whose scan is clean.
    """
    declared = declared or {}
    findings: list[dict[str, Any]] = []
    usable = []
    for item in items:
        problem = _file_findings(item, allow_pickle)
        findings.extend(problem)
        if not problem:
            usable.append(item)
    for item in usable:
        findings.extend(_declared_findings(item, declared.get(item["path"])))
    models = [i for i in usable if i["role"] in MODEL_ROLES]
    present = {f for m in models for f in (m["details"].get("fits") or [])}
    for item in usable:
        if item["role"] in ADD_ON_ROLES or item["role"] == "vae":
            findings.extend(_fit_findings(item, models, present))
        elif item["role"] in MODEL_ROLES:
            findings.extend(_missing_parts(item, usable))
    return findings


def _file_findings(item: dict[str, Any], allow_pickle: bool) -> list[dict[str, Any]]:
    path = item["path"]
    if item["integrity"] != "ok":
        action = (
            "do not load this file; delete it and download it again from a trusted source"
            if item["format"] == "pickle"
            else "delete it and download it again (re-run the playbook), or remove it"
        )
        return [
            finding(
                "integrity",
                [path],
                f"{_name(item)}: {item['integrity']}",
                f"format={item['format']}",
                action,
            )
        ]
    if item["format"] == "pickle" and not allow_pickle:
        return [
            finding(
                "pickle",
                [path],
                f"{_name(item)} is a pickle checkpoint (can run code when loaded)",
                "pickle scan clean, globals: "
                + ", ".join(item["details"].get("pickle_globals", [])),
                "use the .safetensors release of this model, or allow pickle explicitly",
            )
        ]
    return []


def _declared_findings(item: dict[str, Any], declared: dict[str, Any] | None) -> list[dict]:
    out = []
    details = item["details"]
    if details.get("declared_family"):
        out.append(
            finding(
                "metadata_mismatch",
                [item["path"]],
                f"{_name(item)}: {details['notes'][-1]}",
                _weights_evidence(item),
                "check which base model this file was made for; trust the weights, fix the catalog "
                "or replace the file",
            )
        )
    if not declared:
        return out
    source = declared.get("source", "catalog")
    kind = declared.get("kind")
    if kind and item["role"] != "unknown" and item["role"] not in KIND_ROLES.get(kind, (kind,)):
        out.append(
            finding(
                "kind_mismatch",
                [item["path"]],
                f"{_name(item)}: {source} says {kind}, the file is a {item['role']}",
                _weights_evidence(item),
                f"declare kind {item['role']} (or put it in the {item['role']} folder)",
            )
        )
    said = declared.get("family")
    family = family_from_declared(said)
    fits = details.get("fits") or []
    if family != "unknown" and fits and family not in fits:
        spelled = family if said == family else f"{said} ({family})"
        out.append(
            finding(
                "family_mismatch",
                [item["path"]],
                f"{_name(item)}: {source} says {spelled}, the file is for {_family_text(item)}",
                _weights_evidence(item),
                f"use a file made for {family}, or correct the declared base model",
            )
        )
    return out


def _fit_findings(item: dict[str, Any], models: list[dict], present: set[str]) -> list[dict]:
    fits = item["details"].get("fits") or []
    if not fits or present & set(fits):
        return []
    what = {"vae": "VAE", "lora": "LoRA", "embedding": "embedding", "controlnet": "ControlNet"}[
        item["role"]
    ]
    if not models:
        message = f"{_name(item)}: {what} for {_family_text(item)}, but no checkpoint is present"
        action = "add a checkpoint of that family, or remove this file"
    else:
        listed = ", ".join(f"{_name(m)} ({m['family']})" for m in models)
        message = (
            f"{_name(item)}: {what} for {_family_text(item)} does not fit any model present: "
            f"{listed}"
        )
        action = (
            f"use a {what} made for "
            + " or ".join(sorted(present))
            + f", or add a {_family_text(item)} checkpoint"
        )
    return [finding("no_matching_model", [item["path"]], message, _weights_evidence(item), action)]


def _missing_parts(item: dict[str, Any], usable: list[dict]) -> list[dict]:
    family = item["family"]
    needed = REQUIRED_PARTS.get(family)
    if not needed:
        return []
    have = set(item["details"].get("bundles") or [])
    for other in usable:
        if family not in (other["details"].get("fits") or []):
            continue
        if other["role"] == "vae":
            have.add("vae")
        elif other["role"] == "text_encoder":
            have.add(other["details"]["text_encoder"])
        elif other["role"] == "checkpoint":
            have.update(other["details"].get("bundles") or [])
    missing = [p for p in needed if p not in have]
    if not missing:
        return []
    hints = {
        "vae": "a VAE (models/VAE, e.g. ae.safetensors for Flux)",
        "clip_l": "CLIP-L (models/text_encoder/clip_l.safetensors)",
        "clip_g": "CLIP-G (models/text_encoder/clip_g.safetensors)",
        "clip_h": "OpenCLIP-H",
        "t5xxl": "T5-XXL (models/text_encoder/t5xxl_fp8_e4m3fn.safetensors or fp16)",
    }
    bundles = ", ".join(sorted(item["details"].get("bundles") or [])) or "none"
    what = "diffusion model" if item["role"] == "diffusion_model" else "checkpoint"
    return [
        finding(
            "missing_parts",
            [item["path"]],
            f"{_name(item)}: {family} {what} without " + ", ".join(missing),
            f"the file bundles {bundles}; no file present provides " + ", ".join(missing),
            "add " + "; ".join(hints[p] for p in missing),
        )
    ]


# -- a Forge models tree ------------------------------------------------------------------


class NotAModelsTree(ValueError):
    """The path is neither a Forge checkout nor a models folder."""


def models_folders(path: str) -> list[tuple[str, str]]:
    """(absolute folder, Forge folder name) for a Forge checkout, its models/, or a folder
    holding Stable-diffusion/Lora/VAE/...; raises NotAModelsTree otherwise."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise NotAModelsTree(f"{path} is not a directory")
    if os.path.isdir(os.path.join(path, "models")):
        models_dir, checkout = os.path.join(path, "models"), path
    else:
        models_dir, checkout = path, os.path.dirname(path)
    found = []
    for folder in FOLDER_ROLES:
        if folder.startswith("models/"):
            full = os.path.join(models_dir, folder[len("models/") :])
        else:
            full = os.path.join(checkout, folder)
        if os.path.isdir(full):
            found.append((full, folder))
    if not any(folder.startswith("models/") for _, folder in found):
        raise NotAModelsTree(
            f"{path} has none of Forge's model folders (models/Stable-diffusion, models/Lora, "
            "models/VAE, models/text_encoder, ...); give the Forge checkout or its models/"
        )
    return found


def _tree(path: str) -> tuple[list[dict], dict[str, dict[str, Any]]]:
    """Every file of a Forge models tree inspected, and what its folder declares it to be."""
    items: list[dict] = []
    declared: dict[str, dict[str, Any]] = {}
    for full, folder in models_folders(path):
        for item in inspect_paths([full]):
            items.append(item)
            declared[item["path"]] = {
                "kind": FOLDER_ROLES[folder][0],
                "source": f"the folder {folder}",
            }
    return items, declared


def check_tree(path: str, allow_pickle: bool = False) -> tuple[list[dict], list[dict]]:
    """Inspect and check a Forge models tree: (inspections, findings).

    Each file is declared to be what its folder holds (a LoRA in models/VAE is a finding).
    """
    items, declared = _tree(path)
    return items, check_set(items, declared, allow_pickle)


def check_files(
    wanted: list[dict[str, Any]], allow_pickle: bool = False, known: dict[str, dict] | None = None
) -> tuple[list[dict], list[dict]]:
    """Inspect and check the files a catalog declares: (inspections, findings).

    ``wanted``: {path, kind, family} per file. ``known`` maps a normalised path to an
    inspection already made (of the tree around them): such a file is not read again.
    """
    known = known or {}
    items: list[dict] = []
    declared: dict[str, dict[str, Any]] = {}
    for want in wanted:
        seen = known.get(os.path.normpath(want["path"]))
        for item in [seen] if seen else inspect_paths([want["path"]]):
            items.append(item)
            declared[item["path"]] = {**want, "source": "the catalog"}
    return items, check_set(items, declared, allow_pickle)


def check_files_and_tree(
    wanted: list[dict[str, Any]], path: str, allow_pickle: bool = False
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """The catalog's files and every file of the tree at ``path``, each file read once:
    (catalog inspections, catalog findings, tree). The catalog's files are checked exactly
    as ``check_files`` checks them (together, as the catalog declares them); the tree as
    ``check_tree`` checks it. ``tree`` is {files, findings}, or {msg} when ``path`` is no
    models tree (the catalog's files are still checked)."""
    try:
        tree_items, tree_declared = _tree(path)
    except NotAModelsTree as error:
        tree_items, tree = [], {"msg": str(error)}
    else:
        tree = {"files": tree_items, "findings": check_set(tree_items, tree_declared, allow_pickle)}
    known = {os.path.normpath(item["path"]): item for item in tree_items}
    files, findings = check_files(wanted, allow_pickle, known)
    return files, findings, tree


def check_catalog_and_tree(
    wanted: list[dict[str, Any]],
    forge_dir: str,
    allow_pickle: bool = False,
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What model_compat returns for a catalog's files in the Forge checkout ``forge_dir``:
    {files, findings, tree}. ``findings`` are the catalog's files' (they decide); ``tree`` is
    every file present as ``check_tree`` judges it, with ``forge_dir`` and, when given, the
    models ``manifest``. model_download's plan returns the same when every file is in place,
    so a no-op needs no model_compat run of its own."""
    files, findings, tree = check_files_and_tree(wanted, forge_dir, allow_pickle)
    if manifest is not None:
        tree["manifest"] = manifest
    return {"files": files, "findings": findings, "tree": {"forge_dir": forge_dir, **tree}}
