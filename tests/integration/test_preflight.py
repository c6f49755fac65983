"""The preflight playbook on lab VMs whose nvidia-smi double plays each GPU scenario."""

from __future__ import annotations

import csv

import pytest

from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def preflight(lab, tmp_path, **extravars):
    result = run_playbook(
        "playbooks/preflight.yml",
        lab.inventory,
        extravars={"preflight_report_dir": str(tmp_path), **extravars},
    )
    return result, lab.hosts


def gpu_fact(result, host):
    return result.task("Export the preflight facts for later roles", host).res["ansible_facts"][
        "preflight_gpu"
    ]


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("t4", ("Tesla T4", 1, 15360, "535.183.01", "12.2")),
        ("a100", ("NVIDIA A100 80GB PCIe", 1, 81920, "535.183.01", "12.2")),
        ("h100", ("NVIDIA H100 80GB HBM3", 1, 81559, "550.127.05", "12.4")),
        ("two-t4", ("Tesla T4", 2, 15360, "535.183.01", "12.2")),
    ],
)
def test_healthy_gpus_pass_and_export_their_facts(lab, tmp_path, scenario, expected):
    host = lab.hosts[0]
    lab.set_gpu(host, scenario)
    result, _ = preflight(lab, tmp_path, preflight_model_families=["flux_dev"])
    assert result.ok, result.explain()
    fact = gpu_fact(result, host)
    keys = ("name", "count", "memory_mib", "driver_version", "cuda_version")
    assert tuple(fact[k] for k in keys) == expected
    assert fact["verdict"] == "ok"
    assert not result.task("Check that the host can run Forge", host).failed


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("none", "nvidia-smi not found"),
        ("not-loaded", "the NVIDIA driver is installed but not loaded"),
        ("old-470", "Driver 470.256.02 on {host} is too old for torch built for CUDA 12.1"),
    ],
)
def test_unusable_gpu_fails_the_host_with_advice(lab, tmp_path, scenario, expected):
    host = lab.hosts[1]
    lab.set_gpu(host, scenario)
    result, _ = preflight(lab, tmp_path)
    failure = result.task("Check that the host can run Forge", host)
    assert failure.failed
    assert failure.msg.startswith(f"Preflight failed on {host}: ")
    assert expected.format(host=host) in failure.msg
    assert result.stats[lab.hosts[0]]["failures"] == 0


def test_fleet_table_lists_every_host_even_when_one_fails(lab, tmp_path):
    lab.set_gpu(lab.hosts[0], "a100")
    lab.set_gpu(lab.hosts[1], "none")
    result, hosts = preflight(lab, tmp_path)
    table = (tmp_path / "preflight.txt").read_text().splitlines()
    assert table[0].split() == ["HOST", "GPU", "VRAM", "DRIVER", "CUDA", "DISK", "FREE", "VERDICT"]
    first, second = table[1].split(), table[2].split()
    assert first[0] == hosts[0] and "A100" in table[1] and "80 GiB" in table[1]
    assert first[-1] == "OK"
    assert second[0] == hosts[1] and second[-1] == "FAIL"
    assert f"{hosts[1]}: FAIL: GPU check failed on {hosts[1]}: nvidia-smi not found" in table[4]
    rows = list(csv.DictReader((tmp_path / "preflight.csv").open()))
    assert [(r["host"], r["verdict"]) for r in rows] == [(hosts[0], "ok"), (hosts[1], "fail")]
    assert rows[0]["vram_mib"] == "81920"
    assert table[-1] == f"1 of 2 hosts cannot run Forge: {hosts[1]}"
    shown = result.task("Show the fleet table", hosts[0]).res["msg"]
    assert shown.splitlines() == table


def test_two_gpus_show_as_a_count_in_the_fleet_table(lab, tmp_path):
    for host in lab.hosts:
        lab.set_gpu(host, "two-t4")
    result, hosts = preflight(lab, tmp_path)
    assert result.ok, result.explain()
    table = (tmp_path / "preflight.txt").read_text().splitlines()
    assert table[1].split()[:4] == [hosts[0], "2x", "Tesla", "T4"]
    assert table[-1] == "All 2 hosts can run Forge."


def test_catalog_bundles_set_the_gpu_memory_needed(lab, tmp_path):
    host = lab.hosts[0]
    lab.set_gpu(host, "t4")
    result, _ = preflight(
        lab, tmp_path, models_bundles=["flux1_dev_fp8"], preflight_vram_gib={"flux_dev": 24}
    )
    assert gpu_fact(result, host)["model_families"] == ["flux_dev"]
    message = result.task("Check that the host can run Forge", host).msg
    assert f"Tesla T4 on {host} has 15360 MiB of GPU memory" in message
    assert "the catalog's flux_dev models need about 24 GiB" in message


