"""`forge-lab site`, as the README tells a newcomer: converge twice, the second changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lab import podman
from lab.paths import REPO_ROOT
from lab.vms import Lab
from tests.harness.lab import free_port_block

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORGE = "/home/azureuser/stable-diffusion-webui-forge"
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def site(name: str, port: int, *args: str) -> tuple[int, dict[str, tuple[int, int, int]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", name, "--base-port", str(port), "site", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    recap = {h: (int(c), int(u), int(f)) for h, c, u, f in RECAP.findall(done.stdout)}
    return done.returncode, recap, done.stdout + done.stderr


def test_site_converges_two_vms_with_stand_ins_and_reruns_with_no_change():
    lab = Lab(name="t-lab-site")
    name = lab.name  # with FORGE_LAB_PREFIX, the VMs are <prefix>t-lab-site-N
    lab.down()
    port = free_port_block(2)
    try:
        rc, recap, output = site(name, port)
        assert rc == 0, output[-4000:]
        # fresh VMs, every stage (sync included): the first run is clean too
        assert "[WARNING]" not in output, output[output.index("[WARNING]") - 400 :][:1200]
        assert "[DEPRECATION WARNING]" not in output
        vms = [lab.vm_name(1), lab.vm_name(2)]  # FORGE_LAB_PREFIX may prefix the names
        assert sorted(recap) == vms
        assert all(changed > 0 and failed == 0 for changed, _, failed in recap.values())
        # it ends with the fleet report's path and each VM's share URL
        assert f"forge-lab: fleet report: {REPO_ROOT}/reports/fleet-report.html" in output
        for host in recap:
            link = rf"^forge-lab:   {host}  https://\S+\.share\.lab\.invalid$"
            assert re.search(link, output, re.M)
        for host in recap:  # the demo catalog landed through the stand-ins
            listing = podman.exec_in(
                host, "ls", f"{FORGE}/models/Lora", f"{FORGE}/models/Stable-diffusion"
            )
            assert "detail-tweaker.safetensors" in listing
            assert "tiny-sd15.safetensors" in listing
        rc, recap, output = site(name, port)
        assert rc == 0, output[-4000:]
        assert recap == dict.fromkeys(vms, (0, 0, 0))
        # ansible-playbook arguments after `site` reach it as given (and --check is honest)
        rc, recap, output = site(name, port, "--check", "-e", "models_poll_interval=2", "-v")
        assert rc == 0, output[-4000:]
        assert "site.yml --check -e models_poll_interval=2 -v" in output
        assert "Using " in output and " as config file" in output  # what -v prints
        assert recap == dict.fromkeys(vms, (0, 0, 0))
        listing = lab.status()
        assert [row["state"] for row in listing] == ["running", "running"]
    finally:
        lab.down()
