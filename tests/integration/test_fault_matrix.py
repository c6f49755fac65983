"""Repair by re-run, fault by fault: two lab VMs converged once by site.yml, then rounds of
one fault per host. Each round runs `site.yml --check --diff` (it must report the fault on
its host, naming it, and change nothing) and then `site.yml` (it must repair exactly that
fault and change nothing else, on either host). The matrix with the time of each run is
written to fault-matrix.md in the class's temporary folder (docs/fault-matrix.md).

The rounds are split over two test classes, each with its own two VMs (a class-scoped lab),
so that `tests/run` (pytest-xdist, `--dist loadscope`) runs the halves on two workers."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import podman
from tests.fixtures import models
from tests.harness.lab import free_port_block, lab_vms
from tests.harness.playbook import PlaybookResult, run_playbook
from tests.harness.site import SiteSettings, site_settings

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORGE = "/home/azureuser/stable-diffusion-webui-forge"  # group_vars/all/fleet.yml
CHECKPOINT = f"{FORGE}/models/Stable-diffusion/tiny-sd15.safetensors"  # the demo catalog
LORA = f"{FORGE}/models/Lora/detail-tweaker.safetensors"
WRONG_LORA = f"{FORGE}/models/Lora/xl-style.safetensors"  # an SDXL LoRA, not in the catalog
EXTENSION = f"{FORGE}/extensions/sd-forge-standin-extension"
AUTH_FILE = "/home/azureuser/.config/forge-fleet/webui-auth"
UNIT = "/etc/systemd/system/forge-webui.service"
ENV = "/anaconda/envs/forge"
AZCOPY = "/opt/azcopy"
SYNC_SCRIPT = "/usr/local/bin/forge-sync-outputs"
SAS_FILE = "/home/azureuser/.forge-sync/sas-url"
STATE_RECORD = "/var/lib/forge-fleet/forge.json"  # the forge stage's record
GIT = "git -c safe.directory=*"

PLAN = "Plan the downloads and check disk space and base models"
SHOW_PLAN = "Show what a real run would download or repair"
DOWNLOADED = "Collect the download results"
WEBUI_FILES = "Write the login files, the launcher and the systemd unit"  # one host_files run
RESTART_FOR = "Restart Forge for the files it reads when it starts"
RESTART = "Restart the webui"
RECORD = "Record what was checked out and prepared"
# one git_checkout run for Forge and every extension
CHECKOUT = "Check out Forge and the extensions at the pinned commits"
SYNC_FILES = "Write the sync folders, the SAS URL, the settings and the script"
ACCESS_ROW = "Write this host's access row on the controller"
# run_once on the controller for the whole fleet: counted on the play's first host, whichever
# host restarted; asserted per round, not per host
ACCESS_FILE = "Assemble the access file the instructor hands out"


@dataclass(frozen=True)
class Fault:
    name: str
    inject: str  # shell, as root on the VM
    probe: str  # shell, as root on the VM: prints the state the fault changes
    check: list[str]  # the tasks --check reports changed on the host
    repair: list[str]  # the tasks the real run changes on the host
    detail: str = ""  # what --check must name besides the task (file, commit, line, ...)
    restarts: bool = False  # Forge restarts (a new share link: the controller's access file)
    kept: bool = False  # not the role's to repair: reported, left in place
    # host_files tasks: what they change (or report in --check) on the host, path by path
    files: dict[str, list[str]] = field(default_factory=dict)


def _state(path: str) -> str:
    return f"stat -c '%a %U %s' {path} 2>/dev/null || echo absent"


def _hash(path: str) -> str:
    return f"sha256sum {path} 2>/dev/null || echo absent"


FAULTS = [
    Fault(
        "model deleted",
        f"rm {CHECKPOINT}",
        _hash(CHECKPOINT),
        [PLAN],
        [DOWNLOADED],
        detail="download models/Stable-diffusion/tiny-sd15.safetensors",
    ),
    Fault(
        "model truncated",
        f"truncate -s 1000 {LORA}",
        _hash(LORA),
        [PLAN],
        [DOWNLOADED],
        detail="repair models/Lora/detail-tweaker.safetensors",
    ),
    Fault(
        "model replaced by another file of the same name",
        f"head -c $(stat -c %s {CHECKPOINT}) /dev/urandom > /tmp/other && "
        f"cat /tmp/other > {CHECKPOINT} && rm /tmp/other",  # same size, owner and name
        _hash(CHECKPOINT),
        [PLAN],
        [DOWNLOADED],
        detail="repair models/Stable-diffusion/tiny-sd15.safetensors",
    ),
    Fault(
        "LoRA of the wrong family in models/Lora",
        f"chown azureuser:azureuser {WRONG_LORA}",  # copied in by inject_wrong_lora
        _hash(WRONG_LORA),
        [],
        [],
        detail="xl-style.safetensors: LoRA for sdxl does not fit any model present",
        kept=True,
    ),
    Fault(
        "service stopped",
        "systemctl stop forge-webui",
        "systemctl is-active forge-webui || true",
        ["Set the service state", ACCESS_ROW],
        ["Set the service state", ACCESS_ROW],
        restarts=True,
    ),
    Fault(
        "service disabled",
        "systemctl disable forge-webui",
        "systemctl is-enabled forge-webui || true",
        ["Start the service at boot, or not when it is meant to stay stopped"],
        ["Start the service at boot, or not when it is meant to stay stopped"],
        detail='"enabled": true',
    ),
    Fault(
        "unit file edited",
        f"sed -i 's/^Restart=always/Restart=no/' {UNIT}",
        _hash(UNIT),
        [WEBUI_FILES, RESTART_FOR, RESTART, ACCESS_ROW],
        [WEBUI_FILES, RESTART_FOR, RESTART, ACCESS_ROW],
        detail="Restart=always",
        restarts=True,
        files={UNIT: ["content"]},
    ),
    Fault(
        "auth file deleted",
        f"rm {AUTH_FILE}",
        _state(AUTH_FILE),
        # created with its owner and 0600 before the password is written into it
        [WEBUI_FILES, RESTART_FOR, RESTART, ACCESS_ROW],
        [WEBUI_FILES, RESTART_FOR, RESTART, ACCESS_ROW],
        restarts=True,
        files={AUTH_FILE: ["created"]},
    ),
    Fault(
        "auth file mode loosened",
        f"chmod 0644 {AUTH_FILE}",
        _state(AUTH_FILE),
        # the mode alone: Forge reads the file at start and its content did not change
        [WEBUI_FILES],
        [WEBUI_FILES],
        detail=f"{AUTH_FILE}: mode 0600",
        files={AUTH_FILE: ["mode"]},
    ),
    Fault(
        "conda env deleted",
        f"rm -rf {ENV}",
        f"{ENV}/bin/python -c 'import importlib.metadata as m; "
        'print(sorted(d.metadata["Name"] for d in m.distributions()))\' 2>/dev/null '
        "|| echo absent",
        # prepared again: a new fingerprint in the unit restarts Forge on the new env
        [
            "Create the conda environment for Forge",
            "Report the preparation that would run (check mode)",
            RECORD,
            WEBUI_FILES,
            RESTART_FOR,
            RESTART,
            ACCESS_ROW,
        ],
        [
            "Create the conda environment for Forge",
            "Collect the preparation result",
            RECORD,
            WEBUI_FILES,
            RESTART_FOR,
            RESTART,
            ACCESS_ROW,
        ],
        detail='"before": "absent',
        restarts=True,
        files={STATE_RECORD: ["content"], UNIT: ["content"]},
    ),
    Fault(
        "checkout moved to another commit",
        f"su azureuser -c '{GIT} -C {FORGE} checkout -q HEAD~1'",
        f"{GIT} -C {FORGE} rev-parse HEAD",
        [CHECKOUT],
        [CHECKOUT],
        detail="{forge_version}",
    ),
    Fault(
        "tracked Forge file deleted",
        f"rm {FORGE}/webui.sh",
        _hash(f"{FORGE}/webui.sh"),
        [CHECKOUT],
        [CHECKOUT],
        detail="webui.sh",
    ),
    Fault(
        "extension removed",
        f"rm -rf {EXTENSION}",
        f"{GIT} -C {EXTENSION} rev-parse HEAD 2>/dev/null || echo absent",
        [CHECKOUT],
        [CHECKOUT],
        detail="sd-forge-standin-extension",
    ),
    Fault(
        "cron entry removed",
        "crontab -u azureuser -l | grep -v -e forge-sync-outputs -e '^#Ansible: forge-fleet' "
        "| crontab -u azureuser -",
        "crontab -u azureuser -l 2>&1",
        ["Run the sync from cron"],
        ["Run the sync from cron"],
        detail="forge-sync-outputs",
    ),
    Fault(
        "AzCopy removed",
        f"rm -rf {AZCOPY}",
        _hash(f"{AZCOPY}/*/azcopy"),
        ["Create the AzCopy folder", "Download the AzCopy release", "Unpack AzCopy"],
        ["Create the AzCopy folder", "Download the AzCopy release", "Unpack AzCopy"],
        detail=AZCOPY,
    ),
    Fault(
        "sync script edited",
        f"echo '# edited by hand' >> {SYNC_SCRIPT}",
        _hash(SYNC_SCRIPT),
        [SYNC_FILES],
        [SYNC_FILES],
        detail="edited by hand",
        files={SYNC_SCRIPT: ["content"]},
    ),
    Fault(
        "SAS file deleted",
        f"rm {SAS_FILE}",
        _state(SAS_FILE),
        [SYNC_FILES],
        [SYNC_FILES],
        files={SAS_FILE: ["created"]},
    ),
]
BY_NAME = {f.name: f for f in FAULTS}
# One fault per host per round: (first host's, second host's); None = no fault there.
ROUNDS: list[tuple[str, str | None]] = [
    ("model deleted", "model truncated"),
    ("model replaced by another file of the same name", "LoRA of the wrong family in models/Lora"),
    ("service stopped", "service disabled"),
    ("unit file edited", "auth file deleted"),
    ("auth file mode loosened", "conda env deleted"),
    ("checkout moved to another commit", "tracked Forge file deleted"),
    ("extension removed", "cron entry removed"),
    ("AzCopy removed", "sync script edited"),
    ("SAS file deleted", None),
]
assert sorted(n for pair in ROUNDS for n in pair if n) == sorted(BY_NAME)
# The two halves (ROUNDS indices), one per test class and lab; about equal in time: the
# second has the conda round (a preparation) and the checkout round (long runs).
HALVES = ((0, 1, 2, 3, 8), (4, 5, 6, 7))
assert sorted(i for half in HALVES for i in half) == list(range(len(ROUNDS)))


@dataclass
class Outcome:
    fault: Fault
    host: str
    round: int
    healthy: str = ""
    faulty: str = ""
    after_check: str = ""
    repaired: str = ""
    active_after: str = ""
    check: PlaybookResult | None = None
    real: PlaybookResult | None = None
    others: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)


def files_changed(result: PlaybookResult, host: str) -> dict[str, list[str]]:
    """What the run's host_files tasks changed (or, in --check, would) on ``host``, by path."""
    found: dict[str, list[str]] = {}
    for task in result.for_host(host):
        if task.action.endswith("host_files") and task.changed:
            found.update(task.res["changes"])
    return found


