"""Stand-in for Hugging Face and CivitAI, with a second host playing their CDN / storage.

Honours the Hugging Face resolve endpoint and CivitAI API v1 contracts written down in
tests/DOUBLES.md ("model_hub"): Bearer auth, gated repositories (401 without a token, 403 with
a token not granted, X-Error-Code: GatedRepo), 404 with X-Error-Code, HEAD metadata
(X-Linked-Etag = sha256, X-Linked-Size, X-Repo-Commit) with a 302 to the CDN, CivitAI version
JSON with files[].hashes.SHA256, download redirects to a pre-signed storage URL, and a storage
host that answers 400 to any request carrying Authorization. Knobs for failure: 429 with
Retry-After, 500, a connection dropped mid-body, an HTML login page, a per-connection
bandwidth cap. Every request is logged for tests to assert on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Blob:
    path: Path
    sha256: str
    size: int


@dataclass
class HubState:
    tokens: set[str] = field(default_factory=set)  # valid HF tokens
    granted: set[str] = field(default_factory=set)  # tokens granted access to gated repos
    civitai_keys: set[str] = field(default_factory=set)
    hf_files: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    civitai_versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    civitai_models: dict[int, list[int]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)  # old repo -> new (307 on the hub)
    blobs: dict[str, Blob] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    # failure knobs, consumed as they fire
    fail_statuses: list[int] = field(default_factory=list)  # next CDN GETs answer these
    api_fail_statuses: list[int] = field(default_factory=list)  # next API requests likewise
    retry_after: str = "1"
    drop_after_bytes: int | None = None  # next CDN body is cut after this many bytes
    bytes_per_second: int | None = None  # per-connection bandwidth cap on the CDN
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-body on purpose (resume tests, a probe before ranged fetches).
        pass


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: ModelHub

    def log_message(self, *args: Any) -> None:
        pass

    def _log(self, role: str) -> dict[str, Any]:
        entry = {
            "host": role,
            "method": self.command,
            "path": self.path.split("?")[0],
            "query": self.path.partition("?")[2],
            "authorization": "Authorization" in self.headers,
            "headers": sorted({name.lower() for name in self.headers}),
            "range": self.headers.get("Range"),
        }
        with self.hub.state.lock:
            self.hub.state.log.append(entry)
        return entry

    def _token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


class _ApiHandler(_Handler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._log("api")
        path = self.path.split("?")[0]
        with self.hub.state.lock:
            failing = self.hub.state.api_fail_statuses
            status = failing.pop(0) if failing else None
        if status:
            extra = {"Retry-After": self.hub.state.retry_after} if status == 429 else {}
            return _send(self, status, b'{"error":"busy"}', extra)
        if match := re.match(r"^/api/v1/model-versions/(\d+)$", path):
            return self._civitai_version(int(match.group(1)))
        if match := re.match(r"^/api/v1/models/(\d+)$", path):
            return self._civitai_model(int(match.group(1)))
        if match := re.match(r"^/api/download/models/(\d+)$", path):
            return self._civitai_download(int(match.group(1)))
        if path == "/login":
            page = b"<!DOCTYPE html><html><body>Sign in to CivitAI</body></html>"
            return _send(self, 200, page, content_type="text/html; charset=utf-8")
        if match := re.match(r"^/(.+?/.+?)/resolve/([^/]+)/(.+)$", path):
            return self._hf_resolve(match.group(1), match.group(2), match.group(3))
        return _send(self, 404, b'{"error":"not found"}')

    # Hugging Face
    def _hf_resolve(self, repo: str, revision: str, file: str) -> None:
        state = self.hub.state
        token = self._token()
        if repo in state.renamed:
            # As the Hub does for a renamed repository: a relative redirect on the hub itself.
            location = f"/{state.renamed[repo]}/resolve/{revision}/{file}"
            return _send(self, 307, b"", {"Location": location})
        if token is not None and token not in state.tokens:
            return _send(self, 401, b'{"error":"Invalid credentials in Authorization header"}')
        spec = state.hf_files.get((repo, file))
        repo_known = any(r == repo for r, _ in state.hf_files)
        if spec and spec.get("gated"):
            if token is None:
                body = json.dumps(
                    {
                        "error": f"Access to model {repo} is restricted. You must "
                        "have access to it and be authenticated to access it."
                    }
                )
                return _send(self, 401, body.encode(), {"X-Error-Code": "GatedRepo"})
            if token not in state.granted:
                body = json.dumps(
                    {
                        "error": f"Access to model {repo} is restricted and you are "
                        "not in the authorized list."
                    }
                )
                return _send(self, 403, body.encode(), {"X-Error-Code": "GatedRepo"})
        if not repo_known:
            return _send(
                self, 404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}
            )
        if spec is None or revision not in ("main", spec.get("commit")):
            return _send(
                self, 404, b'{"error":"Entry not found"}', {"X-Error-Code": "EntryNotFound"}
            )
        blob = state.blobs[spec["blob"]]
        location = self.hub.cdn_url(spec["blob"])
        _send(
            self,
            302,
            b"",
            {
                "Location": location,
                "X-Linked-Etag": f'"{blob.sha256}"',
                "X-Linked-Size": str(blob.size),
                "X-Repo-Commit": spec.get("commit", "c0ffee"),
                "ETag": f'"{blob.sha256}"',
            },
        )

    # CivitAI
    def _civitai_auth_ok(self) -> bool:
        return self._token() in self.hub.state.civitai_keys

    def _civitai_version(self, version_id: int) -> None:
        version = self.hub.state.civitai_versions.get(version_id)
        if version is None:
            return _send(self, 404, b'{"error":"No model version with id"}')
        public = {k: v for k, v in version.items() if not k.startswith("_")}
        _send(self, 200, json.dumps(public).encode())

    def _civitai_model(self, model_id: int) -> None:
        versions = self.hub.state.civitai_models.get(model_id)
        if versions is None:
            return _send(self, 404, b'{"error":"No model with id"}')
        body = {
            "id": model_id,
            "name": f"model {model_id}",
            "modelVersions": [
                {
                    k: v
                    for k, v in self.hub.state.civitai_versions[v].items()
                    if not k.startswith("_")
                }
                for v in versions
            ],
        }
        _send(self, 200, json.dumps(body).encode())

    def _civitai_download(self, version_id: int) -> None:
        version = self.hub.state.civitai_versions.get(version_id)
        if version is None:
            return _send(self, 404, b'{"error":"Not found"}')
        if version.get("_restricted") and not self._civitai_auth_ok():
            if version.get("_login_page"):
                return _send(self, 302, b"", {"Location": "/login?returnUrl=/models"})
            return _send(self, 401, b'{"error":"Unauthorized"}')
        if version.get("_early_access"):
            return _send(self, 200, b'{"error":"This model is in early access"}')
        file = (
            next(f for f in version["files"] if f.get("primary"))
            if len(version["files"]) == 1
            else self._pick(version["files"])
        )
        _send(
            self,
            307,
            b"",
            {
                "Location": self.hub.cdn_url(file["_blob"]),
                "Content-Disposition": f'attachment; filename="{file["name"]}"',
            },
        )

    def _pick(self, files: list[dict[str, Any]]) -> dict[str, Any]:
        query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
        for item in files:
            meta = item.get("metadata") or {}
            if all(
                query.get(k) in (None, v)
                for k, v in (
                    ("type", item.get("type")),
                    ("format", meta.get("format")),
                    ("fp", meta.get("fp")),
                    ("size", meta.get("size")),
                )
            ):
                return item
        return next(f for f in files if f.get("primary"))


class _CdnHandler(_Handler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        entry = self._log("cdn")
        state = self.hub.state
        if "Authorization" in self.headers:
            # The real pre-signed storage host rejects requests that carry Authorization.
            return _send(
                self,
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth "
                b"mechanism allowed</Message></Error>",
                content_type="application/xml",
            )
        match = re.match(r"^/blob/([0-9a-f]+)$", self.path.split("?")[0])
        if not match or match.group(1) not in state.blobs or "sig=" not in self.path:
            return _send(
                self,
                403,
                b"<Error><Code>AccessDenied</Code></Error>",
                content_type="application/xml",
            )
        with state.lock:
            failing = state.fail_statuses.pop(0) if state.fail_statuses else None
            drop = state.drop_after_bytes
            state.drop_after_bytes = None
        if failing:
            extra = {"Retry-After": state.retry_after} if failing == 429 else {}
            return _send(self, failing, b"busy", extra, content_type="text/plain")
        blob = state.blobs[match.group(1)]
        start, end = 0, blob.size - 1
        status = 200
        if rng := self.headers.get("Range"):
            found = re.match(r"bytes=(\d+)-(\d*)$", rng)
            if not found or int(found.group(1)) >= blob.size:
                return _send(self, 416, b"", {"Content-Range": f"bytes */{blob.size}"})
            start = int(found.group(1))
            end = min(int(found.group(2)), blob.size - 1) if found.group(2) else blob.size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{blob.size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        entry["started"] = time.monotonic()
        entry["sha256"] = blob.sha256
        entry["bytes_sent"] = 0
        try:
            self._body(blob, (start, end), drop, state.bytes_per_second, entry)
        finally:
            entry["ended"] = time.monotonic()

    def _body(
        self,
        blob: Blob,
        span: tuple[int, int],
        drop: int | None,
        cap: int | None,
        entry: dict[str, Any],
    ) -> None:
        start, end = span
        sent = 0
        began = time.monotonic()
        with open(blob.path, "rb") as handle:
            handle.seek(start)
            remaining = end - start + 1
            # Capped: small chunks, each sent only when the cap allows it (no burst ahead).
            size = max(min(256 * 1024, cap // 50), 4096) if cap else 256 * 1024
            while remaining:
                chunk = handle.read(min(remaining, size))
                if cap:
                    ahead = (sent + len(chunk)) / cap - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
                if drop is not None and sent + len(chunk) > drop:
                    self.wfile.write(chunk[: max(drop - sent, 0)])
                    self.wfile.flush()
                    entry["bytes_sent"] = sent + max(drop - sent, 0)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                entry["bytes_sent"] = sent
                remaining -= len(chunk)


WILDCARD_ADDRESSES = ("", "0.0.0.0", "::", "*")


def check_address(address: str) -> str:
    """The stand-in listens only on an address it is given: loopback or the lab network's
    gateway. A wildcard would expose fake credentials and models to every network."""
    if address.strip() in WILDCARD_ADDRESSES:
        raise ValueError(
            f"refusing to listen on {address!r}: pass one address, e.g. 127.0.0.1 or the "
            "lab network's gateway"
        )
    return address


class ModelHub:
    """Two servers on ``address``: the API (HF + CivitAI) and the CDN / storage host."""

    def __init__(
        self,
        address: str = "127.0.0.1",
        api_port: int = 0,
        cdn_port: int = 0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.state = HubState()
        self.address = check_address(address)
        self.tls = tls
        api = type("Api", (_ApiHandler,), {"hub": self})
        cdn = type("Cdn", (_CdnHandler,), {"hub": self})
        self.api_server = _Server((address, api_port), api)
        self.cdn_server = _Server((address, cdn_port), cdn)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            for server in (self.api_server, self.cdn_server):
                server.socket = context.wrap_socket(server.socket, server_side=True)
        self._threads: list[threading.Thread] = []

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def api_url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.api_server.server_address[1]}"

    @property
    def cdn_base(self) -> str:
        return f"{self.scheme}://{self.address}:{self.cdn_server.server_address[1]}"

    def cdn_url(self, blob: str) -> str:
        return f"{self.cdn_base}/blob/{blob}?sig={secrets.token_hex(8)}&se=2099-01-01"

    def start(self) -> ModelHub:
        for server in (self.api_server, self.cdn_server):
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self.api_server, self.cdn_server):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> ModelHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content --------------------------------------------------------------------------

    def add_blob(self, path: str | os.PathLike) -> str:
        path = Path(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        self.state.blobs[sha[:16]] = Blob(path, sha, path.stat().st_size)
        return sha[:16]

    def add_hf_file(
        self,
        repo: str,
        file: str,
        path: str | os.PathLike,
        *,
        gated: bool = False,
        commit: str = "4c1b2f0e",
    ) -> str:
        blob = self.add_blob(path)
        self.state.hf_files[(repo, file)] = {"blob": blob, "gated": gated, "commit": commit}
        return self.state.blobs[blob].sha256

    def add_civitai_version(
        self,
        version_id: int,
        model_id: int,
        path: str | os.PathLike,
        *,
        name: str,
        model_type: str = "LORA",
        base_model: str = "SD 1.5",
        restricted: bool = False,
        login_page: bool = False,
        early_access: bool = False,
        extra_files: list[dict] | None = None,
    ) -> dict[str, Any]:
        blob = self.add_blob(path)
        info = self.state.blobs[blob]
        files = [
            {
                "id": version_id * 10,
                "name": name,
                "type": "Model",
                "primary": True,
                "sizeKB": info.size / 1024,
                "_blob": blob,
                "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                "hashes": {"SHA256": info.sha256.upper(), "AutoV2": info.sha256[:10].upper()},
                "pickleScanResult": "Success",
                "virusScanResult": "Success",
                "downloadUrl": f"{self.api_url}/api/download/models/{version_id}",
            },
            *(extra_files or []),
        ]
        version = {
            "id": version_id,
            "modelId": model_id,
            "name": f"v{version_id}",
            "baseModel": base_model,
            "baseModelType": "Standard",
            "air": f"urn:air:sd1:lora:civitai:{model_id}@{version_id}",
            "model": {"name": f"model {model_id}", "type": model_type, "nsfw": False},
            "trainedWords": [],
            "files": files,
            "downloadUrl": f"{self.api_url}/api/download/models/{version_id}",
            "_restricted": restricted,
            "_login_page": login_page,
            "_early_access": early_access,
        }
        self.state.civitai_versions[version_id] = version
        self.state.civitai_models.setdefault(model_id, []).insert(0, version_id)
        return version

    def serve(
        self,
        hf: dict[tuple[str, str], str | os.PathLike] | None = None,
        civitai: dict[int, str | os.PathLike] | None = None,
    ) -> ModelHub:
        """Serve real files: ``{(repo, file): path}`` and ``{version_id: path}`` (a CivitAI
        version of model ``version_id // 10``, named after the file, type Checkpoint)."""
        for (repo, file), path in (hf or {}).items():
            self.add_hf_file(repo, file, path)
        for version_id, path in (civitai or {}).items():
            self.add_civitai_version(
                version_id, version_id // 10, path, name=Path(path).name, model_type="Checkpoint"
            )
        return self

    def cdn_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.state.log if r["host"] == "cdn"]

    def peak_parallel(self, ranged_only: bool = False) -> int:
        """The most CDN bodies that were being sent at the same time (from the log's
        ``started``/``ended``): how many connections a client really used at once.
        ``ranged_only`` counts only segment requests (``Range: bytes=a-b``)."""
        events = []
        for entry in self.cdn_requests():
            if "started" not in entry:
                continue
            if ranged_only and not re.match(r"bytes=\d+-\d+$", entry["range"] or ""):
                continue
            events += [(entry["started"], 1), (entry.get("ended", float("inf")), -1)]
        peak = active = 0
        for _, step in sorted(events):
            active += step
            peak = max(peak, active)
        return peak

    def bytes_served(self) -> dict[str, int]:
        """Body bytes the CDN sent, per file (sha256): what crossed "the internet"."""
        served: dict[str, int] = {}
        for entry in self.cdn_requests():
            if entry.get("bytes_sent"):
                served[entry["sha256"]] = served.get(entry["sha256"], 0) + entry["bytes_sent"]
        return served

    def api_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.state.log if r["host"] == "api"]
