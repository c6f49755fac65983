"""Stand-in for Microsoft's AzCopy download site: serves release tarballs over HTTPS.

Contract (Microsoft's release tarball, as `sync_azcopy_url` expects it): GET (and HEAD)
/<name>.tar.gz answer 200 with a gzip'd tar holding `azcopy_linux_amd64_<version>/azcopy`
(the real AzCopy binary, here the one npm's @azure-tools/azcopy-linux ships); unknown paths
answer 404. Requests are logged for tests to assert on.
"""

from __future__ import annotations

import hashlib
import io
import json
import ssl
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lab.paths import REPO_ROOT

NPM_AZCOPY = REPO_ROOT / "node_modules/@azure-tools/azcopy-linux/dist/bin/azcopy_linux_amd64"


def azcopy_version() -> str:
    package = NPM_AZCOPY.parents[2] / "package.json"
    return json.loads(package.read_text())["version"]


def build_azcopy_tarball(out_dir: Path) -> tuple[Path, str]:
    """Microsoft's layout from the npm binary: azcopy_linux_amd64_<v>/azcopy, mode 0755."""
    if not NPM_AZCOPY.exists():
        raise FileNotFoundError(f"{NPM_AZCOPY} is missing: run scripts/bootstrap (npm install)")
    version = azcopy_version()
    name = f"azcopy_linux_amd64_{version}"
    tarball = out_dir / f"{name}.tar.gz"
    if not tarball.exists():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
            info = archive.gettarinfo(str(NPM_AZCOPY), arcname=f"{name}/azcopy")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "root", "root"
            with NPM_AZCOPY.open("rb") as handle:
                archive.addfile(info, handle)
        out_dir.mkdir(parents=True, exist_ok=True)
        tarball.write_bytes(buffer.getvalue())
    return tarball, hashlib.sha256(tarball.read_bytes()).hexdigest()


class DownloadSite:
    """Serve the files of ``root`` over HTTPS on ``host`` (a free port) while in use."""

    def __init__(self, host: str, root: Path, tls: tuple[str, str]) -> None:
        self.root = root
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                site.requests.append(f"{self.command} {self.path}")
                path = (site.root / self.path.lstrip("/")).resolve()
                if site.root.resolve() not in path.parents or not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DownloadSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
