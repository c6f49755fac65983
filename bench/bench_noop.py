"""No-op re-runs of site.yml on converged lab VMs: wall time, CPU seconds, where time goes.

    .venv/bin/python bench/bench_noop.py [--vms 8] [--big-gb 8] [--small-gb 0.1]
                                         [--rounds 3] [--keep]

Brings up --vms lab VMs (lab "bench-noop"; FORGE_LAB_PREFIX applies), serves the stand-ins
(lab/stand_ins.py) and converges the VMs with site.yml, every stage, as `forge-lab site`
does. Each VM's catalog is the demo catalog plus one sparse SD 1.5 LoRA placed
on the VM: of --big-gb on the second VM, of --small-gb on every other (a `url` entry with its
sha256: the models stage verifies it once, by hashing, and a re-run must not read it again).
Then, in --rounds interleaved rounds, three no-op runs of site.yml (each must report
changed=0 on every host), each as an operator runs it (`ansible-playbook`, a fresh SSH
control folder per run, so no run reuses another's connections):

  A. one VM with --small-gb of models (--limit)       target: at most 10 s
  B. one VM with --big-gb of models (--limit)         target: B / A at most 1.1
  C. all --vms VMs                                     target: C / A at most 3

Wall time is the median of the rounds. CPU seconds count every process: ansible-playbook and
all it waited for, its SSH ControlPersist masters (found by their control folder), this
process and its children (the stand-ins), and each VM's container cgroup (cpuacct.usage, or
cpu.stat under cgroup v2). "Where the time goes": per task, from the bench_profile callback
(bench/callbacks; what ansible.posix's profile_tasks measures, which is not installed here),
the median seconds per task of the A and C runs. B/A and C/A are the medians of each round's
ratio (B and C against the A of the same round, minutes apart), so a machine that speeds up or
slows down between rounds moves both sides; the ratio of the medians is printed beside them.
Before each run a fixed pure-Python workload is timed: its spread ("machine speed") is the
machine's own drift over the bench. Exits 1 when a target is missed. The 2-core development
machine is shared: read one run as a sample.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from lab import podman, stand_ins  # noqa: E402
from lab.paths import STATE_DIR  # noqa: E402
from lab.vms import Lab  # noqa: E402
from tests.fixtures import models  # noqa: E402
from tests.harness.lab import free_port_block  # noqa: E402

FORGE_MODELS = "/home/azureuser/stable-diffusion-webui-forge/models/Lora"
TICK = os.sysconf("SC_CLK_TCK")


# -- the models: sparse checkpoints, hashed once per size ------------------------------------


def sparse_model(size: int) -> tuple[bytes, str]:
    """The header of a sparse SD 1.5 LoRA of ``size`` bytes (the rest reads as zeros) and the
    file's sha256, cached under .lab/bench-noop (hashing 8 GB takes a while)."""
    folder = STATE_DIR / "bench-noop"
    folder.mkdir(parents=True, exist_ok=True)
    path = models.write_model(folder / f"{size}.safetensors", models.kohya_lora("sd1"), pad_to=size)
    with open(path, "rb") as handle:
        length = handle.read(8)
        header = length + handle.read(int.from_bytes(length, "little"))
    digest_file = folder / f"lora-{size}.sha256"
    if not digest_file.exists():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(8 << 20), b""):
                digest.update(chunk)
        digest_file.write_text(digest.hexdigest())
    path.unlink()  # the VM gets the header and a truncate: nothing to keep here
    return header, digest_file.read_text().strip()


def place_model(vm: str, header: bytes, size: int, name: str) -> None:
    script = (
        f"set -e; cd {FORGE_MODELS}; cat > {name}.part; truncate -s {size} {name}.part; "
        f"chown azureuser:azureuser {name}.part; touch -d @1700000000 {name}.part; "
        f"mv {name}.part {name}"
    )
    subprocess.run(["podman", "exec", "-i", vm, "sh", "-c", script], input=header, check=True)


def model_entry(name: str, digest: str) -> dict:
    return {
        "source": "url",
        "url": f"https://models.invalid/{name}",  # present and verified: never fetched
        "sha256": digest,
        "filename": name,
        "kind": "lora",
        "base_model": "sd1",
    }


# -- CPU seconds of every process ---------------------------------------------------------


