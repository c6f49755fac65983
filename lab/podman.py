"""The podman commands the lab needs, with two quirks of its hosts applied once.

Quirks (lab/README.md, "The image"): crun refuses cgroups in hybrid mode, so every container
runs under runc; the default rlimits are refused, so every container gets explicit ones.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

RUNTIME_ARGS = ["--runtime", "runc"]
ULIMIT_ARGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its stderr."""


def podman(*args: str, check: bool = True, input_text: str | None = None) -> str:
    """Run podman with the runtime quirk applied and return its stdout."""
    result = subprocess.run(
        ["podman", *RUNTIME_ARGS, *args],
        capture_output=True,
        text=True,
        input=input_text,
        check=False,
    )
    if check and result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip())[-500:]
        raise PodmanError(
            f"podman {' '.join(args[:3])} failed (exit {result.returncode}): {detail}"
        )
    return result.stdout


@dataclass(frozen=True)
class Container:
    name: str
    state: str
    image_id: str
    labels: dict[str, str]

    @property
    def running(self) -> bool:
        return self.state == "running"


def list_containers(label: str) -> list[Container]:
    """Every container (running or not) carrying the label ``key=value``."""
    out = podman("ps", "--all", "--filter", f"label={label}", "--format", "json")
    return [
        Container(
            name=entry["Names"][0],
            state=entry["State"],
            image_id=entry["ImageID"],
            labels=entry.get("Labels") or {},
        )
        for entry in json.loads(out or "[]")
    ]


def image_exists(ref: str) -> bool:
    return subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).strip()


def ensure_network(name: str) -> str:
    """Create the lab's own podman network if missing; return its gateway address."""
    if subprocess.run(["podman", "network", "exists", name], check=False).returncode != 0:
        podman("network", "create", name)
    info = json.loads(podman("network", "inspect", name))[0]
    return info["subnets"][0]["gateway"]


def run_systemd_container(
    name: str,
    image: str,
    *,
    host_port: int,
    network: str,
    labels: dict[str, str],
    volumes: list[str],
) -> None:
    """Start a container that boots systemd, its sshd published on 127.0.0.1 only."""
    args = ["run", "--detach", "--name", name, "--hostname", name, "--systemd=always"]
    args += ULIMIT_ARGS
    # Root's powers on a real VM that podman drops by default: CAP_SYS_ADMIN lets the base
    # role remount the VM's own /proc with hidepid (the container's /proc is its own mount:
    # the host's is untouched), and CAP_SYS_PTRACE lets root still see every process under it.
    args += ["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"]
    args += ["--network", network, "--publish", f"127.0.0.1:{host_port}:50000"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    for volume in volumes:
        args += ["--volume", volume]
    podman(*args, image, "/sbin/init")


def remove_container(name: str) -> None:
    podman("rm", "--force", "--time", "0", name, check=False)


def exec_in(name: str, *command: str, input_text: str | None = None, check: bool = True) -> str:
    return podman("exec", "-i", name, *command, input_text=input_text, check=check)
