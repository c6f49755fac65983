"""forge-lab: bring up, show and remove lab VMs, and run site.yml against them.

lab/forge-lab up [--count N] [--gpu SCENARIO ...]   start N VMs (idempotent)
lab/forge-lab status                              show them
lab/forge-lab down                                remove them
lab/forge-lab site [--count N] [--] [ansible-playbook args]
                                                  up (2 VMs unless running) + site.yml
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

_GLOBAL_OPTIONS = ("--lab", "--base-port")


def split_playbook_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into forge-lab's own arguments and those for ansible-playbook.

    Everything after ``site`` (bar its own ``--count N`` right after it, and one ``--``)
    goes to ansible-playbook untouched: ``site --check -e x=1 -v``. argparse alone cannot
    do this: it takes ``--check`` for an unknown option of its own.
    """
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in _GLOBAL_OPTIONS:
            index += 2
        elif word.startswith("-"):
            index += 1  # --lab=NAME, -h, or a mistake argparse reports
        else:
            break
    if index >= len(argv) or argv[index] != "site":
        return argv, []
    own, rest = argv[: index + 1], argv[index + 1 :]
    while rest and (rest[0] == "--count" or rest[0].startswith("--count=")):
        take = 1 if "=" in rest[0] else 2
        own, rest = own + rest[:take], rest[take:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return own, rest


def site_command(inventory: str, extra_vars: str, playbook_args: list[str]) -> list[str]:
    """The ansible-playbook command `site` runs: the lab's inventory and stand-ins settings
    first, so the operator's own arguments (``-e``, ``--check``, ``--limit``) come last and win."""
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return [playbook, "-i", inventory, "-e", f"@{extra_vars}", "site.yml", *playbook_args]


def run_site(lab: Lab, count: int, playbook_args: list[str]) -> int:
    """Bring the lab up (keeping what runs), serve the stand-ins, run site.yml against it."""
    running = [c for c in lab.containers() if c.running]
    inventory = lab.up(max(count, len(running)))
    # Its own settings file: background stand-ins (`stand-ins start`) may be serving too.
    with stand_ins.running(lab.gateway, lab.state_dir / "site-stand-ins.yml") as extra_vars:
        command = site_command(str(inventory), str(extra_vars), playbook_args)
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


def make_parser() -> argparse.ArgumentParser:
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
    site = sub.add_parser(
        "site",
        help="bring the lab up if needed and run site.yml on it; every argument after "
        "'site' (bar --count N) goes to ansible-playbook: site --check -e x=1 -v",
    )
    site.add_argument("--count", type=int, default=2)
    image = sub.add_parser("image", help="build the VM image when its recipe changed")
    image.add_argument("--rebuild", action="store_true")
    stand = sub.add_parser(
        "stand-ins",
        help="serve the Hugging Face/CivitAI stand-ins to the lab in the background; "
        "their settings (endpoints, made-up credentials, demo catalog) go to a 0600 "
        "extra-vars file whose path 'start' prints",
    )
    stand.add_argument("action", choices=["start", "stop", "serve"])
    return parser


def main(argv: list[str] | None = None) -> int:
    own, playbook_args = split_playbook_args(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(own)
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
            return run_site(lab, args.count, playbook_args)
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
