"""Reading nvidia-smi and judging a host: driver vs torch build, GPU memory, disk."""

from __future__ import annotations

import pytest

from forge_fleet.nvidia_gpu import (
    newest_torch_cuda,
    parse_cuda_version,
    parse_query_csv,
    probe,
    summary,
    verdict,
)

FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap")
T4_CSV = "0, Tesla T4, GPU-5f1c3c8e, 535.183.01, 15360, 7.5\n"
Q_535 = (
    "Driver Version                            : 535.183.01\n"
    "CUDA Version                              : 12.2\n"
)
BANNER = "| NVIDIA-SMI 550.127.05   Driver Version: 550.127.05   CUDA Version: 12.4     |"
GIB = 1024**3


def fake_smi(answers):
    """nvidia-smi by argument list: the real CLI's answers recorded from its documented formats."""

    def run(argv):
        for prefix, answer in answers:
            if argv[1].startswith(prefix):
                return answer
        raise AssertionError(f"unexpected call {argv}")

    return run


def judge(found, **kwargs):
    options = {
        "torch_cuda": "cu121",
        "families": [],
        "free_disk_bytes": 100 * GIB,
        "min_free_disk_gb": 50,
    }
    return verdict("lab-1", found, **{**options, **kwargs})


def test_query_csv_rows_become_gpus_with_numbers():
    [gpu] = parse_query_csv(T4_CSV, FIELDS)
    assert gpu == {
        "index": 0,
        "name": "Tesla T4",
        "uuid": "GPU-5f1c3c8e",
        "driver_version": "535.183.01",
        "memory.total": 15360,
        "compute_cap": "7.5",
    }


@pytest.mark.parametrize("text", [Q_535.replace("12.2", "12.4"), BANNER])
def test_cuda_version_is_read_from_q_or_the_banner(text):
    assert parse_cuda_version(text) == "12.4"


def test_probe_reads_gpus_driver_and_cuda():
    found = probe(fake_smi([("--query-gpu", (0, T4_CSV, "")), ("-q", (0, Q_535, ""))]))
    assert found["problem"] is None
    assert (found["driver_version"], found["cuda_version"]) == ("535.183.01", "12.2")
    assert summary(found)["memory_mib"] == 15360


def test_probe_retries_without_compute_cap_on_old_drivers():
    calls = []

    def run(argv):
        calls.append(argv[1])
        if "compute_cap" in argv[1]:
            return (2, 'Field "compute_cap" is not a valid field to query.\n\n', "")
        if argv[1] == "-q":
            return (0, Q_535.replace("535.183.01", "470.256.02").replace("12.2", "11.4"), "")
        return (0, "0, Tesla T4, GPU-1, 470.256.02, 15109\n", "")

    found = probe(run)
    assert found["driver_version"] == "470.256.02"
    assert found["gpus"][0].get("compute_cap") is None
    assert len(calls) == 3


def test_missing_nvidia_smi_names_the_azure_gpu_sizes():
    result = judge(probe(lambda argv: None))
    assert result["verdict"] == "fail"
    [message] = result["problems"]
    assert message.startswith("GPU check failed on lab-1: nvidia-smi not found.")
    assert "NC-series" in message and "ND-series" in message


def test_driver_not_loaded_says_what_to_check():
    not_loaded = (
        9,
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n",
        "",
    )
    found = probe(fake_smi([("--query-gpu", not_loaded)]))
    assert found["problem"] == "driver_not_loaded"
    [message] = judge(found)["problems"]
    assert "installed but not loaded" in message
    assert "lsmod | grep nvidia" in message


def test_old_driver_is_too_old_for_cu121_and_the_usable_build_is_named():
    found = {"gpus": [{"name": "Tesla T4", "memory.total": 15109}], "driver_version": "470.256.02"}
    result = judge(found)
    [message] = result["problems"]
    assert "Driver 470.256.02 on lab-1 is too old for torch built for CUDA 12.1 (cu121)" in message
    assert "needs driver >= 525.60.13" in message
    assert "preflight_torch_cuda: cu118" in message
    assert result["torch_cuda_supported"] == "cu118"


@pytest.mark.parametrize(
    ("driver", "build"),
    [
        ("450.80.02", "cu118"),
        ("525.60.13", "cu126"),
        ("535.183.01", "cu126"),
        ("570.86.10", "cu128"),
        ("440.33", None),
    ],
)
def test_newest_torch_build_follows_the_minimum_driver_table(driver, build):
    assert newest_torch_cuda(driver) == build


def test_flux_on_a_t4_fits_and_on_an_8_gib_gpu_does_not():
    t4 = {"gpus": [{"name": "Tesla T4", "memory.total": 15360}], "driver_version": "535.183.01"}
    small = {"gpus": [{"name": "Tesla M60", "memory.total": 8192}], "driver_version": "535.183.01"}
    assert judge(t4, families=["flux_dev", "sd1"])["verdict"] == "ok"
    result = judge(small, families=["flux_dev", "sd1"])
    [message] = result["problems"]
    assert "8192 MiB of GPU memory; the catalog's flux_dev models need about 12 GiB" in message


def test_vram_shortfall_can_be_a_warning():
    small = {"gpus": [{"name": "Tesla M60", "memory.total": 8192}], "driver_version": "535.183.01"}
    result = judge(small, families=["flux_schnell"], vram_shortfall="warn")
    assert result["verdict"] == "warn"
    assert result["problems"] == []
    assert "flux_schnell" in result["warnings"][0]


def test_too_little_disk_fails_with_the_numbers():
    t4 = {"gpus": [{"name": "Tesla T4", "memory.total": 15360}], "driver_version": "535.183.01"}
    [message] = judge(t4, free_disk_bytes=20 * GIB)["problems"]
    assert message.startswith("Only 20.0 GiB free on lab-1")
    assert "at least 50 GiB is needed" in message


def test_two_gpus_are_counted():
    csv = T4_CSV + "1, Tesla T4, GPU-2, 535.183.01, 15360, 7.5\n"
    found = probe(fake_smi([("--query-gpu", (0, csv, "")), ("-q", (0, Q_535, ""))]))
    assert summary(found)["count"] == 2
    assert summary(found)["names"] == ["Tesla T4", "Tesla T4"]
