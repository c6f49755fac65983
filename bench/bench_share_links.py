"""The share link check from the controller: its time for 2 and for N lab VMs.

    .venv/bin/python bench/bench_share_links.py [--vms 8] [--rounds 5] [--keep]

Brings up --vms lab VMs (lab "bench-share"; FORGE_LAB_PREFIX applies) and the lab's share
server (tests/doubles/share_relay.py) in a process of its own on the lab gateway, answering
each request after --delay-ms (150: a round trip to gradio.live from Europe; 0 measures the
check's own cost). In each VM
the Forge stand-in's server (tests/doubles/forge/repo/modules/standin_webui.py, behind a
login, --share) runs with GRADIO_SHARE_SERVER_ADDRESS pointing at that server, so every VM
has a live link tunnelled from the VM, as gradio's are. Then, in --rounds interleaved rounds,
the check the webui stage runs (module_utils/forge_fleet/share_link.py: check_links, one
thread per link, through the share server as webui_share_check_via) is timed for the first
2 links and for all --vms links, against the baseline of asking the same --vms links one
after another (check_link in a loop) in the same round. Medians are printed.

Targets: all --vms links at once within 3 s ("a few seconds for the whole class"), and N / 2
at most 1.5 (the time must not grow with the class). Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "module_utils")]

from forge_fleet import share_link  # noqa: E402
from lab import podman  # noqa: E402
from lab.vms import Lab  # noqa: E402
from tests.harness.lab import free_port_block  # noqa: E402

STANDIN = ROOT / "tests" / "doubles" / "forge" / "repo" / "modules"
RELAY = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.doubles.share_relay import ShareRelay
with ShareRelay(sys.argv[2], delay=float(sys.argv[3])) as relay:
    print(relay.tunnel_address, relay.public_url, flush=True)
    while True:
        time.sleep(3600)
"""
DRIVER = """
import argparse, sys
sys.path.insert(0, "/opt/standin")
from modules.standin_webui import serve
args = argparse.Namespace(share=True, listen=False, port=7860, gradio_auth=None,
                          gradio_auth_path="/opt/standin/auth", api=False, api_auth=None)
serve(args, ["launch.py", "--share"])
"""


def start_standin(vm: str, tunnel: str) -> None:
    podman.exec_in(vm, "mkdir", "-p", "/opt/standin")
    subprocess.run(["podman", "cp", str(STANDIN), f"{vm}:/opt/standin/modules"], check=True)
    podman.exec_in(vm, "sh", "-c", "echo student:bench-password > /opt/standin/auth")
    podman.exec_in(vm, "sh", "-c", f"cat > /opt/standin/driver.py <<'EOF'\n{DRIVER}\nEOF")
    subprocess.run(
        [
            "podman",
            "exec",
            "-d",
            "-e",
            f"GRADIO_SHARE_SERVER_ADDRESS={tunnel}",
            "-e",
            "FORGE_LAB_WEBUI_SCENARIO_FILE=/nonexistent",
            vm,
            "sh",
            "-c",
            "python3 -u /opt/standin/driver.py > /opt/standin/log 2>&1",
        ],
        check=True,
    )


def link_of(vm: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = podman.exec_in(vm, "cat", "/opt/standin/log", check=False)
        for line in log.splitlines():
            if line.startswith("Running on public URL: "):
                return line.split(": ", 1)[1]
        time.sleep(0.5)
    raise RuntimeError(f"{vm}: no share link within {timeout} s: {log}")


def timed(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--delay-ms",
        type=int,
        default=150,
        help="what the share server waits before routing each request (a round trip to it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the VMs afterwards")
    options = parser.parse_args()

    lab = Lab(name="bench-share", base_port=free_port_block(options.vms))
    lab.down()
    relay = None
    try:
        lab.up(options.vms)
        vms = [lab.vm_name(i) for i in range(1, options.vms + 1)]
        relay = subprocess.Popen(
            [sys.executable, "-c", RELAY, str(ROOT), lab.gateway, str(options.delay_ms / 1000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        tunnel, via = relay.stdout.readline().split()
        for vm in vms:
            start_standin(vm, tunnel)
        links = {vm: {"url": link_of(vm), "auth": True} for vm in vms}

        def at_once(count: int) -> dict:
            return share_link.check_links(dict(list(links.items())[:count]), via=via)

        def one_after_another() -> list:
            return [share_link.check_link(spec["url"], via=via) for spec in links.values()]

        first = at_once(options.vms)
        states = {vm: found["state"] for vm, found in first.items()}
        if set(states.values()) != {"answers"}:
            print(f"not every link answers: {json.dumps(first, indent=1)}")
            return 1
        rows = {"2 at once": [], f"{options.vms} at once": [], f"{options.vms} one by one": []}
        for _ in range(options.rounds):
            rows["2 at once"].append(timed(lambda: at_once(2)))
            rows[f"{options.vms} at once"].append(timed(lambda: at_once(options.vms)))
            rows[f"{options.vms} one by one"].append(timed(one_after_another))
        medians = {name: statistics.median(times) for name, times in rows.items()}
        print(
            f"share link check, {options.vms} lab VMs, share server answering after"
            f" {options.delay_ms} ms, median of {options.rounds} rounds"
        )
        for name, seconds in medians.items():
            print(f"  {name:>16}: {seconds:6.3f} s")
        growth = medians[f"{options.vms} at once"] / medians["2 at once"]
        gain = medians[f"{options.vms} one by one"] / medians[f"{options.vms} at once"]
        print(f"  {options.vms} at once / 2 at once: {growth:.2f} (target at most 1.5)")
        print(f"  one by one / at once ({options.vms}): {gain:.2f}")
        missed = []
        if medians[f"{options.vms} at once"] > 3:
            missed.append(f"{options.vms} links took more than 3 s")
        if growth > 1.5:
            missed.append("the check grows with the class")
        for line in missed:
            print(f"MISSED: {line}")
        return 1 if missed else 0
    finally:
        if relay is not None:
            relay.kill()
        if not options.keep:
            lab.down()


if __name__ == "__main__":
    sys.exit(main())