def _proc_cpu(pid: str) -> float:
    """utime + stime + cutime + cstime of a process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICK


def _descendants(root: int) -> list[str]:
    children: dict[str, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            children.setdefault(ppid, []).append(entry)
    found, todo = [], [str(root)]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def controller_cpu() -> float:
    """This process, the children it waited for, and its live descendants (the stand-ins)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime
    return total + sum(_proc_cpu(pid) for pid in _descendants(os.getpid()))


def ssh_masters(control_dir: str) -> list[str]:
    """The ControlPersist masters of one run: daemons, found by their control folder."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ssh") and control_dir in cmdline:
                pids.append(entry)
    return pids


@functools.cache
def cgroup_of(vm: str) -> str:
    return podman.podman("inspect", "-f", "{{.State.CgroupPath}}", vm).strip()


def vm_cpu(vms: list[str]) -> float:
    """CPU seconds the VMs' containers used so far (their cgroups)."""
    total = 0.0
    for vm in vms:
        cgroup = cgroup_of(vm)
        v1 = Path(f"/sys/fs/cgroup/cpuacct{cgroup}/cpuacct.usage")
        if v1.exists():
            total += int(v1.read_text()) / 1e9
            continue
        stat = Path(f"/sys/fs/cgroup{cgroup}/cpu.stat").read_text()
        total += int(stat.split("usage_usec", 1)[1].split()[0]) / 1e6
    return total


# -- the machine's own speed, beside each run ----------------------------------------------


def calibration() -> float:
    """Seconds this process takes for a fixed pure-Python workload (about 0.12 s on the
    development machine), timed just before each run: the same work on the same code, so its
    spread over the bench is the machine's (other tenants, frequency), not the project's."""
    start = time.process_time()
    total = 0
    for i in range(2_000_000):
        total += i * i % 7
    return time.process_time() - start


# -- one no-op run ----------------------------------------------------------------------


def site(inventory: Path, extra: Path, limit: str | None, work: Path) -> dict:
    """site.yml as an operator runs it; wall time, CPU seconds, per-task profile, recap."""
    control = tempfile.mkdtemp(prefix="fcp-", dir="/tmp")  # short: the 108-byte socket limit
    profile = work / "profile.json"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control,
        "ANSIBLE_CALLBACK_PLUGINS": f"{ROOT}/plugins/callback:{ROOT}/bench/callbacks",
        "ANSIBLE_CALLBACKS_ENABLED": "forge_run_record,bench_profile",
        "BENCH_PROFILE_FILE": str(profile),
        "FORGE_RUN_RECORD": str(work / "run-record.json"),
        "NO_COLOR": "1",
    }
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory)]
    command += ["-e", f"@{extra}", "site.yml", *(["--limit", limit] if limit else [])]
    vms = [limit] if limit else hosts_of(inventory)
    speed = calibration()
    vm_cpu(vms)  # the cgroup paths looked up (podman) outside the measurement
    vm0, cpu0 = vm_cpu(vms), controller_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu1, vm = controller_cpu(), vm_cpu(vms) - vm0
    masters = ssh_masters(control)
    cpu = cpu1 - cpu0 + sum(_proc_cpu(pid) for pid in masters)
    for pid in masters:  # this run's own ssh masters, by their pid
        os.kill(int(pid), signal.SIGTERM)
    shutil.rmtree(control, ignore_errors=True)
    recap = {
        line.split(":", 1)[0].strip(): dict(
            part.split("=") for part in line.split(":", 1)[1].split() if "=" in part
        )
        for line in done.stdout.split("PLAY RECAP", 1)[-1].splitlines()
        if "changed=" in line
    }
    return {
        "rc": done.returncode,
        "wall": wall,
        "calibration": speed,
        "cpu_controller": cpu,
        "cpu_vms": vm,
        "profile": json.loads(profile.read_text()) if profile.exists() else [],
        "recap": recap,
        "tail": done.stdout[-3000:] + done.stderr[-2000:],
    }


def hosts_of(inventory: Path) -> list[str]:
    data = yaml.safe_load(inventory.read_text())
    return list(data["all"]["children"]["forge_servers"]["hosts"])


def noop_problem(run: dict, hosts: list[str]) -> str | None:
    if run["rc"] != 0:
        return f"site.yml failed (rc {run['rc']}):\n{run['tail']}"
    changed = {h: run["recap"].get(h, {}).get("changed") for h in hosts}
    if any(c != "0" for c in changed.values()):
        return f"not a no-op: changed per host {changed}"
    return None


# -- the benchmark ------------------------------------------------------------------------


