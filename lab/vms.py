"""Lab VMs: podman containers booting systemd, shaped like Azure ML compute instances.

A *lab* is a named set of VMs (``forge-lab-1``, ``forge-lab-2``, ...) with one SSH port each
on 127.0.0.1, a generated inventory and its own known_hosts file holding each VM's real host
key, so SSH host-key checking stays strict even here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import podman
from .image import ensure_image
from .paths import SSH_KEY, lab_dir, state_lock
from .tls import ensure_ca

LAB_LABEL = "forge-fleet.lab"
NETWORK = "forge-lab"
ADMIN_USER = "azureuser"
HOST_GROUP = "forge_servers"
GPU_SCENARIO_DIR = "/usr/local/lib/forge-lab/gpu-scenarios"
NVIDIA_SMI_DOUBLE = "/usr/local/lib/forge-lab/nvidia-smi"
DEFAULT_GPU_SCENARIO = "t4"
NO_GPU = "none"
BOOT_TIMEOUT_S = 90


class LabError(RuntimeError):
    """Something the operator must act on; the message says what."""


@dataclass
class Lab:
    """A named set of lab VMs and the files that describe them."""

    name: str = "forge-lab"
    base_port: int = 50001
    vars: dict[str, object] = field(default_factory=dict)
    # Host folders mounted into every VM created by `up` ("HOST:VM[:OPTIONS]", podman's
    # --volume), e.g. a pip cache kept on this machine between test runs. A VM already
    # running keeps the mounts it was created with.
    volumes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Several checkouts on one machine (git worktrees) share podman's container names:
        # FORGE_LAB_PREFIX keeps their labs apart (e.g. FORGE_LAB_PREFIX=wt1-).
        prefix = os.environ.get("FORGE_LAB_PREFIX", "")
        if prefix and not self.name.startswith(prefix):
            self.name = prefix + self.name

    @property
    def state_dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.yml"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def gateway(self) -> str:
        """The lab network's gateway, where local stand-ins listen (from the inventory)."""
        if not self.inventory_path.exists():
            raise LabError(f"lab '{self.name}' is not up; run: lab/forge-lab --lab {self.name} up")
        inventory = yaml.safe_load(self.inventory_path.read_text())
        return inventory["all"]["vars"]["lab_network_gateway"]

    def vm_name(self, index: int) -> str:
        return f"{self.name}-{index}"

    def containers(self) -> list[podman.Container]:
        return sorted(
            podman.list_containers(f"{LAB_LABEL}={self.name}"),
            key=lambda c: int(c.labels.get("forge-fleet.index", "0")),
        )

    # -- bringing VMs up ---------------------------------------------------------------

    def up(self, count: int, gpu_scenarios: list[str] | None = None) -> Path:
        """Make exactly ``count`` VMs run on the current image; idempotent.

        ``gpu_scenarios`` names the nvidia-smi scenario per VM (the last one repeats);
        without it a running VM keeps its scenario and a new one plays the default.
        Returns the inventory path.
        """
        if count < 1:
            raise LabError("a lab needs at least one VM: pass --count 1 or more")
        image = ensure_image()
        current_image_id = podman.image_id(image)
        with state_lock():
            gateway = podman.ensure_network(NETWORK)
        public_key = ensure_ssh_key()
        self.state_dir.mkdir(parents=True, exist_ok=True)

        existing = {c.name: c for c in self.containers()}
        for stale in sorted(set(existing) - {self.vm_name(i) for i in range(1, count + 1)}):
            podman.remove_container(stale)
        hosts: dict[str, dict[str, object]] = {}
        for index in range(1, count + 1):
            name = self.vm_name(index)
            port = self.base_port + index - 1
            container = existing.get(name)
            if container and (not container.running or container.image_id != current_image_id):
                # Stopped (podman's record of a previous session) or built from an old
                # recipe: start over rather than revive it.
                podman.remove_container(name)
                container = None
            if container is None:
                if port_in_use(port):
                    raise LabError(
                        f"lab VM {name}: 127.0.0.1:{port} is already in use (by a process: ss"
                        f" -ltnp; or by a container of another lab or checkout: podman ps -a,"
                        f" PORTS); remove it or choose other ports with --base-port"
                    )
                podman.run_systemd_container(
                    name,
                    image,
                    host_port=port,
                    network=NETWORK,
                    labels={LAB_LABEL: self.name, "forge-fleet.index": str(index)},
                    volumes=self.volumes,
                )
            wait_for_boot(name)
            authorize_key(name, public_key)
            trust_lab_ca(name)
            if gpu_scenarios:
                scenario = gpu_scenarios[min(index, len(gpu_scenarios)) - 1]
            else:
                scenario = current_gpu_scenario(name) or DEFAULT_GPU_SCENARIO
            set_gpu_scenario(name, scenario)
            hosts[name] = {
                "ansible_host": "127.0.0.1",
                "ansible_port": port,
                "ansible_user": ADMIN_USER,
                "ansible_ssh_private_key_file": str(SSH_KEY),
                "lab_gpu_scenario": scenario,
            }
        self._write_known_hosts(hosts)
        self._write_inventory(hosts, gateway)
        for name, host in hosts.items():
            wait_for_ssh(name, int(host["ansible_port"]), self.known_hosts_path)
        return self.inventory_path

    def down(self) -> list[str]:
        """Remove every VM of this lab and its generated files; return the removed names."""
        removed = []
        for container in self.containers():
            podman.remove_container(container.name)
            removed.append(container.name)
        for path in (self.inventory_path, self.known_hosts_path):
            path.unlink(missing_ok=True)
        return removed

    def status(self) -> list[dict[str, str]]:
        rows = []
        for container in self.containers():
            ports = podman.podman("port", container.name, check=False).strip()
            scenario = ""
            if container.running:
                scenario = current_gpu_scenario(container.name)
            rows.append(
                {
                    "name": container.name,
                    "state": container.state,
                    "ssh": ports.split("->")[-1].strip() if ports else "-",
                    "gpu": scenario or "-",
                }
            )
        return rows

    # -- generated files ---------------------------------------------------------------

    def _write_known_hosts(self, hosts: dict[str, dict[str, object]]) -> None:
        lines = []
        for name, host in hosts.items():
            key = podman.exec_in(name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
            lines.append(f"[127.0.0.1]:{host['ansible_port']} {key[0]} {key[1]}")
        self.known_hosts_path.write_text("\n".join(lines) + "\n")

    def _write_inventory(self, hosts: dict[str, dict[str, object]], gateway: str) -> None:
        ssh_args = f"-o UserKnownHostsFile={self.known_hosts_path} -o StrictHostKeyChecking=yes"
        inventory = {
            "all": {
                "children": {HOST_GROUP: {"hosts": hosts}},
                "vars": {
                    "ansible_ssh_common_args": ssh_args,
                    "lab_name": self.name,
                    "lab_network_gateway": gateway,
                    "lab_ca_cert": str(ensure_ca()),
                    **self.vars,
                },
            }
        }
        header = (
            f"# Generated by lab/forge-lab for the lab '{self.name}'; do not edit.\n"
            "# Recreate with: lab/forge-lab up\n"
        )
        self.inventory_path.write_text(header + yaml.safe_dump(inventory, sort_keys=False))


# -- one VM ----------------------------------------------------------------------------


def ensure_ssh_key() -> str:
    """The lab's own SSH key pair (created once); returns the public key line."""
    with state_lock():
        if not SSH_KEY.exists():
            SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "forge-lab",
                    "-f",
                    str(SSH_KEY),
                ],
                check=True,
            )
    return SSH_KEY.with_suffix(".pub").read_text().strip()


