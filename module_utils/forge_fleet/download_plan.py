"""The plan and the manifest: what each catalog entry needs (present, verify, download,
repair), what a dry run reports, and the checks made before any byte moves (declared
families, disk space).

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, TypedDict

from .catalog import find_duplicate_destinations
from .download_http import DownloadError, Settings
from .download_resolve import entry_key, resolve
from .model_inspect import civitai_base_model_family

MANIFEST = "models/.forge-fleet-manifest.json"


def load_manifest(forge_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(forge_dir, MANIFEST)) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_manifest(forge_dir: str, manifest: dict[str, Any]) -> None:
    path = os.path.join(forge_dir, MANIFEST)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def sha256_file(path: str, buffer_bytes: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(buffer_bytes)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


# -- planning -----------------------------------------------------------------------------


class PlanItem(TypedDict, total=False):
    """One catalog entry's line in the plan, the only shape a plan item has: built by
    ``resolve`` (fresh from upstream) or by ``make_plan`` (known from the manifest), carried
    out by ``execute``, shown through ``public`` and ``declaration``."""

    label: str  # models_catalog[3] (owner/repo/file): names the entry in every message
    destination: str  # relative to the Forge checkout: models/Lora/x.safetensors
    kind: str  # vocabulary.KIND_DIRS
    action: str  # present | verify | download | repair
    bytes_to_fetch: int
    sha256: str | None  # expected (upstream or catalog); None when nobody says
    size: int | None  # exact, when upstream announces it
    size_estimate: int | None  # CivitAI's sizeKB
    base_model: str | None  # CivitAI's baseModel
    declared_family: str | None  # the catalog's base_model
    entry_key: str  # identity of the catalog entry (manifest)
    filename: str
    revision: str | None
    # Secrets and signatures: never in a result, a message or the progress file.
    url: str
    auth: str | None
    headers: dict[str, str]
    renew: str | None


# What a result may show of a plan item (no URL, token or header).
PUBLIC_KEYS = (
    "label",
    "destination",
    "kind",
    "action",
    "bytes_to_fetch",
    "sha256",
    "size",
    "base_model",
    "declared_family",
)


def public(item: PlanItem) -> dict[str, Any]:
    return {key: item.get(key) for key in PUBLIC_KEYS}


def declaration(forge_dir: str, item: PlanItem) -> dict[str, Any]:
    """What the catalog declares a file to be, as the compatibility check takes it."""
    return {
        "path": os.path.join(forge_dir, item["destination"]),
        "kind": item.get("kind"),
        "family": item.get("declared_family") or None,
    }


def make_plan(entries: list[dict[str, Any]], forge_dir: str, settings: Settings) -> list[PlanItem]:
    """What each entry needs: present (nothing), verify, download or repair.

    A file recorded in the manifest for the same catalog entry, with the same size and mtime,
    is present without asking upstream or reading it. A file whose size differs from what
    upstream announces, or whose recorded sha256 differs from the expected one, is a repair
    (known without reading it); any other unrecorded or changed file is hashed (verify) and
    repaired only if its sha256 is wrong.
    """
    manifest = load_manifest(forge_dir)
    recorded = {v.get("entry_key"): (k, v) for k, v in manifest.items()}
    plan: list[PlanItem] = []
    for entry in entries:
        known = recorded.get(entry_key(entry))
        if known and not settings.verify:
            destination, record = known
            stat = _stat(os.path.join(forge_dir, destination))
            if stat == (record["size"], record["mtime_ns"]):
                plan.append(
                    {
                        "label": entry["label"],
                        "destination": destination,
                        "action": "present",
                        "sha256": record["sha256"],
                        "size": record["size"],
                        "kind": record.get("kind"),
                        "base_model": record.get("base_model"),
                        "declared_family": entry.get("base_model"),
                        "entry_key": record.get("entry_key"),
                        "bytes_to_fetch": 0,
                    }
                )
                continue
        item = resolve(entry, settings)
        path = os.path.join(forge_dir, item["destination"])
        stat = _stat(path)
        record = manifest.get(item["destination"])
        if stat is None:
            item["action"] = "download"
        elif item.get("size") is not None and stat[0] != item["size"]:
            item["action"] = "repair"
        elif record and not settings.verify and stat == (record["size"], record["mtime_ns"]):
            same = item.get("sha256") in (None, record["sha256"])
            item["action"] = "present" if same else "repair"
            if same:
                item["sha256"], item["size"] = record["sha256"], record["size"]
        else:
            item["action"] = "verify"  # may turn into a repair once hashed
        item["bytes_to_fetch"] = _bytes_to_fetch(item, path)
        plan.append(item)
    problems = find_duplicate_destinations([(p["label"], p["destination"]) for p in plan])
    if problems:
        raise DownloadError("; ".join(problems))
    return plan


def _bytes_to_fetch(item: PlanItem, path: str) -> int:
    """What a download or repair still has to fetch: the size less a ``.partial`` it resumes."""
    if item["action"] not in ("download", "repair"):
        return 0
    partial = _stat(path + ".partial")
    expected = item.get("size") or item.get("size_estimate") or 0
    return max(expected - (partial[0] if partial else 0), 0)


def settle_by_hashing(plan: list[PlanItem], forge_dir: str) -> None:
    """Hash what only hashing can judge, as the real run will: a ``verify`` item whose
    expected sha256 is known becomes a ``repair`` when the file's bytes differ (a file
    replaced by another of the same size), so a dry run reports it as a change."""
    for item in plan:
        if item["action"] != "verify" or not item.get("sha256"):
            continue
        path = os.path.join(forge_dir, item["destination"])
        if sha256_file(path) != item["sha256"]:
            item["action"] = "repair"
            item["bytes_to_fetch"] = _bytes_to_fetch(item, path)


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""  # not reached


def describe_changes(plan: list[PlanItem]) -> list[str]:
    """One line per file a real run would change: ``repair models/Lora/x.safetensors (2.0 MiB
    to fetch)``; no secrets (destinations and sizes only). A URL whose server announces no
    size says so rather than a made-up figure."""
    lines = []
    for item in plan:
        if item["action"] not in ("download", "repair"):
            continue
        known = item.get("size") or item.get("size_estimate")
        amount = (
            f"{human_bytes(item.get('bytes_to_fetch', 0))} to fetch"
            if known
            else "size unknown until it downloads"
        )
        lines.append(f"{item['action']} {item['destination']} ({amount})")
    return lines


def check_declared_families(plan: list[PlanItem]) -> list[str]:
    """Problems where a CivitAI add-on's baseModel fits none of the catalog's checkpoints.

    Uses what the catalog and CivitAI declare (entries' base_model, CivitAI baseModel), so it
    runs before any download; the files themselves are checked after they land.
    """
    models, add_ons = [], []
    for item in plan:
        declared = item.get("declared_family")
        if item.get("base_model") and not declared:
            declared = civitai_base_model_family(item["base_model"])
        if item.get("kind") in ("checkpoint", "diffusion_model"):
            models.append((item, declared))
        elif item.get("kind") in ("lora", "embedding", "controlnet"):
            add_ons.append((item, declared))
    families = {family for _, family in models if family and family != "unknown"}
    if not families or len(families) < len(models):
        return []  # a model of unknown family: the post-download check decides
    problems = []
    for item, family in add_ons:
        if family and family != "unknown" and family not in families:
            problems.append(
                f"{item['label']}: CivitAI says this {item['kind']} is for "
                f"{item.get('base_model')} "
                f"({family}), but the catalog's models are {', '.join(sorted(families))}; "
                "choose a version made for one of them or add a matching checkpoint"
            )
    return problems


def check_disk(plan: list[PlanItem], forge_dir: str) -> None:
    """Fail before any byte moves when the downloads still to do do not fit."""
    needed = sum(p.get("bytes_to_fetch", 0) for p in plan)
    probe = forge_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    stats = os.statvfs(probe)
    free = stats.f_bavail * stats.f_frsize
    if needed > free:
        raise DownloadError(
            f"not enough disk space for the models: {needed / 1024**3:.1f} GiB to download, "
            f"{free / 1024**3:.1f} GiB free at {probe}; free {(needed - free) / 1024**3:.1f} GiB "
            "more or remove entries from the catalog"
        )
