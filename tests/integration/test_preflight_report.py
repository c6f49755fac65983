"""The preflight's report and facts as an operator and later stages see them (one lab VM)."""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness.lab import LabHandle, free_port_block, lab_vms
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HEADER = (
    "HOST               GPU                           VRAM DRIVER        CUDA   DISK FREE  VERDICT"
)


@pytest.fixture(scope="module")
def vm() -> Iterator[LabHandle]:
    """One VM is enough here: these tests switch its GPU scenario instead of adding VMs."""
    with lab_vms("t-preflight-report", 1, free_port_block(1), ["a100"]) as handle:
        yield handle


def preflight(vm, tmp_path, **extravars):
    return run_playbook(
        "playbooks/preflight.yml",
        vm.inventory,
        extravars={"preflight_report_dir": str(tmp_path), **extravars},
    )


def test_each_run_keeps_a_utc_stamped_copy_of_the_latest_report(vm, tmp_path):
    vm.set_gpu(vm.hosts[0], "a100")
    result = preflight(vm, tmp_path)
    assert result.ok, result.explain()
    [stamped_txt] = tmp_path.glob("preflight-*Z.txt")
    [stamped_csv] = tmp_path.glob("preflight-*Z.csv")
    assert stamped_txt.read_text() == (tmp_path / "preflight.txt").read_text()
    assert stamped_csv.read_text() == (tmp_path / "preflight.csv").read_text()


def test_the_fleet_table_is_printed_line_for_line(vm, tmp_path):
    vm.set_gpu(vm.hosts[0], "h100")
    result = preflight(vm, tmp_path)
    host = vm.hosts[0]
    assert HEADER in result.stdout
    row = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith(host))
    assert row.split()[1:] == [
        "NVIDIA", "H100", "80GB", "HBM3", "80", "GiB", "550.127.05", "12.4",
        *row.split()[-3:-1], "OK",
    ]  # fmt: skip


def test_the_csv_report_names_the_problem_of_a_failing_host(vm, tmp_path):
    host = vm.hosts[0]
    vm.set_gpu(host, "not-loaded")
    result = preflight(vm, tmp_path)
    assert not result.ok
    [row] = csv.DictReader((tmp_path / "preflight.csv").open())
    assert (row["host"], row["gpu"], row["verdict"]) == (host, "", "fail")
    assert row["problems"].startswith(
        f"GPU check failed on {host}: the NVIDIA driver is installed but not loaded "
        "(NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    )


def test_the_fact_lists_each_gpu_for_later_stages(vm, tmp_path):
    host = vm.hosts[0]
    vm.set_gpu(host, "two-t4")
    result = preflight(vm, tmp_path)
    fact = result.task("Export the preflight facts for later roles", host).res["ansible_facts"][
        "preflight_gpu"
    ]
    assert [(g["index"], g["name"], g["memory_mib"]) for g in fact["gpus"]] == [
        (0, "Tesla T4", 15360),
        (1, "Tesla T4", 15360),
    ]
    assert (fact["torch_cuda"], fact["torch_cuda_supported"]) == ("cu121", "cu126")


def test_a_driver_too_old_for_the_torch_build_passes_when_the_build_is_lowered(vm, tmp_path):
    host = vm.hosts[0]
    vm.set_gpu(host, "old-470")
    result = preflight(vm, tmp_path, preflight_torch_cuda="cu118")
    assert result.ok, result.explain()
    fact = result.task("Export the preflight facts for later roles", host).res["ansible_facts"][
        "preflight_gpu"
    ]
    assert (fact["driver_version"], fact["cuda_version"], fact["verdict"]) == (
        "470.256.02",
        "11.4",
        "ok",
    )
    assert fact["compute_capability"] is None  # drivers before 510 cannot be asked for it


def test_a_gpu_size_whose_gpu_is_not_visible_fails_with_the_azure_sizes(vm, tmp_path):
    host = vm.hosts[0]
    vm.set_gpu(host, "no-devices")
    result = preflight(vm, tmp_path)
    message = result.task("Check that the host can run Forge", host).msg
    assert f"GPU check failed on {host}: nvidia-smi lists no GPU" in message
    assert "NC-series" in message


def test_an_unreachable_host_is_still_a_row_of_the_fleet_table(vm, tmp_path):
    vm.set_gpu(vm.hosts[0], "a100")
    inventory = yaml.safe_load(Path(vm.inventory).read_text())
    with socket.socket() as sock:  # a port on loopback that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    inventory["all"]["children"]["forge_servers"]["hosts"]["ghost-1"] = {
        "ansible_host": "127.0.0.1",
        "ansible_port": closed_port,
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    result = run_playbook(
        "playbooks/preflight.yml",
        str(tmp_path / "inventory.yml"),
        extravars={"preflight_report_dir": str(tmp_path / "reports")},
    )
    assert result.stats["ghost-1"]["dark"] == 1  # ansible-runner counts unreachable as "dark"
    rows = {r["host"]: r for r in csv.DictReader((tmp_path / "reports/preflight.csv").open())}
    assert (rows[vm.hosts[0]]["verdict"], rows["ghost-1"]["verdict"]) == ("ok", "unreachable")
    assert rows["ghost-1"]["problems"] == "no preflight result: the host was unreachable"
    table = (tmp_path / "reports/preflight.txt").read_text().splitlines()
    assert table[-1] == "1 of 2 hosts cannot run Forge: ghost-1"
