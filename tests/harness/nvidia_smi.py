"""Run the lab's nvidia-smi double on this machine, playing one GPU scenario (unit tests of
the GPU parsing code use it as the runner ``nvidia_gpu`` calls)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

DOUBLE = Path(__file__).parents[1] / "doubles/rootfs/usr/local/lib/forge-lab/nvidia-smi"


def double(scenario: str) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run the lab's nvidia-smi double here, playing ``scenario``."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, str(DOUBLE), *argv[1:]],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "FORGE_LAB_GPU_SCENARIO": scenario},
        )
        return (done.returncode, done.stdout, done.stderr)

    return run
