"""The plan and the manifest: what each catalog entry needs (present, verify, download,
repair), what a dry run reports, and the checks made before any byte moves (declared
families, disk space).

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .catalog import find_duplicate_destinations
from .download_http import DownloadError, Settings
from .download_item import PlanItem
from .download_partial import bytes_kept
from .download_resolve import entry_key, resolve
from .hashing import sha256_file
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


# -- planning -----------------------------------------------------------------------------


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
                plan.append(PlanItem.recorded(entry, destination, record))
                continue
        item = resolve(entry, settings)
        path = os.path.join(forge_dir, item.destination)
        stat = _stat(path)
        record = manifest.get(item.destination)
        if stat is None:
            item.action = "download"
        elif item.size is not None and stat[0] != item.size:
            item.action = "repair"
        elif record and not settings.verify and stat == (record["size"], record["mtime_ns"]):
            same = item.sha256 in (None, record["sha256"])
            item.action = "present" if same else "repair"
            if same:
                item.sha256, item.size = record["sha256"], record["size"]
        else:
            item.action = "verify"  # may turn into a repair once hashed
        item.bytes_to_fetch = _bytes_to_fetch(item, path)
        plan.append(item)
    problems = find_duplicate_destinations([(p.label, p.destination) for p in plan])
    if problems:
        raise DownloadError("; ".join(problems))
    return plan


def _bytes_to_fetch(item: PlanItem, path: str) -> int:
    """What a download or repair still has to fetch: the size less the part of a
    ``.partial`` that the run resumes from, decided as the run decides it (a partial of
    another download, or beyond its recorded resume point, is fetched again)."""
    if item.action not in ("download", "repair"):
        return 0
    expected = item.size or item.size_estimate or 0
    return max(expected - bytes_kept(item, path), 0)


def settle_by_hashing(plan: list[PlanItem], forge_dir: str) -> None:
    """Hash what only hashing can judge, as the real run will: a ``verify`` item whose
    expected sha256 is known becomes a ``repair`` when the file's bytes differ (a file
    replaced by another of the same size), so a dry run reports it as a change."""
    for item in plan:
        if item.action != "verify" or not item.sha256:
            continue
        path = os.path.join(forge_dir, item.destination)
        if sha256_file(path) != item.sha256:
            item.action = "repair"
            item.bytes_to_fetch = _bytes_to_fetch(item, path)


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
        if item.action not in ("download", "repair"):
            continue
        known = item.size or item.size_estimate
        amount = (
            f"{human_bytes(item.bytes_to_fetch)} to fetch"
            if known
            else "size unknown until it downloads"
        )
        lines.append(f"{item.action} {item.destination} ({amount})")
    return lines


def check_declared_families(plan: list[PlanItem]) -> list[str]:
    """Problems where a CivitAI add-on's baseModel fits none of the catalog's checkpoints.

    Uses what the catalog and CivitAI declare (entries' base_model, CivitAI baseModel), so it
    runs before any download; the files themselves are checked after they land.
    """
    models, add_ons = [], []
    for item in plan:
        declared = item.declared_family
        if item.base_model and not declared:
            declared = civitai_base_model_family(item.base_model)
        if item.kind in ("checkpoint", "diffusion_model"):
            models.append((item, declared))
        elif item.kind in ("lora", "embedding", "controlnet"):
            add_ons.append((item, declared))
    families = {family for _, family in models if family and family != "unknown"}
    if not families or len(families) < len(models):
        return []  # a model of unknown family: the post-download check decides
    problems = []
    for item, family in add_ons:
        if family and family != "unknown" and family not in families:
            problems.append(
                f"{item.label}: CivitAI says this {item.kind} is for "
                f"{item.base_model} "
                f"({family}), but the catalog's models are {', '.join(sorted(families))}; "
                "choose a version made for one of them or add a matching checkpoint"
            )
    return problems


def check_disk(plan: list[PlanItem], forge_dir: str) -> None:
    """Fail before any byte moves when the downloads still to do do not fit."""
    needed = sum(p.bytes_to_fetch for p in plan)
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
