"""What a lab VM needs to run the REAL Stable Diffusion WebUI Forge (not the stand-in).

- ``upstream()``: where the upstream sources are (Forge at the project's pin, its assets,
  huggingface_guess, BLIP, the CLIP and open_clip archives): ``FORGE_UPSTREAM`` (a folder or
  a URL base), else ``<repo root>/../shared/upstream``; None when neither is there.
- ``serving_upstream(gateway, source, folder)``: a folder is served to the VMs from this
  machine as the lab serves its Forge stand-in: ``git daemon`` for the repositories and an
  HTTPS server (lab CA) for the archives, both on the lab network's gateway. The bare
  repositories are read as they are (git daemon writes nothing), and a VM reaches them the way
  a real VM reaches GitHub: over the network, from a clone of its own.
- ``trust_this_machines_cas(handle, host)``: the VM trusts what this machine trusts (the
  TLS-intercepting proxy's CA, on the way to PyPI).
- ``pip_cache_volume()``: a pip cache kept on this machine between runs, mounted into the VM.
- ``random_sd15_checkpoint()``: a full-shape SD 1.5 checkpoint with small random weights.
- ``png_pixels(data)``: a PNG decoded with the standard library (and numpy for the filters).

Nothing here is a double: Forge, pip, PyPI, git and the models stage are the real ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import ssl
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import forge_repo, podman
from lab.paths import REPO_ROOT
from lab.tls import issue_server_cert
from tests.fixtures.models import YAML_DTYPES, _listing

FORGE_REPO = "stable-diffusion-webui-forge.git"
ASSETS_REPO = "stable-diffusion-webui-assets.git"
ASSETS_COMMIT = "6f7db241d2f8ba7457bac5ca9753331f0c266917"
HUGGINGFACE_GUESS_REPO = "huggingface_guess.git"
HUGGINGFACE_GUESS_COMMIT = "84826248b49bb7ca754c73293299c4d4e23a548d"
BLIP_REPO = "BLIP.git"
# Forge wants BLIP at 48211a1; the upstream folder holds that tree as one commit without its
# README image (the snapshot available), so BLIP_COMMIT_HASH names that commit instead
BLIP_COMMIT = "07d7597e4755e7546a8be671185be365c69571b6"
CLIP_ZIP = "CLIP-d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
OPENCLIP_ZIP = "open_clip-bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b.zip"
UPSTREAM_FILES = (
    FORGE_REPO,
    ASSETS_REPO,
    HUGGINGFACE_GUESS_REPO,
    BLIP_REPO,
    CLIP_ZIP,
    OPENCLIP_ZIP,
)

# pip's cache inside the VM (a folder of this machine, mounted) and the VM's pip.conf naming it.
# pip's own HTTP cache stores nothing here: the TLS-intercepting proxy on the way to PyPI drops
# the caching headers. So the wheels a preparation installed are kept in a folder of their own,
# behind a file:// "simple" index named as pip's extra index: of two equal candidates pip's
# resolver takes the one from the index listed last, so the kept wheel wins over PyPI's (a
# find-links folder would lose the tie). pip's cache keeps the wheels it built (CLIP, open_clip).
VM_PIP_CACHE = "/var/cache/forge-lab/pip"
VM_WHEELHOUSE = f"{VM_PIP_CACHE}/wheels"
VM_SIMPLE_INDEX = f"{VM_PIP_CACHE}/simple"
# This machine's CAs (the proxy's among them), as a real VM's administrator installs them.
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
VM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def cache_home() -> Path:
    """This machine's cache for the real-Forge tier, outside the checkout (never committed)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "forge-fleet-lab"


def upstream() -> str | None:
    """The upstream sources: FORGE_UPSTREAM (folder or URL base) or the shared folder."""
    given = os.environ.get("FORGE_UPSTREAM", "")
    if given.startswith(("http://", "https://", "git://")):
        return given.rstrip("/")
    folder = Path(given) if given else REPO_ROOT.parent / "shared" / "upstream"
    if all((folder / name).exists() for name in UPSTREAM_FILES):
        return str(folder.resolve())
    return None


def upstream_missing_reason() -> str:
    given = os.environ.get("FORGE_UPSTREAM", "")
    folder = given or str(REPO_ROOT.parent / "shared" / "upstream")
    return (
        f"the real Forge's upstream sources are not at {folder} (FORGE_UPSTREAM, or"
        f" <repo>/../shared/upstream): it needs {', '.join(UPSTREAM_FILES)}"
    )


