"""The Forge stand-in served to the lab VMs: real git repositories behind a real git server,
and a package index for the packages its preparation step installs.

- ``build(out_dir)`` commits ``tests/doubles/forge/repo/`` into a bare repository with two
  commits (tag ``v1.0.0`` on the first, ``main`` at the second) and builds a small extension
  repository the same way (two commits), plus stand-in wheels (torch/torchvision per CUDA
  build, Forge's requirement) laid out as PEP 503 "simple" indexes. Commits are
  deterministic: the same tree always gives the same commit ids.
- ``serving(gateway, out_dir)`` runs ``git daemon`` (git's own server, ``git://``) and an
  HTTPS package index (lab CA) on the lab network's gateway while the block runs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.doubles.share_relay import ShareRelay

from .paths import REPO_ROOT
from .process_group import stop_group
from .tls import issue_server_cert

FORGE_TREE = REPO_ROOT / "tests" / "doubles" / "forge" / "repo"
MINIFORGE_HEADER = REPO_ROOT / "tests" / "doubles" / "miniforge" / "installer.sh"
CONDA_DOUBLE = REPO_ROOT / "tests" / "doubles" / "rootfs" / "anaconda" / "bin" / "conda"
MINIFORGE_INSTALLER = "miniforge/Miniforge3-24.1.2-0-Linux-x86_64.sh"
FORGE_REPO = "stable-diffusion-webui-forge.git"
EXTENSION_REPO = "sd-forge-standin-extension.git"
FORGE_TAG = "v1.0.0"
CUDA_BUILDS = ("cu118", "cu121", "cu124")
# Where pip on a lab VM finds the lab CA (the system store, which trusts it after `up`).
VM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# The stand-in UI belongs to the webui stage; until it exists the repository carries this.
_PLACEHOLDER_UI = '''"""Placeholder for the stand-in web UI (the webui stage provides it)."""

import sys


def serve(args):
    print("standin_webui: the stand-in web UI is not part of this repository yet", flush=True)
    sys.exit(1)
'''

_TORCH_INIT = '''"""Forge Fleet lab stand-in for torch {version}: what Forge's launch checks."""

__version__ = "{version}"

from . import cuda  # noqa: E402
'''

_TORCH_CUDA = '''"""torch.cuda stand-in: a GPU is there when nvidia-smi answers."""

import subprocess


def is_available():
    try:
        answer = subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=False)
        return answer.returncode == 0
    except OSError:
        return False
