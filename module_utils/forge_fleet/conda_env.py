"""One conda environment with a given Python, read and changed through conda's JSON output.

Pure logic around a ``run(argv) -> (rc, stdout, stderr)`` callable so it is testable without
conda; the ``conda_env`` module passes AnsibleModule.run_command. Only the named environment
is ever created or removed; every other environment (Azure ML images ship several) and the
base environment are left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: this file runs on Python 3.8 on the VMs
    from collections.abc import Callable

    Runner = Callable[[list[str]], tuple[int, str, str]]
    Fetcher = Callable[[str], object]  # url -> a readable response (read(size))

# Where conda usually lives: Azure ML compute instance images first, then the installers'
# default prefixes in the user's home, then the official Docker images' path.
DEFAULT_CANDIDATES = [
    "/anaconda/bin/conda",
    "~/miniforge3/bin/conda",
    "~/miniconda3/bin/conda",
    "~/anaconda3/bin/conda",
    "/opt/conda/bin/conda",
]

_VERSION_PROBE = "import sys; print('.'.join(map(str, sys.version_info[:3])))"


class CondaEnvError(Exception):
    """Something the operator must act on; the message says what."""


def find_conda(configured: str | None, candidates: list[str], home: str) -> tuple[str, list[str]]:
    """The conda executable to use and the places looked at (in order)."""
    places = [configured] if configured else list(candidates)
    looked = []
    for place in places:
        path = os.path.expanduser(place) if not place.startswith("~/") else home + place[1:]
        looked.append(path)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path, looked
    return "", looked


def installer_hash(value: str) -> str:
    """The lower-case hex of a configured sha256 (``sha256:`` prefix allowed), or ""."""
    text = (value or "").strip().lower()
    text = text[len("sha256:") :] if text.startswith("sha256:") else text
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else ""


def check_install_prefix(prefix: str) -> str:
    """The normalised prefix Miniforge can be installed into; raise when it cannot."""
    prefix = os.path.normpath(prefix)
    if os.path.lexists(prefix):
        raise CondaEnvError(
            f"conda_install_prefix {prefix} exists but holds no bin/conda: remove it, or set "
            "conda_install_prefix to a path that does not exist yet (or conda_executable). "
            "Nothing was changed."
        )
    parent = os.path.dirname(prefix)
    if not os.path.isdir(parent):
        raise CondaEnvError(
            f"conda_install_prefix {prefix}: its folder {parent} does not exist. "
            "Nothing was changed."
        )
    return prefix


def install_conda(fetch: Fetcher, run: Runner, url: str, sha256: str, prefix: str) -> str:
    """Install Miniforge into ``prefix`` and return its conda.

    The installer is downloaded to a temporary name next to ``prefix`` and its sha256 checked
    before it runs (``bash installer -b -p prefix``, as Miniforge is run unattended). A wrong
    hash, a failed download or a failed installer leaves neither the installer nor the prefix
    behind.
    """
    expected = installer_hash(sha256)
    if not url or not expected:
        raise CondaEnvError(
            "conda_install is true but conda_installer_url or conda_installer_sha256 is "
            "missing or not a sha256: set both (a Miniforge3 Linux installer and the hash in "
            "the .sha256 file published next to it). Nothing was changed."
        )
    prefix = check_install_prefix(prefix)
    parent = os.path.dirname(prefix)
    fd, installer = tempfile.mkstemp(prefix=".miniforge-installer-", suffix=".sh", dir=parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                response = fetch(url)
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            except Exception as error:
                raise CondaEnvError(
                    f"Downloading the Miniforge installer from {url} failed: {error}. "
                    "Nothing was installed."
                ) from error
        actual = digest.hexdigest()
        if actual != expected:
            raise CondaEnvError(
                f"The Miniforge installer from {url} has sha256 {actual}, expected {expected} "
                "(conda_installer_sha256). It was not run and was deleted; nothing was "
                "installed. Check conda_installer_url, and set conda_installer_sha256 to the "
                "hash published with that release (the .sha256 file next to the installer)."
            )
        rc, out, err = run(["bash", installer, "-b", "-p", prefix])
        conda = os.path.join(prefix, "bin", "conda")
        if rc != 0 or not os.access(conda, os.X_OK):
            shutil.rmtree(prefix, ignore_errors=True)
            tail = "\n".join((err.strip() or out.strip()).splitlines()[-10:])
            raise CondaEnvError(
                f"The Miniforge installer (bash {os.path.basename(installer)} -b -p {prefix}) "
                f"failed with exit code {rc} and was rolled back (prefix removed): {tail}"
            )
        return conda
    finally:
        if os.path.lexists(installer):
            os.unlink(installer)


def version_matches(requested: str, found: str) -> bool:
    """conda's meaning of ``python=3.10``: any 3.10.x; ``3.10.13``: exactly that release."""
    wanted = requested.strip().split(".")
    return found.split(".")[: len(wanted)] == wanted


def _json(run: Runner, argv: list[str], what: str) -> dict:
    rc, out, err = run(argv)
    try:
        data = json.loads(out) if out.strip() else {}
    except ValueError:
        data = {}
    if rc != 0 or "error" in data:
        reason = data.get("error") or err.strip() or out.strip() or f"exit code {rc}"
        raise CondaEnvError(f"{what} failed ({' '.join(argv)}): {reason}")
    return data


def env_prefix(info: dict, envs: list[str], name: str) -> str:
    """The prefix of env ``name``: an existing one in an envs dir, else the first envs dir."""
    envs_dirs = [os.path.normpath(d) for d in info.get("envs_dirs") or []]
    for prefix in envs:
        if os.path.basename(prefix) == name and os.path.dirname(prefix) in envs_dirs:
            return prefix
    if not envs_dirs:
        root = info.get("root_prefix") or ""
        envs_dirs = [os.path.join(root, "envs")]
    return os.path.join(envs_dirs[0], name)


def python_version(run: Runner, python: str) -> str:
    """The version of the env's Python, or "" when it is missing or does not run."""
    if not os.path.isfile(python):
        return ""
    rc, out, _ = run([python, "-c", _VERSION_PROBE])
    return out.strip() if rc == 0 else ""


def ensure_env(
    run: Runner,
    conda: str,
    name: str,
    python: str,
    *,
    repair: bool,
    check_mode: bool,
) -> dict[str, object]:
    """Make env ``name`` exist with Python ``python``; return what was found and done.

    ``action`` is one of present, created, recreated (in check mode: what would be done).
    """
    if name in ("", "base", "root") or "/" in name or " " in name:
        raise CondaEnvError(
            f"conda environment name {name!r} is not allowed: choose a name of its own "
            "(not base, no '/' or spaces)"
        )
    info = _json(run, [conda, "info", "--json"], "Reading conda's configuration")
    envs = _json(run, [conda, "env", "list", "--json"], "Listing conda environments").get(
        "envs", []
    )
    prefix = env_prefix(info, [os.path.normpath(e) for e in envs], name)
    exists = prefix in [os.path.normpath(e) for e in envs]
    interpreter = os.path.join(prefix, "bin", "python")
    found = python_version(run, interpreter) if exists else ""
    result: dict[str, object] = {
        "executable": conda,
        "env_name": name,
        "prefix": prefix,
        "python": interpreter,
        "found_version": found,
        "before": "absent" if not exists else (f"python {found}" if found else "broken"),
    }
    if exists and found and version_matches(python, found):
        result.update(action="present", changed=False, python_version=found)
        return result
    if exists and not repair:
        raise CondaEnvError(
            f"conda environment '{name}' at {prefix} has "
            f"{'Python ' + found if found else 'no working Python'}, not Python {python}. "
            f"Set conda_repair: true to recreate it, or remove it yourself: "
            f"{conda} remove -y -n {name} --all"
        )
    action = "recreated" if exists else "created"
    result.update(action=action, changed=True, python_version=python)
    if check_mode:
        return result
    if exists:
        _json(run, [conda, "remove", "-y", "--json", "-n", name, "--all"], "Removing the env")
    _json(
        run,
        [conda, "create", "-y", "--json", "-n", name, f"python={python}"],
        f"Creating conda environment '{name}' with Python {python}",
    )
    made = python_version(run, interpreter)
    if not made or not version_matches(python, made):
        raise CondaEnvError(
            f"conda created '{name}' at {prefix}, but its Python ({made or 'missing'}) "
            f"is not {python}"
        )
    result["python_version"] = made
    return result