def test_not_enough_vram_for_the_catalog_fails_or_warns(lab, tmp_path):
    host = lab.hosts[0]
    lab.set_gpu(host, "t4")
    lab.set_gpu(lab.hosts[1], "t4")
    big = {"preflight_model_families": ["flux_dev"], "preflight_vram_gib": {"flux_dev": 24}}
    failed, _ = preflight(lab, tmp_path, **big)
    assert (
        "the catalog's flux_dev models need about 24 GiB"
        in failed.task("Check that the host can run Forge", host).msg
    )
    warned, _ = preflight(lab, tmp_path, preflight_vram_shortfall="warn", **big)
    assert warned.ok, warned.explain()
    assert gpu_fact(warned, host)["verdict"] == "warn"


def test_not_enough_disk_fails_with_the_numbers(lab, tmp_path):
    lab.set_gpu(lab.hosts[0], "t4")
    result, _ = preflight(lab, tmp_path, preflight_min_free_disk_gb=1000000)
    assert (
        "at least 1e+06 GiB is needed"
        in result.task("Check that the host can run Forge", lab.hosts[0]).msg
    )


def test_check_mode_changes_nothing_and_still_writes_the_report(lab, tmp_path):
    for host in lab.hosts:
        lab.set_gpu(host, "t4")
    result = run_playbook(
        "playbooks/preflight.yml",
        lab.inventory,
        check=True,
        extravars={"preflight_report_dir": str(tmp_path)},
    )
    assert result.ok, result.explain()
    assert [result.stats[h]["changed"] for h in lab.hosts] == [0, 0]
    assert (tmp_path / "preflight.txt").read_text().splitlines()[-1] == "All 2 hosts can run Forge."


def test_a_second_run_reports_no_change(lab, tmp_path):
    for host in lab.hosts:
        lab.set_gpu(host, "t4")
    for _ in range(2):
        result, _hosts = preflight(lab, tmp_path)
        assert result.ok, result.explain()
    assert [result.stats[h]["changed"] for h in lab.hosts] == [0, 0]


def test_site_runs_preflight_first(lab, tmp_path):
    result = run_playbook(
        "site.yml",
        lab.inventory,
        check=True,
        limit=lab.hosts[0],
        extravars={"preflight_report_dir": str(tmp_path)},
    )
    tasks = [t.task for t in result.tasks if not t.task.startswith("Validating arguments")]
    assert tasks[:2] == [
        "Read the GPUs, driver and CUDA version, and the free disk where Forge will live",
        "Export the preflight facts for later roles",
    ]


@pytest.mark.parametrize("check", [False, True], ids=["run", "check-mode"])
def test_an_unreachable_share_server_is_a_warning_not_a_failure(lab, tmp_path, check):
    # from inside the VM nothing listens on 127.0.0.1:9 (discard): the share server a
    # GRADIO_SHARE_SERVER_ADDRESS names cannot be reached; the binary comes from a URL
    for host in lab.hosts:
        lab.set_gpu(host, "t4")
    result = run_playbook(
        "playbooks/preflight.yml",
        lab.inventory,
        check=check,
        extravars={
            "preflight_report_dir": str(tmp_path),
            "preflight_check_share": True,
            "preflight_share_environment": {"GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9"},
            "preflight_frpc_url": "https://mirror.example/frpc_linux_amd64",
        },
    )
    assert result.ok, result.explain()
    for host in lab.hosts:
        (line,) = result.task("Warn that sharing may fail", host).res["msg"]
        assert line.startswith(
            "sharing may fail: this VM cannot reach gradio's share server 127.0.0.1:9"
            " (GRADIO_SHARE_SERVER_ADDRESS)"
        ), line
        assert result.task("Check that the host can run Forge", host).status == "ok"
        assert result.stats[host]["changed"] == 0


def test_without_internet_the_default_share_check_names_gradio_and_its_cdn(lab, tmp_path):
    # the lab has no internet: group_vars turn the check on with webui_share, and both
    # of gradio's targets are reported, the run still passes
    lab.set_gpu(lab.hosts[0], "t4")
    result = run_playbook(
        "playbooks/preflight.yml",
        lab.inventory,
        limit=lab.hosts[0],
        extravars={"preflight_report_dir": str(tmp_path)},
    )
    assert result.ok, result.explain()
    lines = result.task("Warn that sharing may fail", lab.hosts[0]).res["msg"]
    assert [line.split(" (")[0] for line in lines] == [
        "sharing may fail: this VM cannot reach gradio's share server"
        " https://api.gradio.app/v2/tunnel-request",
        "sharing may fail: this VM cannot download gradio's tunnel binary"
        " https://cdn-media.huggingface.co/frpc-gradio-0.2/frpc_linux_amd64",
    ]
    assert "webui_frpc_url" in lines[1]