'''


@dataclass(frozen=True)
class Built:
    """What ``build`` made: bare repositories, their commits, and the package indexes."""

    root: Path
    forge_commits: tuple[str, str]  # (tagged first commit, main)
    extension_commits: tuple[str, str]

    @property
    def git_dir(self) -> Path:
        return self.root / "git"

    @property
    def www_dir(self) -> Path:
        return self.root / "www"


@dataclass
class Served:
    """URLs of a running git server and package index, and the settings for a playbook."""

    built: Built
    git_url: str
    index_url: str
    share_relay: ShareRelay | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def forge_url(self) -> str:
        return f"{self.git_url}/{FORGE_REPO}"

    @property
    def extension_url(self) -> str:
        return f"{self.git_url}/{EXTENSION_REPO}"

    @property
    def miniforge_url(self) -> str:
        return f"{self.index_url}/{MINIFORGE_INSTALLER}"

    @property
    def miniforge_sha256(self) -> str:
        return hashlib.sha256((self.built.www_dir / MINIFORGE_INSTALLER).read_bytes()).hexdigest()

    def settings(self) -> dict[str, object]:
        """Role inputs that aim the conda/forge stages at the stand-ins."""
        return {
            "forge_repo_url": self.forge_url,
            "forge_version": self.built.forge_commits[1],
            "forge_extensions": [
                {"url": self.extension_url, "version": self.built.extension_commits[1]}
            ],
            "forge_torch_index_base": f"{self.index_url}/whl",
            "forge_pip_index_url": f"{self.index_url}/simple",
            "forge_pip_cert": VM_CA_BUNDLE,
            # used only with conda_install: true (a host without conda)
            "conda_installer_url": self.miniforge_url,
            "conda_installer_sha256": self.miniforge_sha256,
            # share links through the lab's share server, asked by the controller through it
            **(
                {
                    "webui_share_server": self.share_relay.tunnel_address,
                    "webui_share_check_via": self.share_relay.public_url,
                }
                if self.share_relay
                else {}
            ),
        }


# -- building ---------------------------------------------------------------------------

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Forge Fleet lab",
    "GIT_AUTHOR_EMAIL": "lab@forge-fleet.invalid",
    "GIT_COMMITTER_NAME": "Forge Fleet lab",
    "GIT_COMMITTER_EMAIL": "lab@forge-fleet.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git(cwd: Path, *args: str, date: str = "2025-06-01T12:00:00Z") -> str:
    env = {**os.environ, **_GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def _commit_all(work: Path, message: str, date: str) -> str:
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", message, date=date)
    return _git(work, "rev-parse", "HEAD")


def _bare(work: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(dest)],
        env={**os.environ, **_GIT_ENV},
        check=True,
        capture_output=True,
    )


def _forge_repo(work: Path, dest: Path) -> tuple[str, str]:
    shutil.copytree(FORGE_TREE, work, ignore=shutil.ignore_patterns("__pycache__"))
    ui = work / "modules" / "standin_webui.py"
    if not ui.exists():
        ui.parent.mkdir(parents=True, exist_ok=True)
        ui.write_text(_PLACEHOLDER_UI)
    _git(work, "init", "-q", "-b", "main")
    (work / "VERSION").write_text("1.0.0\n")
    first = _commit_all(work, "Forge stand-in 1.0.0", "2025-06-01T12:00:00Z")
    _git(work, "tag", FORGE_TAG)
    (work / "VERSION").write_text("1.1.0\n")
    # Forge's history changes its tracked webui-user.sh now and then: so does the stand-in's,
    # so a checkout whose webui-user.sh was edited cannot move between these two commits.
    with (work / "webui-user.sh").open("a") as settings:
        settings.write('\n# Uncomment to disable TCMalloc\n#export NO_TCMALLOC="True"\n')
    second = _commit_all(work, "Forge stand-in 1.1.0", "2025-06-26T12:00:00Z")
    _bare(work, dest)
    return first, second


def _extension_repo(work: Path, dest: Path) -> tuple[str, str]:
    (work / "scripts").mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    script = work / "scripts" / "standin_extension.py"
    (work / "README.md").write_text("A Forge extension stand-in for the Forge Fleet lab.\n")
    script.write_text('EXTENSION_VERSION = "1"\n')
    first = _commit_all(work, "Extension 1", "2025-05-01T12:00:00Z")
    script.write_text('EXTENSION_VERSION = "2"\n')
    second = _commit_all(work, "Extension 2", "2025-05-02T12:00:00Z")
    _bare(work, dest)
    return first, second


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(out_dir: Path, name: str, version: str, files: dict[str, str], requires=()) -> Path:
    """A pure-Python wheel (py3-none-any) with ``files``; byte-identical for the same input."""
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "Summary: Forge Fleet lab stand-in package\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    contents = {
        **files,
        f"{dist}.dist-info/METADATA": metadata,
        f"{dist}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: forge-lab\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [f"{p},{_record_hash(c.encode())},{len(c.encode())}" for p, c in contents.items()]
    record.append(f"{dist}.dist-info/RECORD,,")
    contents[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in contents.items():
            info = zipfile.ZipInfo(member, date_time=(2025, 6, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return path


def _indexes(www: Path) -> None:
    for cuda in CUDA_BUILDS:
        torch_version = f"2.3.1+{cuda}"
        build_wheel(
            www / "whl" / cuda / "torch",
            "torch",
            torch_version,
            {
                "torch/__init__.py": _TORCH_INIT.format(version=torch_version),
                "torch/cuda.py": _TORCH_CUDA,
            },
        )
        build_wheel(
            www / "whl" / cuda / "torchvision",
            "torchvision",
            f"0.18.1+{cuda}",
            {"torchvision/__init__.py": f'__version__ = "0.18.1+{cuda}"\n'},
            requires=["torch==2.3.1"],
        )
    build_wheel(
        www / "simple" / "forge-standin-deps",
        "forge-standin-deps",
        "1.0.0",
        {"forge_standin_deps/__init__.py": '__version__ = "1.0.0"\n'},
    )


def miniforge_installer(dest: Path) -> Path:
    """The Miniforge installer stand-in: its shell header, then the conda double as payload."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(MINIFORGE_HEADER.read_bytes() + CONDA_DOUBLE.read_bytes())
    return dest


def build(out_dir: Path) -> Built:
    """Build the repositories and package indexes under ``out_dir`` (replacing earlier ones)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    work = out_dir / "work"
    forge = _forge_repo(work / "forge", out_dir / "git" / FORGE_REPO)
    extension = _extension_repo(work / "extension", out_dir / "git" / EXTENSION_REPO)
    shutil.rmtree(work)
    _indexes(out_dir / "www")
    miniforge_installer(out_dir / "www" / MINIFORGE_INSTALLER)
    return Built(out_dir, forge, extension)


# -- serving ----------------------------------------------------------------------------


def stable_ports(gateway: str, key: str) -> tuple[int, int]:
    """Two ports derived from ``key`` (41000-46999), or (0, 0) when either is taken."""
    base = 41000 + (zlib.crc32(key.encode()) % 3000) * 2
    for port in (base, base + 1):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((gateway, port))
            except OSError:
                return (0, 0)
    return (base, base + 1)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait_listening(host: str, port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"git daemon exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"git daemon did not listen on {host}:{port} within {timeout}s")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def start_git_daemon(gateway: str, port: int, base: Path | str) -> subprocess.Popen:
    """``git daemon`` serving every repository under ``base`` on ``gateway:port``, in a
    process group of its own (stop_git_daemon), once it listens."""
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--informative-errors",
            f"--base-path={base}",
            f"--listen={gateway}",
            f"--port={port}",
            str(base),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its group: the upload-pack of a clone in flight stops with it
    )
    _wait_listening(gateway, port, daemon)
    return daemon


def stop_git_daemon(daemon: subprocess.Popen) -> None:
    stop_group(daemon.pid, lambda: daemon.poll() is None)


@contextlib.contextmanager
def serving(
    gateway: str,
    out_dir: Path,
    ports: tuple[int, int] = (0, 0),
    share_ports: tuple[int, int] = (0, 0),
) -> Iterator[Served]:
    """Build, then serve the repositories (git daemon), the package index (HTTPS) and gradio's
    share server for the stand-in's links (tests/doubles/share_relay.py).

    ``ports``: (git, index); ``share_ports``: (tunnel, public); 0 = any free port. Fixed ports
    keep the URLs of a lab the same from one run to the next, so a re-run sees no change of
    origin, index or share server.
    """
    built = build(out_dir)
    git_port = ports[0] or _free_port(gateway)
    daemon = start_git_daemon(gateway, git_port, built.git_dir)
    server = None
    relay = ShareRelay(gateway, ports=share_ports)
    try:
        relay.__enter__()
        cert, key = issue_server_cert([gateway], out_dir / "tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))

        def handler(*args: object) -> _QuietHandler:
            return _QuietHandler(*args, directory=str(built.www_dir))

        server = http.server.ThreadingHTTPServer((gateway, ports[1]), handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield Served(
            built=built,
            git_url=f"git://{gateway}:{git_port}",
            index_url=f"https://{gateway}:{server.server_address[1]}",
            share_relay=relay,
        )
    finally:
        relay.__exit__(None, None, None)
        if server is not None:
            server.shutdown()
            server.server_close()
        stop_git_daemon(daemon)