def on_host(result: PlaybookResult, host: str) -> list[str]:
    """The tasks a run changed on ``host``, without the fleet's run_once access file."""
    return [t for t in result.changed_tasks(host) if t != ACCESS_FILE]


class Matrix:
    """Runs the rounds in order, each once, when a test first asks for one of its faults."""

    def __init__(self, lab, site: SiteSettings, folder: Path, rounds: tuple[int, ...]) -> None:
        self.lab, self.site, self.folder, self.rounds = lab, site, folder, rounds
        self.outcomes: dict[str, Outcome] = {}
        self.failed: dict[int, Exception] = {}
        self.ran: set[int] = set()
        self.converge_s = 0.0

    def sh(self, host: str, script: str) -> str:
        return self.lab.exec(host, "sh", "-c", script).strip()

    def run(self, check: bool, index: int) -> PlaybookResult:
        result = run_playbook(
            "site.yml",
            self.lab.inventory,
            extravars=self.site.extravars,
            envvars=self.site.envvars,
            check=check,
            diff=check,
        )
        kind = "check" if check else "repair"
        (self.folder / f"round-{index + 1}-{kind}.log").write_text(result.stdout)
        assert result.ok, result.explain()
        return result

    def outcome(self, name: str) -> Outcome:
        """Each round leaves both hosts repaired, so a round can also run alone (-k)."""
        index = next(i for i in self.rounds if name in ROUNDS[i])
        if index not in self.ran:
            self.ran.add(index)
            try:
                self._round(index)
            except Exception as error:  # the round's faults all fail with it
                self.failed[index] = error
        if index in self.failed:
            raise self.failed[index]
        return self.outcomes[name]

    def _round(self, index: int) -> None:
        hosts = self.lab.hosts
        faults = {h: BY_NAME[n] for h, n in zip(hosts, ROUNDS[index], strict=True) if n}
        outcomes = {h: Outcome(f, h, index + 1) for h, f in faults.items()}
        for host, out in outcomes.items():
            out.healthy = self.sh(host, out.fault.probe)
            if out.fault.kept:
                inject_wrong_lora(host, self.folder)
            self.sh(host, out.fault.inject)
            out.faulty = self.sh(host, out.fault.probe)
        check = self.run(check=True, index=index)
        for host, out in outcomes.items():
            out.after_check = self.sh(host, out.fault.probe)
        real = self.run(check=False, index=index)
        for host, out in outcomes.items():
            out.repaired = self.sh(host, out.fault.probe)
        for out in outcomes.values():
            out.check, out.real = check, real
            out.active_after = ",".join(
                self.sh(h, "systemctl is-active forge-webui || true") for h in hosts
            )
            out.others = {
                h: (on_host(check, h), on_host(real, h)) for h in hosts if h not in faults
            }
            self.outcomes[out.fault.name] = out

    def write(self) -> Path:
        lines = [
            "| fault | `--check` reports (changed on the host) | the re-run changes | "
            "check s | repair s |",
            "|---|---|---|---|---|",
        ]
        for name in names(self.rounds):
            out = self.outcomes.get(name)
            if out is None or out.check is None or out.real is None:
                lines.append(f"| {name} | (not run) | | | |")
                continue
            reported = ", ".join(on_host(out.check, out.host)) or "nothing"
            if out.fault.kept:
                reported += f" (report: `{out.fault.detail}`)"
            elif out.fault.detail and out.fault.detail.startswith(("download ", "repair ")):
                reported += f" (`{out.fault.detail}`)"
            changed = ", ".join(on_host(out.real, out.host)) or "nothing"
            lines.append(
                f"| {name} | {reported} | {changed} | {out.check.duration_s:.0f} "
                f"| {out.real.duration_s:.0f} |"
            )
        lines += ["", f"converge: {self.converge_s:.0f} s"]
        done = [self.outcomes[n] for n in names(self.rounds) if n in self.outcomes]
        if done and done[-1].check and done[-1].real:
            last = done[-1]
            lines += [
                "",
                "where the last round's runs spent their time (seconds, summed over hosts):",
                "",
                *(f"- check {t}: {s:.1f}" for t, s in last.check.slowest(8)),
                *(f"- repair {t}: {s:.1f}" for t, s in last.real.slowest(8)),
            ]
        path = self.folder / "fault-matrix.md"
        path.write_text("\n".join(lines) + "\n")
        return path


