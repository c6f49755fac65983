"""Lab VMs for tests: the same lab code the operator uses, under test-only names and ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import podman
from lab.vms import Lab, port_in_use, set_gpu_scenario

# Test labs live on ports 51001-51999 so they never collide with the operator's lab (50001+);
# each lab takes the first block of free ports, so concurrent test runs do not collide.
# Parallel pytest workers (tests/run uses pytest-xdist) each search their own share of the
# range, so two workers never pick the same free block before either binds it.
_FIRST_TEST_PORT = 51001
_LAST_TEST_PORT = 51999
_BLOCK = 10
_WORKER_SHARE = 250  # ports per worker: 25 blocks, 4 workers fit in the range


def _worker_ports() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under pytest-xdist
    if not worker.startswith("gw"):
        return range(_FIRST_TEST_PORT, _LAST_TEST_PORT + 1)
    first = _FIRST_TEST_PORT + int(worker[2:]) * _WORKER_SHARE
    return range(first, min(first + _WORKER_SHARE, _LAST_TEST_PORT + 1))


def free_port_block(count: int) -> int:
    ports = _worker_ports()
    for base in range(ports.start, ports.stop - count + 1, _BLOCK):
        if not any(port_in_use(base + i) for i in range(count)):
            return base
    raise RuntimeError(
        f"no free block of {count} test ports between {ports.start} and {ports.stop - 1}"
    )


@dataclass(frozen=True)
class LabHandle:
    lab: Lab
    inventory: Path
    hosts: list[str]

    def set_gpu(self, host: str, scenario: str) -> None:
        """Switch what the host's nvidia-smi double plays ('none' removes nvidia-smi)."""
        set_gpu_scenario(host, scenario)

    def exec(self, host: str, *command: str, check: bool = True) -> str:
        """Run a command inside the VM as root, outside Ansible (for arranging and checking)."""
        return podman.exec_in(host, *command, check=check)


@contextmanager
def lab_vms(
    name: str,
    count: int,
    base_port: int,
    gpu: list[str] | None = None,
    volumes: list[str] | None = None,
) -> Iterator[LabHandle]:
    """Bring up ``count`` fresh VMs for the duration of the block, then remove them.

    ``volumes``: host folders mounted into each VM (podman's ``HOST:VM[:OPTIONS]``).
    Set FORGE_TEST_KEEP_LAB=1 to keep them for inspection after a failing run.
    """
    lab = Lab(name=name, base_port=base_port, volumes=list(volumes or []))
    lab.down()
    try:
        inventory = lab.up(count, gpu)
        yield LabHandle(
            lab=lab, inventory=inventory, hosts=[lab.vm_name(i) for i in range(1, count + 1)]
        )
    finally:
        if not os.environ.get("FORGE_TEST_KEEP_LAB"):
            lab.down()