@dataclass(frozen=True)
class Upstream:
    git_base: str  # <git_base>/<name>.git
    file_base: str  # <file_base>/<archive>.zip
    # the HTTPS server's request lines, when this machine serves the folder (else None)
    requests: list[str] | None = None

    @property
    def forge_url(self) -> str:
        return f"{self.git_base}/{FORGE_REPO}"

    def environment(self, **overrides: str) -> dict[str, str]:
        """The variables Forge's preparation reads (modules/launch_utils.py), aimed here."""
        return {
            "CLIP_PACKAGE": f"{self.file_base}/{CLIP_ZIP}",
            "OPENCLIP_PACKAGE": f"{self.file_base}/{OPENCLIP_ZIP}",
            "ASSETS_REPO": f"{self.git_base}/{ASSETS_REPO}",
            "ASSETS_COMMIT_HASH": ASSETS_COMMIT,
            "HUGGINGFACE_GUESS_REPO": f"{self.git_base}/{HUGGINGFACE_GUESS_REPO}",
            "HUGGINGFACE_GUESS_HASH": HUGGINGFACE_GUESS_COMMIT,
            "BLIP_REPO": f"{self.git_base}/{BLIP_REPO}",
            "BLIP_COMMIT_HASH": BLIP_COMMIT,
            **overrides,
        }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    log_lines: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.log_lines.append(format % args)