def converge(lab: Lab, settings: dict, work: Path, args: argparse.Namespace) -> tuple:
    """site.yml on the fresh VMs, the sparse models placed, site.yml again (it verifies
    them); returns the inventory with each VM's catalog and the extra-vars file."""
    vms = hosts_of(lab.inventory_path)
    extra = work / "extra-vars.yml"
    fd = os.open(extra, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:  # the stand-ins' secrets: never on a command line
        yaml.safe_dump(
            {
                **{k: v for k, v in settings.items() if k != "models_catalog"},
                "report_dir": str(work / "reports"),
                "webui_credentials_dir": str(work / "credentials"),
            },
            handle,
        )
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    hosts = inventory["all"]["children"]["forge_servers"]["hosts"]
    for vm in vms:
        hosts[vm]["models_catalog"] = settings["models_catalog"]
    path = work / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    started = time.perf_counter()
    for vm in vms:  # what an earlier run placed: site.yml checks every model present
        podman.exec_in(
            vm, "sh", "-c", "rm -f /home/azureuser/stable-diffusion-webui-forge/models/*/bench-*"
        )
    first = site(path, extra, None, work)
    if first["rc"] != 0:
        raise SystemExit(f"converging failed:\n{first['tail']}")
    sizes = {"small": int(args.small_gb * 2**30), "big": int(args.big_gb * 2**30)}
    made = {kind: sparse_model(size) for kind, size in sizes.items()}
    for index, vm in enumerate(vms):
        kind = "big" if index == 1 else "small"
        name = f"bench-{kind}.safetensors"
        place_model(vm, made[kind][0], sizes[kind], name)
        entry = model_entry(name, made[kind][1])
        hosts[vm]["models_catalog"] = [*settings["models_catalog"], entry]
    path.write_text(yaml.safe_dump(inventory))
    second = site(path, extra, None, work)
    if second["rc"] != 0:
        raise SystemExit(f"verifying the placed models failed:\n{second['tail']}")
    print(
        f"converged {len(vms)} VMs in {time.perf_counter() - started:.0f} s "
        f"(site.yml, then again with the placed models verified)",
        flush=True,
    )
    return path, extra, vms


def where_time_goes(runs: list[dict], top: int) -> list[str]:
    """Median seconds per task over the runs, the biggest first, and the per-stage sums."""
    per_task: dict[str, list[float]] = {}
    for run in runs:
        seen: dict[str, float] = {}
        for _role, task, seconds in run["profile"]:
            seen[task] = seen.get(task, 0.0) + seconds
        for task, seconds in seen.items():
            per_task.setdefault(task, []).append(seconds)
    medians = {task: statistics.median(times) for task, times in per_task.items()}
    stages: dict[str, float] = {}
    for task, seconds in medians.items():
        stage = task.split(" : ", 1)[0] if " : " in task else "(plays, facts)"
        stages[stage] = stages.get(stage, 0.0) + seconds
    lines = [
        "   per stage: "
        + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(stages.items(), key=lambda item: -item[1]))
    ]
    lines.append(f"   {len(medians)} tasks; the {top} slowest:")
    for task, seconds in sorted(medians.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"   {seconds:6.2f} s  {task}")
    return lines


def summary(label: str, runs: list[dict]) -> tuple[float, str]:
    wall = statistics.median(r["wall"] for r in runs)
    ctl = statistics.median(r["cpu_controller"] for r in runs)
    vms = statistics.median(r["cpu_vms"] for r in runs)
    return wall, (
        f"{label}: {wall:.1f} s wall, CPU {ctl + vms:.1f} s "
        f"(controller {ctl:.1f} s, VMs {vms:.1f} s); runs: "
        + ", ".join(f"{r['wall']:.1f}" for r in runs)
    )


def paired(runs: dict[str, list[dict]], key: str) -> float:
    """Median over the rounds of this round's ``key`` run against this round's A."""
    return statistics.median(
        r["wall"] / a["wall"] for r, a in zip(runs[key], runs["A"], strict=True)
    )


