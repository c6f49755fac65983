"""Reading nvidia-smi and judging a host: driver vs torch build, GPU memory, disk."""

from __future__ import annotations

import pytest

from forge_fleet.nvidia_gpu import (
    families_in_catalog,
    newest_torch_cuda,
    parse_cuda_version,
    parse_query_csv,
    probe,
    summary,
    verdict,
)
from tests.harness.nvidia_smi import double

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


# The banner of a 470 driver: the older, 79-column layout (NVIDIA's default nvidia-smi output).
BANNER_470 = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.256.02   Driver Version: 470.256.02   CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
"""


def test_cuda_version_is_read_from_the_old_banner_layout():
    assert parse_cuda_version(BANNER_470) == "11.4"


def test_probe_falls_back_to_the_banner_when_q_has_no_cuda_version():
    def run(argv):
        if len(argv) == 1:
            return (0, BANNER, "")
        if argv[1] == "-q":
            return (0, "Driver Version : 550.127.05\n", "")
        return (0, T4_CSV, "")

    assert probe(run)["cuda_version"] == "12.4"


def test_a_timed_out_nvidia_smi_is_a_failure_with_its_reason():
    found = probe(fake_smi([("--query-gpu", (124, "", "nvidia-smi did not answer within 30s"))]))
    assert found["problem"] == "nvidia_smi_failed"
    [message] = judge(found)["problems"]
    assert (
        message
        == "GPU check failed on lab-1: nvidia-smi failed: nvidia-smi did not answer within 30s"
    )


def test_an_empty_gpu_list_names_the_azure_gpu_sizes():
    found = probe(fake_smi([("--query-gpu", (0, "", ""))]))
    assert found["problem"] == "no_gpu"
    assert "NC-series" in judge(found)["problems"][0]


def test_catalog_bundles_and_entries_add_their_families():
    families = families_in_catalog(
        ["sd1"],
        ["flux1_dev_fp8", "sdxl_base"],
        [{"source": "civitai", "version_id": 1, "base_model": "sd3"}, {"source": "url"}],
    )
    assert families == ["flux_dev", "sd1", "sd3", "sdxl"]


# The lab's nvidia-smi double, run here for each scenario: the parser must read what it prints.


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("t4", (1, "Tesla T4", 15360, "7.5", "535.183.01", "12.2", "ok")),
        ("a100", (1, "NVIDIA A100 80GB PCIe", 81920, "8.0", "535.183.01", "12.2", "ok")),
        ("h100", (1, "NVIDIA H100 80GB HBM3", 81559, "9.0", "550.127.05", "12.4", "ok")),
        ("two-t4", (2, "Tesla T4", 15360, "7.5", "535.183.01", "12.2", "ok")),
        ("old-470", (1, "Tesla T4", 15109, None, "470.256.02", "11.4", "fail")),
        ("not-loaded", (0, None, 0, None, None, None, "fail")),
    ],
)
def test_every_double_scenario_is_read_and_judged(scenario, expected):
    found = probe(double(scenario))
    gpu = summary(found)
    keys = ("count", "name", "memory_mib", "compute_capability", "driver_version", "cuda_version")
    assert (*(gpu[k] for k in keys), judge(found)["verdict"]) == expected


def test_double_rejects_an_unknown_query_field_like_nvidia_smi():
    rc, out, _ = double("t4")(["nvidia-smi", "--query-gpu=name,cuda_version", "--format=csv"])
    assert (rc, out) == (2, 'Field "cuda_version" is not a valid field to query.\n\n')


def test_double_prints_units_in_csv_headers_and_cells_unless_nounits():
    rc, out, _ = double("two-t4")(
        ["nvidia-smi", "--query-gpu=index,memory.total,utilization.gpu", "--format=csv"]
    )
    assert (rc, out.splitlines()) == (
        0,
        [
            "index, memory.total [MiB], utilization.gpu [%]",
            "0, 15360 MiB, 0 %",
            "1, 15360 MiB, 0 %",
        ],
    )


def test_double_lists_gpus_with_their_uuids():
    rc, out, _ = double("two-t4")(["nvidia-smi", "-L"])
    assert rc == 0
    assert out.splitlines()[1] == "GPU 1: Tesla T4 (UUID: GPU-22222222-2f4b-6a77-9c1e-0b7f5a1d2e31)"


def test_double_fails_every_call_with_exit_9_when_the_driver_is_not_loaded():
    rc, out, _ = double("not-loaded")(["nvidia-smi", "-L"])
    assert rc == 9
    assert out.startswith("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA")


@pytest.mark.parametrize(("scenario", "width"), [("old-470", 79), ("t4", 89), ("h100", 91)])
def test_double_banner_has_the_layout_of_its_driver_branch(scenario, width):
    rc, out, _ = double(scenario)(["nvidia-smi"])
    table = out.splitlines()[1:]
    assert rc == 0
    assert {len(line) for line in table} == {width}
    assert "CUDA Version: " in table[1]
