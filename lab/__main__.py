"""forge-lab: bring up, show and remove lab VMs, and run site.yml against them.

lab/forge-lab up [--count N] [--gpu SCENARIO ...]   start N VMs (idempotent)
lab/forge-lab status                              show them
lab/forge-lab down                                remove them
lab/forge-lab site [ansible-playbook args]        up (2 VMs unless running) + site.yml
lab/forge-lab image [--rebuild]                   build the VM image if its recipe changed
lab/forge-lab stand-ins start|stop                serve the HF/CivitAI stand-ins in the background
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from . import stand_ins
from .image import ensure_image
from .paths import REPO_ROOT
from .vms import Lab, LabError


def run_site(lab: Lab, args: argparse.Namespace) -> int:
    """Bring the lab up (keeping what runs), serve the stand-ins, run site.yml against it."""
    running = [c for c in lab.containers() if c.running]
    inventory = lab.up(max(args.count, len(running)))
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    # Its own settings file: background stand-ins (`stand-ins start`) may be serving too.
    with stand_ins.running(lab.gateway, lab.state_dir / "site-stand-ins.yml") as extra_vars:
        command = [
            playbook,
            "-i",
            str(inventory),
            "-e",
            f"@{extra_vars}",
            "site.yml",
            *args.playbook_args,
        ]
        print("forge-lab: " + " ".join(command), flush=True)
        started = time.time()
        rc = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
    print_report(REPO_ROOT / "reports" / "fleet-report.csv", started)
    return rc


def print_report(report_csv: Path, since: float) -> None:
    """Print the fleet report's path and each VM's share URL, if this run wrote the report."""
    if not report_csv.exists() or report_csv.stat().st_mtime < since:
        print("forge-lab: no fleet report from this run (the play stopped before the report stage)")
        return
    print(f"forge-lab: fleet report: {report_csv.with_suffix('.html')}")
    with report_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            share = row["share_url"] or f"no share URL ({row['problems'] or row['service_state']})"
            print(f"forge-lab:   {row['host']}  {share}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forge-lab", description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="forge-lab", help="lab name, also the VM name prefix")
    parser.add_argument(
        "--base-port", type=int, default=50001, help="SSH port of the first VM on 127.0.0.1"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start N lab VMs (idempotent)")
    up.add_argument("--count", type=int, default=2)
    up.add_argument(
        "--gpu",
        nargs="+",
        metavar="SCENARIO",
        help="nvidia-smi scenario per VM, the last repeating (default t4; 'none' = no GPU)",
    )
    sub.add_parser("status", help="show the lab's VMs")
    sub.add_parser("down", help="remove the lab's VMs")
    site = sub.add_parser("site", help="bring the lab up if needed and run site.yml on it")
    site.add_argument("--count", type=int, default=2)
    site.add_argument("playbook_args", nargs=argparse.REMAINDER)
    image = sub.add_parser("image", help="build the VM image when its recipe changed")
    image.add_argument("--rebuild", action="store_true")
    stand = sub.add_parser(
        "stand-ins",
        help="serve the Hugging Face/CivitAI stand-ins to the lab in the background; "
        "their settings (endpoints, made-up credentials, demo catalog) go to a 0600 "
        "extra-vars file whose path 'start' prints",
    )
    stand.add_argument("action", choices=["start", "stop", "serve"])

    args = parser.parse_args(argv)
    lab = Lab(name=args.lab, base_port=args.base_port)
    try:
        if args.command == "up":
            path = lab.up(args.count, args.gpu)
            print(f"forge-lab: {args.count} VM(s) up; inventory: {path}")
        elif args.command == "status":
            rows = lab.status()
            if not rows:
                print(f"forge-lab: no VMs in lab '{lab.name}'")
            for row in rows:
                print(f"{row['name']:<20} {row['state']:<10} ssh {row['ssh']:<18} gpu {row['gpu']}")
        elif args.command == "down":
            stand_ins.stop(lab)
            removed = lab.down()
            print(f"forge-lab: removed {len(removed)} VM(s): {' '.join(removed) or '-'}")
        elif args.command == "image":
            print(ensure_image(force=args.rebuild))
        elif args.command == "site":
            return run_site(lab, args)
        elif args.command == "stand-ins" and args.action == "start":
            print(f"forge-lab: stand-ins serving; extra vars: @{stand_ins.start(lab)}")
        elif args.command == "stand-ins" and args.action == "stop":
            stopped = stand_ins.stop(lab)
            print(f"forge-lab: stand-ins {'stopped' if stopped else 'were not running'}")
        elif args.command == "stand-ins":
            stand_ins.serve(lab)
    except LabError as error:
        print(f"forge-lab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
