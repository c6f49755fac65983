"""Local stand-ins for the internet services a site.yml run needs, for `forge-lab site` and
`forge-lab stand-ins start|stop` (a background server for Molecule scenarios and by hand).

Serves a small demo catalog (an SD 1.5-layout checkpoint and an SD 1.5 LoRA built from real
tensor layouts) from the Hugging Face / CivitAI stand-in over HTTPS on the lab network's
gateway, with credentials made up for this run, the Forge stand-in repository (git
daemon) with the package index its preparation installs from (``lab/forge_repo.py``),
real Azurite (container "outputs", a SAS made by the Azure SDK) and the AzCopy
download-site stand-in for the sync stage. The
settings reach ansible-playbook through a 0600 extra-vars file, never the command line.
"""

from __future__ import annotations

import datetime
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.doubles.download_site import DownloadSite, build_azcopy_tarball
from tests.doubles.model_hub import ModelHub
from tests.fixtures import models
from tests.harness.azurite import Azurite

from . import forge_repo
from .paths import REPO_ROOT, STATE_DIR, state_lock
from .process_group import GRACE_S, stop_group
from .tls import issue_server_cert
from .vms import Lab, LabError

CONTENT_DIR = STATE_DIR / "stand-ins"
DEMO_CATALOG = [
    {
        "source": "huggingface",
        "repo": "forge-lab/tiny-sd15",
        "file": "tiny-sd15.safetensors",
        "kind": "checkpoint",
        "base_model": "sd1",
    },
    {"source": "civitai", "version_id": 1001},
]


def _content() -> dict[str, Path]:
    CONTENT_DIR.mkdir(parents=True, exist_ok=True)
    files = {
        "checkpoint": CONTENT_DIR / "tiny-sd15.safetensors",
        "lora": CONTENT_DIR / "detail-tweaker.safetensors",
    }
    if not files["checkpoint"].exists():
        models.write_with_data(files["checkpoint"], models.tiny_checkpoint("sd1"))
    if not files["lora"].exists():
        models.write_with_data(files["lora"], models.kohya_lora("sd1"), seed=2)
    return files


