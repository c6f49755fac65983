"""nvidia-smi's real output formats: the parser reads them, and the lab double prints them.

The samples below follow what NVIDIA's drivers print (layouts seen in public output of
470.x, 535.x and 550.x drivers; values are the lab scenarios', not anyone's machine). The
banner changed width twice: 79 columns before 530, 89 for 530-549, 91 from 550.
"""

from __future__ import annotations

import pytest

from forge_fleet.nvidia_gpu import (
    parse_cuda_version,
    parse_query_csv,
    probe,
    summary,
    verdict,
)
from tests.harness.nvidia_smi import double

GIB = 1024**3

BANNER_470 = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.256.02   Driver Version: 470.256.02   CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. |
|                               |                      |               MIG M. |
|===============================+======================+======================|
"""
BANNER_535 = """\
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.183.01             Driver Version: 535.183.01   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |
|                                         |                      |               MIG M. |
|=========================================+======================+======================|
"""
BANNER_550 = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.127.05             Driver Version: 550.127.05     CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
"""
Q_LOG_550 = """
==============NVSMI LOG==============

Timestamp                                 : Sun Nov 22 12:00:00 2026
Driver Version                            : 550.127.05
CUDA Version                              : 12.4

Attached GPUs                             : 1
GPU 00000001:00:00.0
    Product Name                          : NVIDIA H100 80GB HBM3
"""
NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n\n"
)
QUERY = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap")


def judge(found, **options):
    settings = {"torch_cuda": "cu121", "families": [], "free_disk_bytes": 100 * GIB}
    return verdict("lab-1", found, min_free_disk_gb=50, **{**settings, **options})


@pytest.mark.parametrize(
    ("banner", "cuda"), [(BANNER_470, "11.4"), (BANNER_535, "12.2"), (BANNER_550, "12.4")]
)
def test_cuda_version_is_read_from_every_banner_layout(banner, cuda):
    assert parse_cuda_version(banner) == cuda


def test_cuda_version_is_read_from_the_q_log():
    assert parse_cuda_version(Q_LOG_550) == "12.4"


def test_values_a_gpu_does_not_report_become_none():
    [gpu] = parse_query_csv("0, Tesla T4, GPU-1, 535.183.01, [N/A], [Not Supported]\n", QUERY)
    assert (gpu["memory.total"], gpu["compute_cap"]) == (None, None)
    assert summary({"gpus": [gpu]})["memory_mib"] == 0


def test_no_devices_found_is_judged_as_no_gpu_with_the_azure_sizes():
    found = probe(lambda argv: (6, "No devices were found\n", ""))
    assert found["problem"] == "no_gpu"
    [message] = judge(found)["problems"]
    assert message.startswith("GPU check failed on lab-1: nvidia-smi lists no GPU")
    assert "NC-series" in message


def test_a_gpu_fallen_off_the_bus_is_explained_by_its_exit_code():
    found = probe(
        lambda argv: (15, "Unable to determine the device handle for GPU0: GPU is lost\n", "")
    )
    [message] = judge(found)["problems"]
    assert message == (
        "GPU check failed on lab-1: nvidia-smi failed: Unable to determine the device handle "
        "for GPU0: GPU is lost (exit code 15: the GPU has fallen off the bus: a hardware or "
        "host fault, redeploy or restart the VM)."
    )


def test_each_gpu_is_listed_in_the_summary():
    gpus = summary(probe(double("two-t4")))["gpus"]
    assert [(g["index"], g["name"], g["memory_mib"], g["compute_capability"]) for g in gpus] == [
        (0, "Tesla T4", 15360, "7.5"),
        (1, "Tesla T4", 15360, "7.5"),
    ]
    assert gpus[0]["uuid"] != gpus[1]["uuid"]


# The double against the formats above.


@pytest.mark.parametrize(
    ("scenario", "real"), [("old-470", BANNER_470), ("t4", BANNER_535), ("h100", BANNER_550)]
)
def test_double_banner_header_matches_the_drivers_layout(scenario, real):
    rc, out, _ = double(scenario)(["nvidia-smi"])
    assert rc == 0
    lines = out.splitlines()
    assert lines[1 : 1 + len(real.splitlines())] == real.splitlines()


@pytest.mark.parametrize(("scenario", "width"), [("old-470", 79), ("t4", 89), ("h100", 91)])
def test_double_banner_rows_are_as_wide_as_the_layout(scenario, width):
    _, out, _ = double(scenario)(["nvidia-smi"])
    assert {len(line) for line in out.splitlines()[1:]} == {width}


def test_double_banner_shows_memory_like_the_driver_does():
    _, out, _ = double("t4")(["nvidia-smi"])
    assert "|      0MiB / 15360MiB |      0%      Default |" in out
    assert "|  No running processes found" in out


def test_double_q_log_starts_with_driver_and_cuda_versions():
    rc, out, _ = double("h100")(["nvidia-smi", "-q"])
    assert rc == 0
    assert out.splitlines()[:7] == [
        "",
        "==============NVSMI LOG==============",
        "",
        out.splitlines()[3],
        "Driver Version                            : 550.127.05",
        "CUDA Version                              : 12.4",
        "",
    ]
    assert out.splitlines()[3].startswith("Timestamp                                 : ")


def test_double_old_driver_rejects_compute_cap_like_a_470_driver():
    rc, out, _ = double("old-470")(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv"])
    assert (rc, out) == (2, 'Field "compute_cap" is not a valid field to query.\n\n')


def test_double_prints_the_real_message_when_the_driver_is_not_loaded():
    assert double("not-loaded")(["nvidia-smi"]) == (9, NOT_LOADED, "")


def test_double_csv_with_units_and_header():
    rc, out, _ = double("a100")(
        ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv"]
    )
    assert (rc, out) == (
        0,
        "name, memory.total [MiB], compute_cap\nNVIDIA A100 80GB PCIe, 81920 MiB, 8.0\n",
    )


def test_double_without_a_visible_gpu_says_no_devices_were_found():
    assert double("no-devices")(["nvidia-smi", "-L"]) == (6, "No devices were found\n", "")
    assert probe(double("no-devices"))["problem"] == "no_gpu"
