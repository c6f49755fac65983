"""The lab VM image: built once from its recipe, rebuilt only when the recipe changes.

The recipe is every file under ``lab/image/`` plus the test doubles the image carries
(``tests/doubles/rootfs/``); the image tag is a hash of their paths, modes and contents.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from . import podman
from .paths import REPO_ROOT, state_lock

IMAGE_NAME = "localhost/forge-fleet-lab"
RECIPE_DIRS = (REPO_ROOT / "lab" / "image", REPO_ROOT / "tests" / "doubles" / "rootfs")


def recipe_files() -> list[Path]:
    return sorted(p for d in RECIPE_DIRS for p in d.rglob("*") if p.is_file())


def recipe_hash() -> str:
    digest = hashlib.sha256()
    for path in recipe_files():
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(oct(path.stat().st_mode & 0o777).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def image_ref() -> str:
    return f"{IMAGE_NAME}:{recipe_hash()}"


def ensure_image(*, force: bool = False) -> str:
    """Return the current image reference, building it first if it is missing."""
    ref = image_ref()
    if not force and podman.image_exists(ref):
        return ref
    with state_lock():
        return _build_unless_there(ref, force=force)


def _build_unless_there(ref: str, *, force: bool) -> str:
    if force or not podman.image_exists(ref):
        print(f"forge-lab: building image {ref} (recipe changed or image missing)", flush=True)
        subprocess.run([str(REPO_ROOT / "lab" / "image" / "build.sh"), ref], check=True)
        _remove_stale_images(keep=ref)
    return ref


def _remove_stale_images(keep: str) -> None:
    if os.environ.get("FORGE_LAB_KEEP_IMAGES"):
        return  # other checkouts on this machine may use images of other recipes
    out = podman.podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME, check=False)
    for ref in out.split():
        if ref != keep:
            # An image still used by a running VM stays until that VM is recreated.
            result = subprocess.run(["podman", "rmi", ref], capture_output=True, check=False)
            if result.returncode == 0:
                print(f"forge-lab: removed outdated image {ref}", file=sys.stderr)