def wait_for_boot(name: str) -> None:
    """Wait until systemd inside the VM has finished booting and sshd has host keys."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        state = podman.exec_in(name, "systemctl", "is-system-running", check=False).strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise LabError(
        f"lab VM {name} did not finish booting in {BOOT_TIMEOUT_S}s (systemd says {state!r}); "
        f"look at: podman exec {name} systemctl --failed"
    )


def authorize_key(name: str, public_key: str) -> None:
    path = f"/home/{ADMIN_USER}/.ssh/authorized_keys"
    podman.exec_in(
        name,
        "sh",
        "-c",
        f"cat > {path} && chown {ADMIN_USER}:{ADMIN_USER} {path} && chmod 0600 {path}",
        input_text=public_key + "\n",
    )


def trust_lab_ca(name: str) -> None:
    """Let the VM trust the lab CA, as a real VM trusts the public CAs of the real services."""
    script = (
        "cat > /usr/local/share/ca-certificates/forge-lab-ca.crt"
        " && update-ca-certificates >/dev/null"
    )
    for attempt in range(3):  # a VM still settling after boot once failed this, silently
        try:
            podman.exec_in(name, "sh", "-c", script, input_text=ensure_ca().read_text())
            return
        except podman.PodmanError:
            if attempt == 2:
                raise
            time.sleep(2)


def set_gpu_scenario(name: str, scenario: str) -> None:
    """Choose what the VM's nvidia-smi double plays; ``none`` means no nvidia-smi at all."""
    if scenario == NO_GPU:
        script = (
            "rm -f /usr/bin/nvidia-smi; mkdir -p /etc/forge-lab; "
            "echo none > /etc/forge-lab/gpu-scenario"
        )
    else:
        known = podman.exec_in(name, "ls", GPU_SCENARIO_DIR).split()
        if f"{scenario}.json" not in known:
            choices = ", ".join(sorted([NO_GPU] + [k.removesuffix(".json") for k in known]))
            raise LabError(f"unknown GPU scenario {scenario!r}; choose one of: {choices}")
        script = (
            f"ln -sf {NVIDIA_SMI_DOUBLE} /usr/bin/nvidia-smi; mkdir -p /etc/forge-lab; "
            f"echo {scenario} > /etc/forge-lab/gpu-scenario"
        )
    podman.exec_in(name, "sh", "-c", script)


