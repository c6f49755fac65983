"""What the first image (the webui stage's smoke test) costs on top of the readiness check.

    .venv/bin/python bench/bench_first_image.py [--rounds 20]

Starts the Forge stand-in's server (tests/doubles/forge/repo/modules/standin_webui.py) in a
process of its own, behind a login and with its API behind its own credentials, as the webui
stage runs Forge, with one checkpoint in its models folder. Then, in --rounds interleaved
rounds, times the baseline (the readiness check's request: one GET /login_check) and the
first image as the stage makes it (module_utils/forge_fleet/webui_smoke.py: the student's
login, the checkpoint list, Forge's selected checkpoint, one 64x64 1-step txt2img, the PNG
checked). Medians are printed, with their ratio.

On the stand-in this is the cost of the test's own requests and checks; on a real Forge the
generation dominates (bench/RESULTS.md, "The real Forge on CPU", from
tests/integration/test_real_forge.py). Target: the stand-in's first image under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "module_utils")]

from forge_fleet import webui_smoke  # noqa: E402
from forge_fleet.webui_service import http_status  # noqa: E402

FORGE_REPO = ROOT / "tests" / "doubles" / "forge" / "repo"
DRIVER = """
import argparse, json, sys
sys.path.insert(0, sys.argv[1])
from modules.standin_webui import serve
serve(argparse.Namespace(**json.loads(sys.argv[2])), ["launch.py"])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "auth").write_text("student:bench-password\n")
        checkpoints = work / "models" / "Stable-diffusion"
        checkpoints.mkdir(parents=True)
        (checkpoints / "tiny-sd15.safetensors").write_bytes(b"\0" * 4096)
        port = free_port()
        args = {
            "share": False,
            "listen": False,
            "port": port,
            "gradio_auth": None,
            "gradio_auth_path": str(work / "auth"),
            "api": True,
            "api_auth": "api:bench-api-password",
        }
        server = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(FORGE_REPO), json.dumps(args)],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"FORGE_LAB_WEBUI_SCENARIO_FILE": str(work / "no-scenario"), "PATH": "/usr/bin"},
        )
        try:
            deadline = time.monotonic() + 20
            while http_status(port) != 401:
                if time.monotonic() > deadline:
                    print("the stand-in did not answer")
                    return 1
                time.sleep(0.1)

            def first_image() -> dict:
                return webui_smoke.smoke(
                    port,
                    "forge-webui.service",
                    login=("student", "bench-password"),
                    api_auth=("api", "bench-api-password"),
                    run=lambda argv: (0, "ActiveState=inactive\n", ""),
                )

            first_image()  # warm: the stand-in "loads" its checkpoint once
            ready, image = [], []
            for _ in range(options.rounds):
                began = time.perf_counter()
                http_status(port)
                ready.append(time.perf_counter() - began)
                began = time.perf_counter()
                first_image()
                image.append(time.perf_counter() - began)
        finally:
            server.kill()
    ready_s, image_s = statistics.median(ready), statistics.median(image)
    print(f"first image on the Forge stand-in, median of {options.rounds} rounds")
    print(f"  readiness check (GET /login_check): {ready_s * 1000:7.1f} ms")
    print(f"  first image (login, list, txt2img): {image_s * 1000:7.1f} ms")
    print(f"  ratio: {image_s / ready_s:.1f}")
    if image_s > 0.5:
        print("MISSED: the stand-in's first image took more than 0.5 s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