def inject_wrong_lora(host: str, folder: Path) -> None:
    """An SDXL LoRA (real tensor layout) copied into the SD 1.5 fleet's models/Lora."""
    path = folder / "xl-style.safetensors"
    if not path.exists():
        models.write_with_data(path, models.kohya_lora("sdxl"), seed=3)
    podman.podman("cp", str(path), f"{host}:{WRONG_LORA}")


def names(rounds: tuple[int, ...]) -> list[str]:
    return [n for i in rounds for n in ROUNDS[i] if n]


@pytest.fixture(scope="class")
def matrix(request, tmp_path_factory):
    """The class's own two VMs converged by site.yml, and its rounds (Matrix)."""
    half = request.cls.HALF
    folder = tmp_path_factory.mktemp(f"fault-matrix-{half + 1}")
    with (
        lab_vms(f"t-fault-matrix-{half + 1}", 2, free_port_block(2)) as lab,
        site_settings(lab, folder) as site,
    ):
        built = Matrix(lab, site, folder, HALVES[half])
        converged = run_playbook(
            "site.yml", lab.inventory, extravars=site.extravars, envvars=site.envvars
        )
        assert converged.ok, converged.explain()
        built.converge_s = converged.duration_s
        yield built
        if built.outcomes:
            path = built.write()
            print(f"\nfault matrix, half {half + 1} ({path}):\n{path.read_text()}")