@contextmanager
def running(gateway: str, vars_path: Path) -> Iterator[Path]:
    """Serve the stand-ins while the block runs; yields the extra-vars file for the playbook."""
    with state_lock():  # the demo files are shared by every lab: made once
        files = _content()
        tarball, tarball_sha256 = build_azcopy_tarball(CONTENT_DIR / "azcopy-site")
    # What one lab's stand-ins own (certificate, Azurite's storage) lives beside its settings
    # file, so the stand-ins of several labs can serve side by side.
    own = vars_path.parent / f"{vars_path.stem}-data"
    cert, key = issue_server_cert([gateway], own / "tls")
    token, api_key = f"hf_{secrets.token_hex(16)}", secrets.token_hex(16)
    tls = (str(cert), str(key))
    with (
        ModelHub(gateway, tls=tls) as hub,
        forge_repo.serving(
            gateway,
            vars_path.parent / f"{vars_path.stem}-forge",
            # the same URLs on every run of this lab: a re-run changes nothing
            forge_repo.stable_ports(gateway, str(vars_path)),
            share_ports=forge_repo.stable_ports(gateway, f"{vars_path}-share"),
        ) as forge,
        # a fixed port per lab, like the Forge stand-in's: the SAS URL stays the same
        Azurite(
            gateway, own / "azurite", tls, port=forge_repo.stable_ports(gateway, f"{own}-blob")[0]
        ) as azurite,
        DownloadSite(gateway, tarball.parent, tls) as azcopy_site,
    ):
        if not azurite.service().get_container_client("outputs").exists():
            azurite.service().create_container("outputs")
        hub.state.tokens.add(token)
        hub.state.granted.add(token)
        hub.state.civitai_keys.add(api_key)
        hub.add_hf_file("forge-lab/tiny-sd15", "tiny-sd15.safetensors", files["checkpoint"])
        hub.add_civitai_version(
            1001,
            100,
            files["lora"],
            name="detail-tweaker.safetensors",
            base_model="SD 1.5",
            restricted=True,
        )
        settings = {
            "models_catalog": DEMO_CATALOG,
            "models_huggingface_endpoint": hub.api_url,
            "models_civitai_endpoint": hub.api_url,
            "models_huggingface_token": token,
            "models_civitai_api_key": api_key,
            # the Forge stand-in: git server, pinned commit and extension, package index
            **forge.settings(),
            # outputs sync: real Azurite (container "outputs") and AzCopy from the npm binary
            "sync_sas_url": azurite.sas_url("outputs", "rwl", expiry=_sas_expiry(own)),
            "sync_azcopy_url": f"{azcopy_site.url}/{tarball.name}",
            "sync_azcopy_sha256": tarball_sha256,
        }
        # Written whole under a temporary name, then renamed: `start` waits for the final
        # name to appear, and must never read it half-written.
        partial = vars_path.with_name(f".{vars_path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(settings, handle)
        os.replace(partial, vars_path)
        try:
            yield vars_path
        finally:
            vars_path.unlink(missing_ok=True)


def _sas_expiry(own: Path) -> datetime.datetime:
    """The lab's SAS expiry: kept between runs so the SAS (and the VM's SAS file) stays the
    same and a re-run changes nothing; renewed when fewer than 7 days are left."""
    path = own / "sas-expiry"
    now = datetime.datetime.now(datetime.timezone.utc)
    if path.exists():
        expiry = datetime.datetime.fromisoformat(path.read_text().strip())
        if expiry - now > datetime.timedelta(days=7):
            return expiry
    expiry = (now + datetime.timedelta(days=30)).replace(microsecond=0)
    own.mkdir(parents=True, exist_ok=True)
    path.write_text(expiry.isoformat())
    return expiry


# The background server of one lab: its extra-vars file exists while it serves.
def vars_path(lab: Lab) -> Path:
    return lab.state_dir / "stand-ins.yml"


def _pid_path(lab: Lab) -> Path:
    return lab.state_dir / "stand-ins.pid"


def _log_path(lab: Lab) -> Path:
    return lab.state_dir / "stand-ins.log"


def _alive(pid: int) -> bool:
    try:  # our own child (started in this process) must be reaped, or it lingers as a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _running_pid(lab: Lab) -> int | None:
    try:
        pid = int(_pid_path(lab).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def serve(lab: Lab) -> None:
    """Serve in the foreground until SIGTERM or SIGINT (what `start` runs in the background)."""
    gateway = lab.gateway

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    with running(gateway, vars_path(lab)) as path:
        print(f"stand-ins: serving on {gateway}; settings in {path}", flush=True)
        while True:
            time.sleep(3600)


def start(lab: Lab, timeout: float = 30.0) -> Path:
    """Start the lab's stand-ins in the background (once); return their extra-vars file."""
    if _running_pid(lab) and vars_path(lab).exists():
        return vars_path(lab)
    _ = lab.gateway  # the lab must be up: fail here, in the foreground, not in the child
    command = [sys.executable, "-m", "lab", "--lab", lab.name, "stand-ins", "serve"]
    with open(_log_path(lab), "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _pid_path(lab).write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while not vars_path(lab).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(lab)
            tail = _log_path(lab).read_text(errors="replace")[-2000:]
            raise LabError(f"the stand-ins did not start; their log ({_log_path(lab)}):\n{tail}")
        time.sleep(0.1)
    return vars_path(lab)


def stop(lab: Lab) -> bool:
    """Stop the lab's background stand-ins; False when none was running.

    Their process group (``start``: a session of its own) gets SIGTERM: the server stops what
    it started (Azurite saves its blob list) and exits; SIGKILL to the group follows after a
    short grace, and the call returns once the server is gone (reaped when it is our own
    child)."""
    pid = _running_pid(lab)
    if pid:
        # the server's own stop of Azurite takes up to GRACE_S: a little more before SIGKILL
        stop_group(pid, lambda: _alive(pid), grace=GRACE_S + 1.0)
    _pid_path(lab).unlink(missing_ok=True)
    vars_path(lab).unlink(missing_ok=True)
    return pid is not None
