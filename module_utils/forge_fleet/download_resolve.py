"""Resolving catalog entries: Hugging Face resolve metadata and the CivitAI model-version
API turn an entry into a URL, a destination, a size and a sha256.

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Any

from .catalog import CIVITAI_TYPE_KINDS
from .download_http import (
    RETRY_STATUSES,
    DownloadError,
    Settings,
    _get_json,
    _origin,
    _Retryable,
    _with_retries,
    request,
)
from .download_item import PlanItem


def _hf_resolve(entry: dict[str, Any], settings: Settings) -> dict[str, Any]:
    repo, path, revision = entry["repo"], entry["file"], entry.get("revision", "main")
    url = (
        f"{settings.hf_endpoint.rstrip('/')}/{repo}/resolve/"
        f"{urllib.parse.quote(revision, safe='')}/{urllib.parse.quote(path)}"
    )
    label = entry["label"]

    hub = _origin(url)

    def action():
        target = url
        for _ in range(5):
            resp = request("HEAD", target, settings, auth=settings.hf_token, follow=False)
            resp.resp.read()
            resp.close()
            if resp.status in RETRY_STATUSES:
                raise _Retryable(
                    f"HTTP {resp.status} from Hugging Face", resp.header("Retry-After")
                )
            location = resp.header("Location")
            if (
                resp.status in (301, 302, 307, 308)
                and location
                and not resp.header("X-Linked-Size")
                and _origin(urllib.parse.urljoin(target, location)) == hub
            ):
                # A renamed repository redirects on the hub itself: ask again there, with the
                # token (same host); a redirect to the CDN carries the metadata and ends here.
                target = urllib.parse.urljoin(target, location)
                continue
            return target, resp
        raise DownloadError(f"{label}: too many redirects on Hugging Face for {repo}/{path}")

    url, resp = _with_retries(label, settings, action)
    code = resp.header("X-Error-Code") or ""
    if resp.status in (401, 403):
        if code == "RepoNotFound":
            # The Hub answers so for a private or mistyped repository rather than say which.
            raise DownloadError(
                f"{label}: Hugging Face shows no repository {repo} to "
                f"{'this token' if settings.hf_token else 'a request without a token'} "
                f"(HTTP {resp.status}, RepoNotFound); check the name, and for a private "
                "repository set models_huggingface_token to a token whose account can read it"
            )
        if code == "GatedRepo" or resp.status == 403:
            who = (
                "this token's account"
                if settings.hf_token
                else "an account (and set models_huggingface_token)"
            )
            raise DownloadError(
                f"{label}: {repo} is a gated repository (HTTP {resp.status}); request access "
                f"on its Hugging Face page for {who}, then re-run"
            )
        if settings.hf_token:
            raise DownloadError(
                f"{label}: Hugging Face refused the token for {repo} (HTTP 401): it is invalid, "
                "expired or revoked; set models_huggingface_token to a valid token"
            )
        raise DownloadError(
            f"{label}: Hugging Face answered HTTP 401 for {repo}; set models_huggingface_token"
        )
    if resp.status == 404:
        what = "repository" if code == "RepoNotFound" else "file or revision"
        raise DownloadError(
            f"{label}: Hugging Face has no such {what}: {repo}, revision {revision}, file {path}"
            + (f" ({code})" if code else "")
        )
    if resp.status not in (200, 301, 302, 303, 307, 308):
        raise DownloadError(f"{label}: HTTP {resp.status} from Hugging Face for {repo}/{path}")
    etag = (resp.header("X-Linked-Etag") or resp.header("ETag") or "").replace("W/", "").strip('"')
    size = resp.header("X-Linked-Size") or resp.header("Content-Length")
    location = resp.header("Location")
    target = urllib.parse.urljoin(url, location) if location else url
    return {
        "url": target,
        # A redirect on the hub itself (a renamed repo) still needs the token; the CDN never.
        "auth": settings.hf_token if _origin(target) == _origin(url) else None,
        # Where to ask again when the CDN's signed URL expires during a long download.
        "renew": url if _origin(target) != _origin(url) else None,
        "sha256": entry.get("sha256") or (etag.lower() if len(etag) == 64 else None),
        "size": int(size) if size and size.isdigit() else None,
        "revision": resp.header("X-Repo-Commit") or revision,
        "filename": entry.get("filename") or path.rsplit("/", 1)[-1],
        "kind": entry["kind"],
    }


def _pick_civitai_file(files: list[dict[str, Any]], entry: dict[str, Any], label: str) -> dict:
    candidates = []
    for item in files:
        meta = item.get("metadata") or {}
        if entry.get("type") and item.get("type") != entry["type"]:
            continue
        if entry.get("format") and meta.get("format") != entry["format"]:
            continue
        if entry.get("precision") and meta.get("fp") != entry["precision"]:
            continue
        if entry.get("size") and meta.get("size") != entry["size"]:
            continue
        candidates.append(item)
    if not candidates:
        offered = [
            f"{f.get('name')} ({f.get('type')}, {(f.get('metadata') or {}).get('format')}, "
            f"{(f.get('metadata') or {}).get('fp')})"
            for f in files
        ]
        raise DownloadError(
            f"{label}: no file matches type/format/precision/size; offered: " + "; ".join(offered)
        )
    primary = [c for c in candidates if c.get("primary")]
    chosen = (primary or candidates)[0]
    if (chosen.get("metadata") or {}).get("format") == "PickleTensor" and not entry.get("format"):
        safe = [c for c in candidates if (c.get("metadata") or {}).get("format") == "SafeTensor"]
        chosen = safe[0] if safe else chosen
    return chosen


def _civitai_resolve(entry: dict[str, Any], settings: Settings) -> dict[str, Any]:
    api = settings.civitai_endpoint.rstrip("/")
    label = entry["label"]
    key = settings.civitai_key
    version_id = entry.get("version_id")
    if version_id is None:
        model = _get_json(f"{api}/api/v1/models/{int(entry['model_id'])}", settings, label, key)
        versions = model.get("modelVersions") or []
        if not versions:
            raise DownloadError(f"{label}: CivitAI model {entry['model_id']} has no versions")
        version_id = versions[0]["id"]
    version = _get_json(f"{api}/api/v1/model-versions/{int(version_id)}", settings, label, key)
    files = version.get("files") or []
    if not files:
        # No filter can match in an empty list: say why the list is empty, not what was offered.
        until = version.get("earlyAccessEndsAt")
        raise DownloadError(
            f"{label}: CivitAI version {version_id} lists no files"
            + (f" (early access until {until})" if until else " (early access, or removed)")
            + "; choose another version_id from the model's page on CivitAI"
            + (", or wait until the early access ends" if until else "")
            + ", then re-run; nothing was downloaded"
        )
    chosen = _pick_civitai_file(files, entry, label)
    meta = chosen.get("metadata") or {}
    query = {"type": chosen.get("type"), "format": meta.get("format")}
    if meta.get("size"):
        query["size"] = meta["size"]
    if meta.get("fp"):
        query["fp"] = meta["fp"]
    model_type = (version.get("model") or {}).get("type")
    kind = entry.get("kind") or CIVITAI_TYPE_KINDS.get(model_type or "")
    if kind is None:
        raise DownloadError(
            f"{label}: CivitAI model type {model_type!r} has no Forge folder; "
            "add 'kind' to the entry"
        )
    sha = (chosen.get("hashes") or {}).get("SHA256")
    return {
        "url": f"{api}/api/download/models/{int(version_id)}?{urllib.parse.urlencode(query)}",
        "auth": key,
        "sha256": entry.get("sha256") or (sha.lower() if sha else None),
        "size": None,
        "size_estimate": int(float(chosen.get("sizeKB") or 0) * 1024) or None,
        "revision": str(version_id),
        "filename": entry.get("filename") or chosen.get("name"),
        "kind": kind,
        "base_model": version.get("baseModel"),
    }


def resolve(entry: dict[str, Any], settings: Settings) -> PlanItem:
    """Where the bytes of one catalog entry come from, and what they must hash to."""
    source = entry["source"]
    if source == "huggingface":
        found = _hf_resolve(entry, settings)
    elif source == "civitai":
        found = _civitai_resolve(entry, settings)
    else:
        found = {
            "url": entry["url"],
            "headers": entry.get("headers"),
            "sha256": entry.get("sha256"),
            "filename": entry.get("filename")
            or urllib.parse.urlsplit(entry["url"]).path.rsplit("/", 1)[-1],
            "kind": entry["kind"],
        }
    return PlanItem.resolved(entry, entry_key(entry), found)


def entry_key(entry: dict[str, Any]) -> str:
    """Identity of a catalog entry (no secrets in entries): a changed entry is re-resolved."""
    public = {k: v for k, v in sorted(entry.items()) if k not in ("label", "headers")}
    return hashlib.sha256(json.dumps(public, sort_keys=True, default=str).encode()).hexdigest()[:16]
