"""Lab VMs for tests: the same lab code the operator uses, under test-only names and ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import podman
from lab.vms import Lab, set_gpu_scenario


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
    name: str, count: int, base_port: int, gpu: list[str] | None = None
) -> Iterator[LabHandle]:
    """Bring up ``count`` fresh VMs for the duration of the block, then remove them.

    Set FORGE_TEST_KEEP_LAB=1 to keep them for inspection after a failing run.
    """
    lab = Lab(name=name, base_port=base_port)
    lab.down()
    inventory = lab.up(count, gpu)
    try:
        yield LabHandle(
            lab=lab, inventory=inventory, hosts=[lab.vm_name(i) for i in range(1, count + 1)]
        )
    finally:
        if not os.environ.get("FORGE_TEST_KEEP_LAB"):
            lab.down()
