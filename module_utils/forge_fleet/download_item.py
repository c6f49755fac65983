"""The plan item: one catalog entry's line in the plan, the only shape a plan item has.

Built here only: ``PlanItem.resolved`` (fresh from upstream, by ``download_resolve.resolve``)
or ``PlanItem.recorded`` (known from the manifest, by ``download_plan.make_plan``); carried
out by ``download_execute``. What leaves the engine is built here too: ``public`` (a dry
run's file), ``declaration`` (what the compatibility check takes), ``outcome`` (an executed
file) and ``manifest_record``; none of them carries a URL, token or header.

Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .vocabulary import KIND_DIRS

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


@dataclass
class PlanItem:
    label: str  # models_catalog[3] (owner/repo/file): names the entry in every message
    destination: str  # relative to the Forge checkout: models/Lora/x.safetensors
    kind: str | None  # vocabulary.KIND_DIRS
    entry_key: str | None  # identity of the catalog entry (manifest)
    action: str = ""  # present | verify | download | repair (make_plan decides)
    bytes_to_fetch: int = 0
    sha256: str | None = None  # expected (upstream or catalog); None when nobody says
    size: int | None = None  # exact, when upstream announces it
    size_estimate: int | None = None  # CivitAI's sizeKB
    base_model: str | None = None  # CivitAI's baseModel
    declared_family: str | None = None  # the catalog's base_model
    filename: str | None = None
    revision: str | None = None
    # Secrets and signatures: never in a result, a message or the progress file.
    # url is None for an item known from the manifest (upstream not asked).
    url: str | None = field(default=None, repr=False)
    auth: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    renew: str | None = field(default=None, repr=False)
    cache_bad: str | None = None  # sha256 of wrong bytes the fleet cache gave for this file

    @classmethod
    def resolved(cls, entry: dict[str, Any], key: str, found: dict[str, Any]) -> PlanItem:
        """From a catalog entry and what upstream says of it (``download_resolve``)."""
        return cls(
            label=entry["label"],
            destination=f"{KIND_DIRS[found['kind']]}/{found['filename']}",
            kind=found["kind"],
            entry_key=key,
            sha256=found.get("sha256"),
            size=found.get("size"),
            size_estimate=found.get("size_estimate"),
            base_model=found.get("base_model"),
            declared_family=entry.get("base_model"),
            filename=found["filename"],
            revision=found.get("revision"),
            url=found["url"],
            auth=found.get("auth"),
            headers=dict(found.get("headers") or {}),
            renew=found.get("renew"),
        )

    @classmethod
    def recorded(cls, entry: dict[str, Any], destination: str, record: dict[str, Any]) -> PlanItem:
        """A file the manifest records for this very entry, unchanged since: present."""
        return cls(
            label=entry["label"],
            destination=destination,
            kind=record.get("kind"),
            entry_key=record.get("entry_key"),
            action="present",
            sha256=record["sha256"],
            size=record["size"],
            base_model=record.get("base_model"),
            declared_family=entry.get("base_model"),
        )

    def public(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in PUBLIC_KEYS}

    def declaration(self, forge_dir: str) -> dict[str, Any]:
        """What the catalog declares the file to be, as the compatibility check takes it."""
        return {
            "path": os.path.join(forge_dir, self.destination),
            "kind": self.kind,
            "family": self.declared_family or None,
        }

    def manifest_record(
        self,
        size: int,
        mtime_ns: int,
        sha256: str,
        fetched_from: str | None = None,
        origin_bytes: int | None = None,
    ) -> dict[str, Any]:
        """What the manifest keeps of a verified file; ``fetched_from`` (cache | origin) and
        ``origin_bytes`` (bytes this host took from the internet for it) feed the report."""
        record = {
            "size": size,
            "mtime_ns": mtime_ns,
            "sha256": sha256,
            "kind": self.kind,
            "entry_key": self.entry_key,
            "source": self.label,
            "revision": self.revision,
            "base_model": self.base_model,
        }
        if fetched_from is not None:
            record["fetched_from"] = fetched_from
            record["origin_bytes"] = origin_bytes
        return record

    def outcome(
        self,
        path: str,
        action: str,
        sha256: str | None,
        size: int | None,
        record: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """One executed file, as ``execute`` reports it."""
        return {
            "label": self.label,
            "destination": self.destination,
            "path": path,
            "kind": self.kind,
            "base_model": self.base_model,
            "declared_family": self.declared_family,
            "action": action,
            "sha256": sha256,
            "size": size,
            "record": record,
        }