class TestFirstHalf:
    HALF = 0

    @pytest.mark.parametrize("name", names(HALVES[0]))
    def test_check_reports_the_fault_and_one_rerun_repairs_only_it(self, matrix, name):
        check_reports_the_fault_and_one_rerun_repairs_only_it(matrix, name)


class TestSecondHalf:
    HALF = 1

    @pytest.mark.parametrize("name", names(HALVES[1]))
    def test_check_reports_the_fault_and_one_rerun_repairs_only_it(self, matrix, name):
        check_reports_the_fault_and_one_rerun_repairs_only_it(matrix, name)


def check_reports_the_fault_and_one_rerun_repairs_only_it(matrix: Matrix, name: str) -> None:
    out = matrix.outcome(name)
    fault, host = out.fault, out.host
    assert out.faulty != out.healthy, f"{name}: the injection changed nothing"
    # --check: reports the fault on its host, names it, changes nothing
    assert on_host(out.check, host) == fault.check
    assert out.after_check == out.faulty, f"{name}: --check changed the host"
    detail = fault.detail.format(forge_version=matrix.site.extravars["forge_version"])
    if fault.kept:
        # not the catalog's: the report names it in both runs; it stays, and nothing changes
        for run in (out.check, out.real):
            assert re.search(rf"{host}: PROBLEM[^\n]*xl-style\.safetensors fail", run.stdout)
            assert detail in run.stdout
        assert out.repaired == out.faulty, f"{name}: the file was touched"
    else:
        named = [t.res for t in out.check.for_host(host) if t.changed or t.task == SHOW_PLAN]
        assert detail in json.dumps(named), f"{name}: --check does not name {detail!r}"
        # the real run: exactly the repair, and the state is back to what it was
        assert on_host(out.real, host) == fault.repair
        assert out.repaired == out.healthy, f"{name}: not repaired"
    # the host_files tasks name each path they change, and only the fault's (both runs)
    for run in (out.check, out.real):
        assert files_changed(run, host) == fault.files, f"{name}: other files changed"
    # the recap counts every change, so no task changed unseen (a no_log one, say)
    for run in (out.check, out.real):
        for each in matrix.lab.hosts:
            assert run.stats[each]["changed"] == len(run.changed_tasks(each))
    # the other host changed nothing but its own fault (asserted in that fault's test)
    for other, (checked, changed) in out.others.items():
        assert (checked, changed) == ([], []), f"{other} had no fault but changed"
    restarted = any(BY_NAME[n].restarts for n in ROUNDS[out.round - 1] if n)
    # a new share link rewrites the fleet's access file; --check predicts it (and the row)
    for run in (out.check, out.real):
        assert (ACCESS_FILE in run.changed_tasks(matrix.lab.hosts[0])) == restarted
    assert out.active_after == "active,active"
    # secrets stay out of the output, also while their files are repaired
    secrets = [re.search(r"sig=([^&]+)", matrix.site.extravars["sync_sas_url"]).group(1)]
    access = matrix.site.credentials / "webui-access.csv"
    secrets += [row["password"] for row in csv.DictReader(access.open())]
    for run in (out.check, out.real):
        for secret in secrets:
            assert secret not in run.stdout, f"{name}: a secret is in the output"