def scaling(runs: dict[str, list[dict]], vms: int) -> str:
    """What bounds C here: its CPU per VM against A's (does a fleet cost more per VM than one
    VM?), and the least wall time its CPU allows on this machine's cores, where the lab VMs'
    CPU runs too (a fleet of real VMs spends theirs on their own cores)."""

    def cpu(key: str, part: str) -> float:
        return statistics.median(r[part] for r in runs[key])

    a_cpu = cpu("A", "cpu_controller") + cpu("A", "cpu_vms")
    c_ctl, c_vms = cpu("C", "cpu_controller"), cpu("C", "cpu_vms")
    cores = len(os.sched_getaffinity(0))
    floor = (c_ctl + c_vms) / cores
    a_wall = statistics.median(r["wall"] for r in runs["A"])
    return (
        f"scaling: C's CPU per VM is {(c_ctl + c_vms) / vms / a_cpu:.2f}x A's; on {cores} cores "
        f"C's CPU allows no less than {floor:.1f} s ({floor / a_wall:.2f}x A), "
        f"{c_ctl / cores:.1f} s without the VMs' share ({c_ctl / cores / a_wall:.2f}x A)"
    )


def machine_speed(runs: list[dict]) -> str:
    """The calibration's spread over the bench: how far the machine itself drifted."""
    times = [r["calibration"] for r in runs]
    return (
        f"machine speed (fixed workload before each run): {min(times):.3f}-{max(times):.3f} s, "
        f"slowest/fastest {max(times) / min(times):.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--big-gb", type=float, default=8.0)
    parser.add_argument("--small-gb", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="slowest tasks to list")
    parser.add_argument("--keep", action="store_true", help="leave the lab VMs up")
    args = parser.parse_args()
    lab = Lab(name="bench-noop", base_port=free_port_block(args.vms))
    if lab.inventory_path.exists():  # kept up by an earlier --keep: the same ports again
        hosts = yaml.safe_load(lab.inventory_path.read_text())["all"]["children"]
        first = next(iter(hosts["forge_servers"]["hosts"].values()))
        lab = Lab(name="bench-noop", base_port=int(first["ansible_port"]))
    lab.up(args.vms)  # keeps VMs an earlier --keep left: converging them again is quick
    try:
        # the same folder every time: the same stand-in ports, SAS and webui passwords, so a
        # lab kept from an earlier run is still converged
        work = lab.state_dir / "bench"
        work.mkdir(exist_ok=True)
        vars_path = work / "stand-ins.yml"
        with stand_ins.running(lab.gateway, vars_path):
            settings = yaml.safe_load(vars_path.read_text())
            inventory, extra, vms = converge(lab, settings, work, args)
            runs: dict[str, list[dict]] = {"A": [], "B": [], "C": []}
            for _ in range(args.rounds):
                for key, limit in (("A", vms[0]), ("B", vms[1]), ("C", None)):
                    run = site(inventory, extra, limit, work)
                    problem = noop_problem(run, [limit] if limit else vms)
                    if problem:
                        raise SystemExit(f"run {key}: {problem}")
                    runs[key].append(run)
    finally:
        if not args.keep:
            lab.down()
    return report(runs, args)


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> int:
    """Print the medians, the ratios, the machine's drift and where the time goes; 1 when a
    target is missed."""
    missed = []
    a, line_a = summary(f"A. no-op, 1 VM, {args.small_gb:g} GiB of models", runs["A"])
    b, line_b = summary(f"B. no-op, 1 VM, {args.big_gb:g} GiB of models", runs["B"])
    c, line_c = summary(f"C. no-op, {args.vms} VMs", runs["C"])
    # each round's B and C against that round's A (minutes apart, on the machine as it was
    # then), the median of those: the targets' ratios
    b_a, c_a = paired(runs, "B"), paired(runs, "C")
    print(f"median of {args.rounds} interleaved rounds; all stages, changed=0 on every host")
    print(f"{line_a} (target <= 10 s)")
    print(f"{line_b} -> B/A {b_a:.2f} (target <= 1.1; ratio of the medians {b / a:.2f})")
    print(f"{line_c} -> C/A {c_a:.2f} (target <= 3; ratio of the medians {c / a:.2f})")
    print(scaling(runs, args.vms))
    print(machine_speed([run for key in "ABC" for run in runs[key]]))
    print(f"where the time goes, A (1 VM), median per task of {args.rounds} runs:")
    print("\n".join(where_time_goes(runs["A"], args.top)))
    print(f"where the time goes, C ({args.vms} VMs):")
    print("\n".join(where_time_goes(runs["C"], args.top)))
    if a > 10:
        missed.append("no-op on one VM over 10 s")
    if b_a > 1.1:
        missed.append("no-op time grows with model bytes")
    if c_a > 3:
        missed.append(f"no-op on {args.vms} VMs over 3x one VM")
    for miss in missed:
        print(f"MISSED: {miss}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
