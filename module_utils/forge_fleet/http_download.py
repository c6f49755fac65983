"""Verified, resumable, parallel model downloads from Hugging Face, CivitAI and HTTPS URLs.

Standard library only; runs on the VM inside the model_download module. The flow for a
catalog (entries from ``catalog.normalize_catalog``):

    plan = make_plan(entries, forge_dir, settings)   # resolve, compare with the manifest
    check_disk(plan, forge_dir)                        # fail before any byte moves
    results = execute(plan, forge_dir, settings)       # download / verify / repair

Guarantees: bytes go to ``<file>.partial`` and are hashed while they stream; a file reaches
its final name only after its size and sha256 match (atomic rename); an interrupted download
resumes with Range; credentials are sent only to the host they belong to, never follow a
redirect to another host, never appear in a URL, an error, the manifest or the progress file.
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import hashlib
import http.client
import json
import os
import queue
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .catalog import CIVITAI_TYPE_KINDS, find_duplicate_destinations
from .download_progress import Progress
from .model_inspect import civitai_base_model_family
from .vocabulary import KIND_DIRS

MANIFEST = "models/.forge-fleet-manifest.json"
LOCK = "models/.forge-fleet-download.lock"
WRITEBACK_BYTES = 32 * 1024 * 1024  # written bytes handed to the kernel's writeback at a time
USER_AGENT = "forge-fleet/0.1 (+model_download)"
RETRY_STATUSES = (429, 500, 502, 503, 504)
EXPIRED_STATUSES = (401, 403, 410)  # how a CDN refuses a signed URL past its expiry
MODEL_REFUSED_TYPES = ("text/html", "application/json")
# How a page or an API error begins: no model format starts so (safetensors begins with an
# 8-byte little-endian length, GGUF with "GGUF", torch files with "PK" or a pickle opcode).
NON_MODEL_STARTS = (b"<!doctype html", b"<html", b"<?xml", b'{"error"')
PUMP_BUFFERS = 16  # x buffer_bytes (1 MiB): received data waiting to be written and hashed
STATE_SAVE_S = 2.0  # a single stream records its resume point this often


class DownloadError(Exception):
    """A download cannot be done; the message names the entry and what to do."""


class Settings:
    def __init__(self, **options: Any) -> None:
        self.hf_endpoint = options.get("hf_endpoint") or "https://huggingface.co"
        self.civitai_endpoint = options.get("civitai_endpoint") or "https://civitai.com"
        # A token read from a file or a vault block often ends with a newline: not part of it.
        self.hf_token = (options.get("hf_token") or "").strip() or None
        self.civitai_key = (options.get("civitai_key") or "").strip() or None
        self.connections = max(1, int(options.get("connections", 4)))
        self.parallel_files = max(1, int(options.get("parallel_files", 2)))
        self.segment_bytes = int(options.get("segment_bytes", 4 * 1024 * 1024))
        self.min_split_bytes = int(options.get("min_split_bytes", 64 * 1024 * 1024))
        self.retries = int(options.get("retries", 5))
        self.backoff = float(options.get("backoff", 1.0))
        self.max_backoff = float(options.get("max_backoff", 60.0))
        self.timeout = float(options.get("timeout", 60.0))
        self.ca_file = options.get("ca_file") or None
        self.progress_file = options.get("progress_file") or None
        self.progress_interval = float(options.get("progress_interval", 2.0))
        self.verify = bool(options.get("verify", False))
        self.buffer_bytes = 1024 * 1024
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()

    def ssl_context(self) -> ssl.SSLContext:
        """One context for every connection: loading the CA store takes tens of milliseconds,
        and a catalog of thirty entries opens hundreds of connections."""
        with self._ssl_lock:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self.ca_file)
            return self._ssl


# -- HTTP ---------------------------------------------------------------------------------


class Response:
    """An open HTTP response and the connection it came on."""

    def __init__(
        self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str
    ) -> None:
        self.conn = conn
        self.resp = resp
        self.url = url
        self.status = resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def close(self) -> None:
        self.conn.close()


def _connect(url: str, settings: Settings) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=settings.timeout, context=settings.ssl_context()
        )
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=settings.timeout)
    raise DownloadError(f"unsupported URL scheme {parts.scheme!r}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def outgoing_headers(
    url: str,
    auth_origin: tuple[str, str, int | None],
    *,
    headers: dict[str, str] | None = None,
    auth: str | None = None,
    private_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Which headers a request to ``url`` may carry: the security boundary for tokens, and
    the only place request headers are put together.

    The User-Agent and the request's own headers (Range) go everywhere. The secrets - the
    Bearer token (``auth``) and catalog-declared headers (``private_headers``, e.g. a private
    mirror's Authorization) - go only to ``auth_origin`` (scheme, host and port of the URL
    they were given for), never to the CDN or storage host a redirect points at.
    """
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if _origin(url) == auth_origin:
        sent.update(private_headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {auth}"
    return sent


def public_url(url: str) -> str:
    """A URL fit for messages: no query string (pre-signed URLs carry signatures there) and
    no ``user:password@`` (a mirror's credentials may be written into its URL)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def request(
    method: str,
    url: str,
    settings: Settings,
    *,
    headers: dict[str, str] | None = None,
    auth: str | None = None,
    private_headers: dict[str, str] | None = None,
    auth_origin: tuple[str, str, int | None] | None = None,
    follow: bool = True,
) -> Response:
    """One request; redirects are followed by hand so the Authorization header (and any
    catalog-declared header, which may carry a secret) is sent only to the origin it was meant
    for (``auth_origin``, by default the first URL's) and never to a CDN or storage host."""
    auth_origin = auth_origin or _origin(url)
    for _ in range(6):
        conn = _connect(url, settings)
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = outgoing_headers(
            url, auth_origin, headers=headers, auth=auth, private_headers=private_headers
        )
        try:
            conn.request(method, target or "/", headers=sent)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):  # first: a certificate error is both
            conn.close()
            raise
        except ValueError:
            conn.close()
            raise _bad_header(url) from None
        if follow and resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            location = urllib.parse.urljoin(url, resp.getheader("Location"))
            resp.read()
            conn.close()
            if url.startswith("https:") and not location.startswith("https:"):
                raise DownloadError(
                    f"{public_url(url)} redirects to plain HTTP ({public_url(location)}); "
                    "refused: a download that starts over HTTPS stays on HTTPS"
                )
            url = location
            continue
        return Response(conn, resp, url)
    raise DownloadError(f"too many redirects from {public_url(url)}")


def _bad_header(url: str) -> DownloadError:
    """http.client refuses a header value with a line break, quoting the value (a token) in
    its message: this error says the same without it."""
    return DownloadError(
        f"a request to {public_url(url)} was not sent: a header value holds a line break or "
        "another character HTTP does not allow (check the token, API key or catalog headers "
        "for a stray newline); the value is not shown"
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _retry_delay(settings: Settings, attempt: int, retry_after: str | None) -> float:
    asked = retry_after_seconds(retry_after)
    if asked is not None:
        return min(asked, settings.max_backoff)
    return min(settings.backoff * (2**attempt), settings.max_backoff)


def _with_retries(label: str, settings: Settings, action):
    """Run ``action()``; retry dropped connections, 429 and 5xx with backoff.

    A certificate that does not verify is not a passing fault: it fails at once.
    """
    last = ""
    for attempt in range(settings.retries + 1):
        try:
            return action()
        except ssl.SSLCertVerificationError as error:
            raise DownloadError(
                f"{label}: the server's TLS certificate does not verify "
                f"({error.verify_message or error.reason}); if a private CA signs it, trust "
                "that CA on this host or pass its bundle as the module's ca_file"
            ) from None
        except _Retryable as error:
            last = str(error)
            if attempt < settings.retries:
                time.sleep(_retry_delay(settings, attempt, error.retry_after))
        except (OSError, http.client.HTTPException) as error:
            last = f"connection problem: {type(error).__name__}: {error}"
            if attempt < settings.retries:
                time.sleep(_retry_delay(settings, attempt, None))
    raise DownloadError(f"{label}: gave up after {settings.retries + 1} attempts: {last}")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _get_json(url: str, settings: Settings, label: str, auth: str | None) -> Any:
    def action():
        resp = request("GET", url, settings, auth=auth, headers={"Accept": "application/json"})
        try:
            body = resp.resp.read()
        finally:
            resp.close()
        if resp.status in RETRY_STATUSES:
            raise _Retryable(
                f"HTTP {resp.status} from {public_url(url)}", resp.header("Retry-After")
            )
        if resp.status in (401, 403):
            raise DownloadError(
                f"{label}: CivitAI refused the request (HTTP {resp.status}); set a CivitAI API key "
                "(models_civitai_api_key) whose account can download this model"
            )
        if resp.status == 404:
            raise DownloadError(
                f"{label}: CivitAI has no such model or version ({public_url(url)})"
            )
        if resp.status != 200:
            raise DownloadError(f"{label}: HTTP {resp.status} from {public_url(url)}")
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise DownloadError(f"{label}: {public_url(url)} did not answer JSON") from None

    return _with_retries(label, settings, action)


# -- resolving catalog entries -------------------------------------------------------------


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
    chosen = _pick_civitai_file(version.get("files") or [], entry, label)
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


def resolve(entry: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Where the bytes of one catalog entry come from, and what they must hash to."""
    source = entry["source"]
    if source == "huggingface":
        resolved = _hf_resolve(entry, settings)
    elif source == "civitai":
        resolved = _civitai_resolve(entry, settings)
    else:
        resolved = {
            "url": entry["url"],
            "auth": None,
            "headers": dict(entry.get("headers") or {}),
            "sha256": entry.get("sha256"),
            "size": None,
            "revision": None,
            "filename": entry.get("filename")
            or urllib.parse.urlsplit(entry["url"]).path.rsplit("/", 1)[-1],
            "kind": entry["kind"],
        }
    resolved["label"] = entry["label"]
    resolved["declared_family"] = entry.get("base_model")
    resolved["destination"] = f"{KIND_DIRS[resolved['kind']]}/{resolved['filename']}"
    resolved["entry_key"] = entry_key(entry)
    return resolved


def entry_key(entry: dict[str, Any]) -> str:
    """Identity of a catalog entry (no secrets in entries): a changed entry is re-resolved."""
    public = {k: v for k, v in sorted(entry.items()) if k not in ("label", "headers")}
    return hashlib.sha256(json.dumps(public, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- manifest -----------------------------------------------------------------------------


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


def make_plan(
    entries: list[dict[str, Any]], forge_dir: str, settings: Settings
) -> list[dict[str, Any]]:
    """What each entry needs: present (nothing), verify, download or repair.

    A file recorded in the manifest for the same catalog entry, with the same size and mtime,
    is present without asking upstream or reading it. A file whose size differs from what
    upstream announces, or whose recorded sha256 differs from the expected one, is a repair
    (known without reading it); any other unrecorded or changed file is hashed (verify) and
    repaired only if its sha256 is wrong.
    """
    manifest = load_manifest(forge_dir)
    recorded = {v.get("entry_key"): (k, v) for k, v in manifest.items()}
    plan: list[dict[str, Any]] = []
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


def _bytes_to_fetch(item: dict[str, Any], path: str) -> int:
    """What a download or repair still has to fetch: the size less a ``.partial`` it resumes."""
    if item["action"] not in ("download", "repair"):
        return 0
    partial = _stat(path + ".partial")
    expected = item.get("size") or item.get("size_estimate") or 0
    return max(expected - (partial[0] if partial else 0), 0)


def settle_by_hashing(plan: list[dict[str, Any]], forge_dir: str) -> None:
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


def describe_changes(plan: list[dict[str, Any]]) -> list[str]:
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


def check_declared_families(plan: list[dict[str, Any]]) -> list[str]:
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


def check_disk(plan: list[dict[str, Any]], forge_dir: str) -> None:
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


# -- fetching one file ---------------------------------------------------------------------


def _refuse_non_model(resp: Response, label: str, at_start: bool) -> None:
    """An HTML or JSON answer where a model was expected is an error, never a file.

    Known by its Content-Type, or, for the first bytes of a file, by how it begins (a login
    page served as application/octet-stream)."""
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip().lower()
    looks_like_page = at_start and resp.resp.peek(64)[:64].lstrip().lower().startswith(
        NON_MODEL_STARTS
    )
    if ctype in MODEL_REFUSED_TYPES or looks_like_page:
        body = resp.resp.read(300).decode("utf-8", "replace")
        resp.close()
        start = body.lstrip()[:14].lower()
        if ctype == "text/html" or start.startswith(("<!doctype html", "<html")):
            hint = "a login page"
        elif start.startswith("<"):
            hint = "an error page"
        else:
            hint = f"a JSON message ({body[:120]!r})"
        raise DownloadError(
            f"{label}: the server sent {hint} instead of the model (HTTP {resp.status}); check "
            "the API key or token and whether the model needs early access; nothing was saved"
        )


def _start_writeback(fd: int, start: int, length: int) -> None:
    """Have the kernel start writing this range to disk now, without waiting for it.

    POSIX_FADV_DONTNEED on Linux starts asynchronous writeback of the range's dirty pages (it
    drops only pages already clean, so the bytes still being written stay cached). The fsync
    before the rename then finds little left to write; an fdatasync here instead would stall
    the hash for the whole writeback.
    """
    if hasattr(os, "posix_fadvise"):
        # Only a hint: the fsync before the rename makes the file durable either way.
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


class _AlreadyComplete(Exception):
    """416 to a resume: the partial file already holds every byte the server has."""


def _range_total(resp: Response) -> int | None:
    """The full length from ``Content-Range: bytes */N`` (a 416 answer), if given."""
    found = (resp.header("Content-Range") or "").rpartition("/")[2].strip()
    return int(found) if found.isdigit() else None


def _status_error(resp: Response, label: str) -> Exception:
    if resp.status in RETRY_STATUSES:
        return _Retryable(
            f"HTTP {resp.status} from {public_url(resp.url)}", resp.header("Retry-After")
        )
    if resp.status in (401, 403):
        return DownloadError(
            f"{label}: HTTP {resp.status} from {public_url(resp.url)}; the token or API key is "
            "missing, wrong, or has no access to this model"
        )
    return DownloadError(f"{label}: HTTP {resp.status} from {public_url(resp.url)}")


class _SegmentFetcher:
    """Ranged GETs for the segments of one file, one kept-alive connection per worker.

    Segments go straight to the URL the first answer came from (for CivitAI the pre-signed
    storage URL, so the API is asked once per file, not once per segment), without
    credentials unless that URL is on the catalog URL's own origin. If that URL stops
    answering (an expired signature), segments go back through the catalog URL, which
    redirects to a fresh one.
    """

    def __init__(self, fetch: _Fetch, url: str) -> None:
        self.fetch = fetch
        self.url: str | None = url
        self.local = threading.local()

    def close_mine(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None

    def _direct(self, url: str, first: int, last: int) -> Response:
        conn = getattr(self.local, "conn", None)
        if conn is None or getattr(self.local, "origin", None) != _origin(url):
            self.close_mine()
            conn = _connect(url, self.fetch.settings)
            self.local.conn, self.local.origin = conn, _origin(url)
        parts = urllib.parse.urlsplit(url)
        headers = outgoing_headers(
            url,
            _origin(self.fetch.item["url"]),
            headers={"Range": f"bytes={first}-{last}"},
            auth=self.fetch.item.get("auth"),
            private_headers=self.fetch.private_headers,
        )
        try:
            conn.request(
                "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers
            )
            return Response(conn, conn.getresponse(), url)
        except (OSError, http.client.HTTPException):  # first: a certificate error is both
            self.close_mine()
            raise
        except ValueError:
            self.close_mine()
            raise _bad_header(url) from None

    def _answer(self, first: int, last: int) -> Response:
        """A 206 answer for bytes first..last, or the reason there is none."""
        url = self.url
        if url is None:
            resp = self.fetch._open(first, last)  # through the catalog URL, on a new connection
            if resp.status != 206:
                resp.close()
                raise DownloadError(f"{self.fetch.label}: the server stopped honouring Range")
            if resp.url != self.fetch.item["url"]:
                self.url = resp.url  # a fresh storage URL for the segments still to come
            return resp
        resp = self._direct(url, first, last)
        if resp.status == 206:
            return resp
        self._drop(resp)
        if resp.status == 200:
            raise DownloadError(f"{self.fetch.label}: the server stopped honouring Range")
        if url != self.fetch.item["url"] and resp.status not in RETRY_STATUSES:
            self.url = None  # expired or refused: back through the catalog URL for a fresh one
            raise _Retryable(f"HTTP {resp.status} from {public_url(url)}", "0")
        if resp.status in EXPIRED_STATUSES and self.fetch.renew():
            self.url = self.fetch.item["url"]  # the hub's fresh CDN URL (Hugging Face)
            raise _Retryable(f"HTTP {resp.status} from the CDN: its signed URL expired", "0")
        raise _status_error(resp, self.fetch.label)

    def _drop(self, resp: Response) -> None:
        if resp.conn is getattr(self.local, "conn", None):
            self.close_mine()
        else:
            resp.close()

    def fill(self, first: int, last: int, view: memoryview) -> None:
        """Fill ``view`` with bytes first..last of the file."""
        resp = self._answer(first, last)
        got = 0
        keep = False
        try:
            while got < len(view):
                count = resp.resp.readinto(view[got:])
                if not count:
                    break
                got += count
            # The connection carries the next GET only when this answer held exactly the bytes
            # asked for (http.client closes a response read to its end). A server sending more
            # is cut off here: the rest is never read, so it can never pile up in memory.
            keep = (
                got == len(view)
                and resp.resp.isclosed()
                and not resp.resp.will_close
                and resp.conn is getattr(self.local, "conn", None)
            )
        finally:
            if not keep:
                self._drop(resp)
        if got != len(view):
            raise _Retryable(f"segment {first}-{last} cut short ({got} bytes)")


class _Fetch:
    """Download one resolved item into ``<dest>.partial``, hashing as bytes arrive."""

    def __init__(self, item: dict[str, Any], path: str, settings: Settings, progress: Progress):
        self.item = item
        self.path = path
        self.partial = path + ".partial"
        self.state_path = path + ".partial.json"
        self.settings = settings
        self.progress = progress
        self.label = item["label"]
        # Catalog headers (e.g. a private mirror's Authorization) go only to the URL's own
        # origin, never to a host it redirects to.
        self.private_headers = dict(item.get("headers") or {})
        self.pumped = 0  # bytes written and hashed when the last _pump call ended

    def _open(self, start: int, end: int | None = None) -> Response:
        headers: dict[str, str] = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = request(
            "GET",
            self.item["url"],
            self.settings,
            headers=headers,
            auth=self.item.get("auth"),
            private_headers=self.private_headers,
        )
        if resp.status == 416 and start and _range_total(resp) == start:
            resp.close()
            raise _AlreadyComplete()
        if resp.status not in (200, 206):
            resp.close()
            if resp.status in EXPIRED_STATUSES and self.renew():
                raise _Retryable(f"HTTP {resp.status} from the CDN: its signed URL expired", "0")
            raise _status_error(resp, self.label)
        _refuse_non_model(resp, self.label, at_start=start == 0)
        return resp

    def renew(self) -> bool:
        """Ask the hub again for the CDN URL (HEAD, token to the hub only, redirect not
        followed): signed URLs expire, and a large file can outlast one. True if a new URL
        came; the caller retries with it (within the usual retry budget)."""
        hub_url = self.item.get("renew")
        if not hub_url:
            return False
        resp = request("HEAD", hub_url, self.settings, auth=self.settings.hf_token, follow=False)
        resp.close()
        location = resp.header("Location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return False
        self.item["url"] = urllib.parse.urljoin(hub_url, location)
        return True

    def _resume_point(self, digest) -> int:
        """Bytes already in the partial file that belong to this same download."""
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            state = {}
        if (
            state.get("sha256") != self.item.get("sha256")
            or state.get("url_key") != self._url_key()
        ):
            for stale in (self.partial, self.state_path):
                if os.path.exists(stale):
                    os.unlink(stale)
            return 0
        done = min(int(state.get("prefix", 0)), (_stat(self.partial) or (0, 0))[0])
        with open(self.partial, "r+b") as handle:
            handle.truncate(done)
            remaining = done
            while remaining:  # the verified prefix is hashed once more, only on resume
                chunk = handle.read(min(remaining, self.settings.buffer_bytes))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
        return done

    def _url_key(self) -> str:
        return hashlib.sha256(public_url(self.item["url"]).encode()).hexdigest()[:16]

    def _save_state(self, prefix: int) -> None:
        with open(self.state_path, "w") as handle:
            json.dump(
                {"sha256": self.item.get("sha256"), "url_key": self._url_key(), "prefix": prefix},
                handle,
            )

    def run(self) -> str:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        digest = hashlib.sha256()
        done = self._resume_point(digest) if os.path.exists(self.partial) else 0
        total = self.item.get("size")
        if done and done == total:
            return self._finish(done, digest)  # the run stopped between last byte and rename
        # Nothing is written until the server answers with a model: no empty partial files.
        try:
            first = _with_retries(self.label, self.settings, lambda: self._open(done))
        except _AlreadyComplete:
            self.item["size"] = done  # the server says the file ends where the partial does
            return self._finish(done, digest)
        if not os.path.exists(self.partial):
            open(self.partial, "wb").close()
        self._save_state(done)
        self.progress.start(self.item["destination"], total or self.item.get("size_estimate"), done)
        if first.status == 200 and done:
            digest = hashlib.sha256()  # the server ignored Range: start over
            done = 0
            with open(self.partial, "r+b") as handle:
                handle.truncate(0)
        length = first.header("Content-Length")
        if total is None and length and length.isdigit():
            total = done + int(length)
            self.item["size"] = total
        ranged = first.header("Accept-Ranges") == "bytes" or first.status == 206
        remaining = (total - done) if total else None
        if (
            self.settings.connections > 1
            and ranged
            and remaining is not None
            and remaining >= self.settings.min_split_bytes
        ):
            first.close()
            done = self._parallel(done, total, digest, first.url)
        else:
            done = self._stream(first, done, total, digest)
        return self._finish(done, digest)

    def _pump(self, resp: Response, handle, digest, done: int) -> int:
        """Receive into reused buffers while another thread writes and hashes the last ones.

        Receiving, writing and hashing all release the GIL, so they overlap; the buffers are
        recycled, so memory stays at a few megabytes whatever the file size.
        """
        size = self.settings.buffer_bytes
        free: queue.Queue = queue.Queue()
        for _ in range(PUMP_BUFFERS):
            free.put(bytearray(size))
        full: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        def sink(written: int) -> None:
            flushed = written
            saved_at = time.monotonic()
            while True:
                item = full.get()
                if item is None:
                    return
                buffer, count = item
                try:
                    view = memoryview(buffer)[:count]
                    handle.write(view)
                    digest.update(view)
                    written += count
                    if written - flushed >= WRITEBACK_BYTES:
                        handle.flush()
                        _start_writeback(handle.fileno(), flushed, written - flushed)
                        flushed = written
                    if time.monotonic() - saved_at >= STATE_SAVE_S:
                        # A run killed outright (OOM, kill -9, a restart) saves nothing on
                        # its way out: the next one resumes from the last prefix saved here.
                        handle.flush()
                        self._save_state(written)
                        saved_at = time.monotonic()
                except BaseException as error:  # surfaced in the receiving thread
                    failure.append(error)
                free.put(buffer)

        writer = threading.Thread(target=sink, args=(done,), daemon=True)
        writer.start()
        try:
            while not failure:
                buffer = free.get()
                count = resp.resp.readinto(buffer)
                if not count:
                    free.put(buffer)
                    break
                full.put((buffer, count))
                done += count
                self.progress.add(self.item["destination"], count)
        finally:
            full.put(None)
            writer.join()
            # Every byte counted is now written and hashed: where a resume must start, also
            # when a timeout or a reset ends this call with an exception.
            self.pumped = done
        if failure:
            raise self._write_error(failure[0])
        return done

    def _write_error(self, error: BaseException) -> BaseException:
        """A failed write or hash is not a dropped connection: no retry, and the message says
        so (a full disk would otherwise read as a network fault after minutes of back-off)."""
        if isinstance(error, OSError):
            return DownloadError(
                f"{self.label}: cannot write {self.partial}: {error.strerror or error}; what is "
                "there is kept (free disk space, then re-run to resume)"
            )
        return error

    def _stream(self, resp: Response, done: int, total: int | None, digest) -> int:
        with open(self.partial, "r+b") as handle:
            handle.seek(done)
            attempt = 0
            while True:
                try:
                    done = self._pump(resp, handle, digest, done)
                    resp.close()
                    if total is None or done >= total:
                        handle.flush()
                        os.fsync(handle.fileno())
                        return done
                    raise http.client.IncompleteRead(b"", total - done)
                except (OSError, http.client.HTTPException) as error:
                    resp.close()
                    done = self.pumped  # what the interrupted call wrote before it failed
                    handle.flush()
                    self._save_state(done)
                    if attempt >= self.settings.retries:
                        raise DownloadError(
                            f"{self.label}: connection kept dropping after {done} bytes "
                            f"({type(error).__name__}); re-run to resume"
                        ) from None
                    time.sleep(_retry_delay(self.settings, attempt, None))
                    attempt += 1
                    resp = _with_retries(self.label, self.settings, lambda at=done: self._open(at))
                    if resp.status != 206 and done:  # from 0, a whole answer (200) is right
                        resp.close()
                        raise DownloadError(
                            f"{self.label}: the server stopped honouring Range"
                        ) from None

    def _parallel(self, start: int, total: int, digest, url: str) -> int:  # noqa: PLR0915
        """Segments fetched over several connections; hashed in order as they complete.

        ``connections + 2`` segment buffers are allocated once and recycled: a worker takes a
        free buffer, then the next segment, fills the buffer and writes it in place; the loop
        below hashes buffers in file order and hands them back. Memory is therefore fixed
        (about (connections + 2) x segment_bytes) whatever the file size, and nothing is read
        back from disk. Taking the buffer before the segment keeps it deadlock-free: segments
        leave the queue in order, so the oldest one not yet hashed always belongs to a worker
        that holds a buffer (taking the segment first lets a stalled worker wait for a buffer
        only its own segment would free).
        """
        size = self.settings.segment_bytes
        segments = [(o, min(o + size, total) - 1) for o in range(start, total, size)]
        slots = min(self.settings.connections + 2, len(segments))
        free: queue.Queue = queue.Queue()
        for _ in range(slots):
            free.put(bytearray(size))
        ready: dict[int, tuple[bytearray, int]] = {}
        cond = threading.Condition()
        failure: list[BaseException] = []
        tasks: queue.Queue = queue.Queue()
        for index, segment in enumerate(segments):
            tasks.put((index, segment))
        fd = os.open(self.partial, os.O_WRONLY)
        fetcher = _SegmentFetcher(self, url)
        flushed = start

        def worker() -> None:
            try:
                while True:
                    buffer = None
                    while buffer is None and not failure:
                        try:
                            buffer = free.get(timeout=0.5)
                        except queue.Empty:
                            continue
                    if failure:
                        return
                    try:
                        index, (first, last) = tasks.get_nowait()
                    except queue.Empty:
                        free.put(buffer)
                        return
                    view = memoryview(buffer)[: last - first + 1]
                    try:
                        _with_retries(
                            self.label,
                            self.settings,
                            lambda f=first, la=last, v=view: fetcher.fill(f, la, v),
                        )
                        try:
                            os.pwrite(fd, view, first)
                        except OSError as error:
                            raise self._write_error(error) from None
                    except BaseException as error:  # reported by the hashing loop below
                        failure.append(error)
                        with cond:
                            cond.notify_all()
                        return
                    with cond:
                        ready[index] = (buffer, len(view))
                        cond.notify_all()
            finally:
                fetcher.close_mine()

        threads = [
            threading.Thread(target=worker, daemon=True)
            for _ in range(min(self.settings.connections, len(segments)))
        ]
        for thread in threads:
            thread.start()
        done = start
        try:
            for index in range(len(segments)):
                with cond:
                    while index not in ready and not failure:
                        cond.wait(1.0)
                    if failure and index not in ready:
                        break
                    buffer, count = ready.pop(index)
                digest.update(memoryview(buffer)[:count])
                free.put(buffer)
                done += count
                if done - flushed >= WRITEBACK_BYTES:  # every byte before ``done`` is written
                    _start_writeback(fd, flushed, done - flushed)
                    flushed = done
                self.progress.add(self.item["destination"], count)
                if index % 8 == 7:
                    self._save_state(done)
        finally:
            for thread in threads:
                thread.join(timeout=1)
            os.fsync(fd)
            os.close(fd)
            self._save_state(done)
        if failure:
            error = failure[0]
            raise (
                error
                if isinstance(error, DownloadError)
                else DownloadError(
                    f"{self.label}: {type(error).__name__}: {error}; re-run to resume"
                )
            )
        return done

    def _finish(self, done: int, digest) -> str:
        actual = digest.hexdigest()
        expected = self.item.get("sha256")
        total = self.item.get("size")
        problem = None
        if total is not None and done != total:
            problem = f"size {done} bytes, expected {total}"
        elif expected and actual != expected.lower():
            problem = f"sha256 {actual}, expected {expected.lower()}"
        if problem:
            for path in (self.partial, self.state_path):
                if os.path.exists(path):
                    os.unlink(path)
            raise DownloadError(
                f"{self.label}: the downloaded file does not match ({problem}); it was deleted, "
                "nothing is under the final name; re-run, and check the catalog's sha256 if it "
                "happens again"
            )
        os.replace(self.partial, self.path)
        if os.path.exists(self.state_path):
            os.unlink(self.state_path)
        return actual


# -- executing a plan ------------------------------------------------------------------------


def _record(forge_dir: str, item: dict[str, Any], sha: str) -> dict[str, Any]:
    size, mtime_ns = _stat(os.path.join(forge_dir, item["destination"])) or (0, 0)
    return {
        "size": size,
        "mtime_ns": mtime_ns,
        "sha256": sha,
        "kind": item.get("kind"),
        "entry_key": item.get("entry_key"),
        "source": item["label"],
        "revision": item.get("revision"),
        "base_model": item.get("base_model"),
    }


def _execute_one(
    item: dict[str, Any], forge_dir: str, settings: Settings, progress: Progress
) -> dict[str, Any]:
    path = os.path.join(forge_dir, item["destination"])
    action = item["action"]
    result = {
        "label": item["label"],
        "destination": item["destination"],
        "path": path,
        "kind": item.get("kind"),
        "base_model": item.get("base_model"),
        "declared_family": item.get("declared_family"),
    }
    if action == "present":
        # Known by its entry: nothing to record. Found by destination for a changed entry
        # (e.g. a new label): record the new entry key so the next run asks nobody.
        fresh = item.get("url") is not None
        return {
            **result,
            "action": "present",
            "sha256": item["sha256"],
            "size": item["size"],
            "record": _record(forge_dir, item, item["sha256"]) if fresh else None,
        }
    if action == "verify":
        actual = sha256_file(path)
        if item.get("sha256") in (None, actual):
            return {
                **result,
                "action": "verified",
                "sha256": actual,
                "size": os.path.getsize(path),
                "record": _record(forge_dir, item, actual),
            }
        action = "repaired"
    sha = _Fetch(item, path, settings, progress).run()
    progress.end(item["destination"], "done")
    return {
        **result,
        "action": "repaired" if action in ("repair", "repaired") else "downloaded",
        "sha256": sha,
        "size": os.path.getsize(path),
        "record": _record(forge_dir, item, sha),
    }


def hold_lock(forge_dir: str):
    """An exclusive lock on the Forge folder's downloads, held until the returned file closes.

    Two runs at once (an async job still running when the play is started again) would write
    the same partial files and manifest; the second one fails at once instead, naming the
    first one's process id.
    """
    path = os.path.join(forge_dir, LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open as the lock, closed by the caller
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DownloadError(
            f"another model download is running in {forge_dir} (process {holder}); wait for it "
            "to finish (its progress file shows how far it is) or stop it, then re-run"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def execute(plan: list[dict[str, Any]], forge_dir: str, settings: Settings) -> dict[str, Any]:
    """Carry out a plan; returns {"files": [...], "errors": [...], "changed": bool}.

    Holds the Forge folder's download lock while anything is to be written (a plan of files
    all present takes no lock and writes nothing); a second run at the same time fails.
    """
    busy = any(item["action"] != "present" for item in plan)
    lock = hold_lock(forge_dir) if busy else None
    try:
        return _execute(plan, forge_dir, settings)
    finally:
        if lock is not None:
            lock.close()


def _execute(plan: list[dict[str, Any]], forge_dir: str, settings: Settings) -> dict[str, Any]:
    progress = Progress(settings.progress_file, settings.progress_interval)
    for item in plan:
        if item["action"] in ("download", "repair"):
            progress.queue(item["destination"], item.get("size") or item.get("size_estimate"))
    progress.write()  # replaces a finished file from an earlier run straight away
    stop = threading.Event()
    writer = threading.Thread(target=progress.keep_writing, args=(stop,), daemon=True)
    writer.start()
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    manifest = load_manifest(forge_dir)
    try:
        with ThreadPoolExecutor(max_workers=settings.parallel_files) as pool:
            futures = [
                (item, pool.submit(_execute_one, item, forge_dir, settings, progress))
                for item in plan
            ]
            for item, future in futures:
                try:
                    outcome = future.result()
                except DownloadError as error:
                    errors.append(str(error))
                    progress.end(item["destination"], "failed")
                    continue
                except OSError as error:
                    errors.append(f"{item['label']}: {type(error).__name__}: {error}")
                    progress.end(item["destination"], "failed")
                    continue
                record = outcome.pop("record")
                if record is not None:
                    manifest[item["destination"]] = record
                results.append(outcome)
        if manifest != load_manifest(forge_dir):
            save_manifest(forge_dir, manifest)  # a re-run with nothing to do writes nothing
    finally:
        stop.set()
        writer.join()
        progress.finished = True
        progress.result = {"errors": len(errors), "files": len(results)}
        progress.write()
    return {
        "files": results,
        "errors": errors,
        "changed": any(r["action"] in ("downloaded", "repaired") for r in results),
    }