@contextlib.contextmanager
def serving_upstream(gateway: str, source: str, folder: Path) -> Iterator[Upstream]:
    """Serve ``source`` (a folder) to the lab from this machine, or use it (a URL base)."""
    if "://" in source:
        yield Upstream(source, source)
        return
    git_port, https_port = forge_repo.stable_ports(gateway, f"real-forge:{folder}")
    git_port = git_port or 9418
    daemon = forge_repo.start_git_daemon(gateway, git_port, source)
    server = None
    try:
        cert, key = issue_server_cert([gateway], folder / "tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        handler = type("Files", (_Quiet,), {"log_lines": []})

        def make(*args: object) -> _Quiet:
            return handler(*args, directory=source)

        server = http.server.ThreadingHTTPServer((gateway, https_port), make)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield Upstream(
            git_base=f"git://{gateway}:{git_port}",
            file_base=f"https://{gateway}:{server.server_address[1]}",
            requests=handler.log_lines,
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        forge_repo.stop_git_daemon(daemon)


def pip_cache_volume() -> str:
    folder = cache_home() / "pip"
    folder.mkdir(parents=True, exist_ok=True)
    return f"{folder}:{VM_PIP_CACHE}"


def prepare_vm(host: str) -> None:
    """This machine's CAs into the VM's store, and pip's cache on the mounted folder.

    A real VM behind the same TLS-intercepting proxy needs its CA as much; the pip cache is
    only the lab's (pip reads /etc/pip.conf; the project sets nothing about it).
    """
    for ca in sorted(HOST_CA_DIR.glob("*.crt")):
        _write(host, f"/usr/local/share/ca-certificates/this-machine-{ca.name}", ca.read_text())
    podman.exec_in(host, "update-ca-certificates")
    write_simple_index(cache_home() / "pip")  # over the wheels kept by earlier runs
    podman.exec_in(host, "mkdir", "-p", VM_WHEELHOUSE)
    podman.exec_in(host, "chown", "-R", "azureuser:azureuser", VM_PIP_CACHE)
    _write(
        host,
        "/etc/pip.conf",
        f"[global]\ncache-dir = {VM_PIP_CACHE}\nextra-index-url = file://{VM_SIMPLE_INDEX}\n",
    )


# name==version of each distribution in the env
_INSTALLED = """
import importlib.metadata as m
for d in m.distributions():
    print(d.metadata["Name"] + "==" + d.version)
"""


def keep_wheels(host: str, python: str) -> bool:
    """Download into the wheelhouse the wheels of every name==version in the env (once per
    package set); True when it did. The next preparation installs them from there. What no
    index has (CLIP, built from its archive) is left to pip's cache of built wheels."""
    installed = podman.exec_in(
        host, "runuser", "-u", "azureuser", "--", python, "-c", _INSTALLED, check=False
    )  # no env yet (a run that failed before it): nothing to keep
    pinned = sorted(set(installed.split()))
    stamp = f"{VM_WHEELHOUSE}/.env-freeze"
    if not pinned or podman.exec_in(host, "cat", stamp, check=False).splitlines() == pinned:
        return False
    wanted = list(pinned)
    for _ in range(5):  # each round drops what the index does not have
        try:
            podman.exec_in(
                host,
                "runuser",
                "-u",
                "azureuser",
                "--",
                python,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--dest",
                VM_WHEELHOUSE,
                *wanted,
            )
            break
        except podman.PodmanError as error:
            missing = set(re.findall(r"No matching distribution found for (\S+)", str(error)))
            if not missing:
                raise
            wanted = [w for w in wanted if w not in missing]
    write_simple_index(cache_home() / "pip")
    podman.exec_in(host, "sh", "-c", f"cat > {stamp}", input_text="\n".join(pinned) + "\n")
    return True


def write_simple_index(pip_folder: Path) -> None:
    """A PEP 503 index (simple/<project>/index.html) over the kept wheels, on this machine."""
    projects: dict[str, list[str]] = {}
    for wheel in sorted((pip_folder / "wheels").glob("*.whl")):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()
        projects.setdefault(name, []).append(wheel.name)
    for name, files in projects.items():
        page = pip_folder / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="../../wheels/{f}">{f}</a>\n' for f in files)
        page.write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")


def _write(host: str, path: str, text: str) -> None:
    podman.exec_in(host, "sh", "-c", f"cat > {path}", input_text=text)


def pip_index_url() -> str:
    """The index this machine's pip really uses (the VM cannot use its file:// extras)."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    done = subprocess.run(
        ["pip", "config", "get", "global.index-url"], capture_output=True, text=True, check=False
    )
    return (
        done.stdout.strip()
        if done.returncode == 0 and done.stdout.strip()
        else ("https://pypi.org/simple")
    )


# -- the checkpoint ---------------------------------------------------------------------

CHECKPOINT_STD = 0.02  # all-zero weights load but give NaNs; small random ones give an image
CHECKPOINT_SEED = 1234


def _checkpoint_tensors() -> dict[str, tuple[list[int], str]]:
    out: dict[str, tuple[list[int], str]] = {}
    for component in ("clip_l", "vae", "diffuser"):
        for key, spec in _listing("sd1-ldm")[component].items():
            if spec.get("optional"):
                continue
            dtype = YAML_DTYPES[spec["dtype"]]
            out[key] = (list(spec["shape"]), "F16" if dtype in ("F32", "F16") else dtype)
    return out


def random_sd15_checkpoint() -> tuple[Path, str]:
    """A full-shape SD 1.5 checkpoint (sd1-ldm.yaml, fp16, weights ~ N(0, 0.02)), made once
    per recipe in this machine's cache; (path, sha256)."""
    import numpy as np  # noqa: PLC0415 (only this fixture needs it)

    tensors = _checkpoint_tensors()
    recipe = json.dumps(
        {"tensors": tensors, "std": CHECKPOINT_STD, "seed": CHECKPOINT_SEED, "v": 1},
        sort_keys=True,
    )
    tag = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    folder = cache_home() / "models"
    path = folder / f"random-sd15-{tag}.safetensors"
    digest_file = path.with_suffix(".sha256")
    if path.exists() and digest_file.exists():
        return path, digest_file.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (shape, dtype) in tensors.items():
        size = int(np.prod(shape, dtype=np.int64)) * (8 if dtype == "I64" else 2)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(CHECKPOINT_SEED)
    digest = hashlib.sha256()
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        for chunk in (struct.pack("<Q", len(raw)), raw):
            handle.write(chunk)
            digest.update(chunk)
        for shape, dtype in tensors.values():
            count = int(np.prod(shape, dtype=np.int64))
            if dtype == "I64":
                data = np.arange(count, dtype=np.int64).tobytes()
            else:
                values = rng.standard_normal(count, dtype=np.float32) * CHECKPOINT_STD
                data = values.astype(np.float16).tobytes()
            handle.write(data)
            digest.update(data)
    os.replace(partial, path)
    digest_file.write_text(digest.hexdigest() + "\n")
    return path, digest.hexdigest()


# -- PNG ----------------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of raw 8-bit pixels) of an 8-bit RGB/RGBA PNG, unfiltered."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"not a PNG: starts with {data[:8]!r}")
    pos, idat, width = 8, b"", 0
    height = depth = color = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} fails its CRC")
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if depth != 8 or color not in (2, 6):
        raise ValueError(f"unexpected PNG format: bit depth {depth}, color type {color}")
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows
