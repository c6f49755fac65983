"""Forge's preparation step (``webui.sh --exit``) run in the background with a log, and what
its output means when it fails: which package pip could not install, and pip's last lines.

Forge's ``webui.sh`` runs ``launch.py`` inside a relaunch loop and exits 0 whatever
``launch.py`` did, so its exit status proves nothing: a preparation succeeded only when
``launch.py`` printed Forge's last line of it (``EXIT_LINE``), which it prints only after
every step passed. While it runs, pip may not move any package that Forge's requirements
file pins (a constraints file made from those pins): the built-in extensions' installers
would otherwise upgrade numpy and others past Forge's pins, and Forge's own requirements
check would reinstall them at the next start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PIP_FAILURES = (
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
    re.compile(r"ERROR: Cannot install (\S+)"),
    re.compile(r"Failed to build (\S+)"),
    re.compile(r"ERROR: Failed building wheel for (\S+)"),
)
_FORGE_STEP = re.compile(r"(Couldn't install [^.\n]+)\.")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
EXIT_LINE = "Exiting because of --exit argument"


def succeeded(text: str, rc: int) -> bool:
    """Whether the preparation's output shows it finished: rc 0 and Forge's last line."""
    return rc == 0 and any(line.strip() == EXIT_LINE for line in clean(text).splitlines())


# Pinned packages Forge installs before its requirements, at another version: its open_clip
# step installs OPENCLIP_PACKAGE (open-clip-torch 2.7.0 at the pin), which the requirements
# then raise to their pin (2.20.0). Holding that pin would refuse Forge's own step.
INSTALLED_BEFORE_REQUIREMENTS = ("open-clip-torch", "clip")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: str) -> list[str]:
    """The ``name==version`` lines of a requirements file's text, as pip constraints, but for
    what Forge installs before its requirements (``INSTALLED_BEFORE_REQUIREMENTS``)."""
    found = []
    for raw in requirements.splitlines():
        match = _PIN.match(raw.split("#", 1)[0].strip())
        if match and _normalized(match.group(1)) not in INSTALLED_BEFORE_REQUIREMENTS:
            found.append(f"{match.group(1)}=={match.group(2)}")
    return found


def clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "\n")


def last_lines(text: str, count: int) -> list[str]:
    return [line for line in clean(text).splitlines() if line.strip()][-count:]


def failed_package(text: str) -> str:
    """The package pip names in its failure ("" when the output names none)."""
    text = clean(text)
    for pattern in _PIP_FAILURES:
        found = pattern.findall(text)
        if found:
            return found[-1].rstrip(".,;")
    return ""


def failure_message(text: str, rc: int, command: str) -> str:
    """What the operator reads when the preparation fails."""
    package = failed_package(text)
    step = _FORGE_STEP.findall(clean(text))
    if package:
        what = f"pip could not install {package}"
    elif rc != 0:
        what = f"it exited with code {rc}"
    else:
        what = f"it ended without Forge's {EXIT_LINE!r} line (webui.sh exits 0 even then)"
    where = f" ({step[-1]})" if step else ""
    tail = "\n".join(last_lines(text, 15))
    return (
        f"Preparing Forge ({command}) failed: {what}{where}. Nothing was recorded as "
        "prepared, so the next run tries again; check the package index and "
        f"forge_torch_command/requirements. Last lines of its output:\n{tail}"
    )


def run_logged(
    argv: list[str],
    cwd: str,
    log_path: str,
    status_path: str,
    *,
    environment: dict[str, str] | None = None,
    constraints: list[str] | None = None,
) -> tuple[int, str]:
    """Run ``argv`` with its output in ``log_path``; write ``status_path`` when it ends.
    ``environment`` is added to this process's; ``constraints`` (pip requirement lines) are
    held for every pip run inside (PIP_CONSTRAINT, before any the environment names)."""
    for path in (log_path, status_path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(status_path):
        os.remove(status_path)
    env = dict(os.environ, **(environment or {}), PYTHONUNBUFFERED="1", PIP_PROGRESS_BAR="off")
    if constraints:
        pinned = os.path.join(os.path.dirname(log_path), "constraints.txt")
        with open(pinned, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in constraints))
        env["PIP_CONSTRAINT"] = " ".join(filter(None, (pinned, env.get("PIP_CONSTRAINT", ""))))
    started = time.time()
    # 0600 from its creation on (an older log keeps its inode: fchmod it too)
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as log:
        os.fchmod(log.fileno(), 0o600)
        process = subprocess.run(
            argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False
        )
    with open(log_path, errors="replace") as log:
        text = log.read()
    with open(status_path, "w") as status:
        json.dump({"rc": process.returncode, "seconds": round(time.time() - started, 1)}, status)
    return process.returncode, text


def progress(log_path: str, status_path: str) -> dict:
    """finished and one human line (the latest line of the output) for the wait loop."""
    finished = os.path.exists(status_path)
    try:
        with open(log_path, errors="replace") as log:
            text = log.read()
    except OSError:
        text = ""
    lines = last_lines(text, 1)
    line = lines[0][:160] if lines else "starting"
    return {"finished": finished, "progress_line": line}