def current_gpu_scenario(name: str) -> str:
    return podman.exec_in(name, "cat", "/etc/forge-lab/gpu-scenario", check=False).strip()


def wait_for_ssh(name: str, port: int, known_hosts: Path) -> None:
    """Wait until ``ssh azureuser@127.0.0.1 -p PORT`` works with strict host-key checking."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    last_error = ""
    while time.monotonic() < deadline:
        if _port_open(port):
            result = subprocess.run(
                [
                    "ssh",
                    "-i",
                    str(SSH_KEY),
                    "-p",
                    str(port),
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=5",
                    "-o",
                    f"UserKnownHostsFile={known_hosts}",
                    "-o",
                    "StrictHostKeyChecking=yes",
                    f"{ADMIN_USER}@127.0.0.1",
                    "true",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0:
                return
            last_error = result.stderr.strip()
        time.sleep(0.5)
    if last_error:
        raise LabError(f"lab VM {name}: SSH on 127.0.0.1:{port} never answered: {last_error}")
    sshd = podman.exec_in(name, "systemctl", "is-active", "ssh", check=False).strip()
    raise LabError(
        f"lab VM {name}: nothing answered on 127.0.0.1:{port} in {BOOT_TIMEOUT_S}s"
        f" (sshd in the VM is {sshd or 'unknown'!r}); look at: podman port {name};"
        f" iptables -t nat -S CNI-HOSTPORT-DNAT (another container publishing the same port"
        f" takes its traffic)"
    )


def port_in_use(port: int) -> bool:
    """Whether 127.0.0.1:PORT is taken: bound by a process, or forwarded somewhere.

    podman's conmon binds a published port to reserve it, but the traffic goes through a DNAT
    rule. A VM whose conmon died (its session was killed) binds nothing and still answers; a
    rule left behind by a VM that is gone sends the connection nowhere. Only a refused
    connection means nothing is there.
    """
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    with socket.socket() as sock:
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return False
        except OSError:  # a timeout or an unreachable address: forwarded, not refused
            return True
    return True


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
