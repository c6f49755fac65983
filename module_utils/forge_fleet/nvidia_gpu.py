"""GPU, driver and CUDA preflight: read nvidia-smi, decide whether the host can run Forge.

``probe(run)`` asks nvidia-smi (through ``run(argv) -> (rc, stdout, stderr)``, or None when
the binary is missing) and returns what it found; ``verdict(...)`` turns that plus the model
families and disk space into ok / warn / fail with messages that say what to do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .catalog import BUNDLES

if TYPE_CHECKING:  # annotations only: the VMs may run Python 3.8
    from collections.abc import Callable

    Runner = Callable[[list[str]], tuple[int, str, str] | None]

QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap")
NOT_LOADED_RC = 9
NO_DEVICES_RC = 6  # "No devices were found": a driver, but no GPU it can see
# nvidia-smi's exit codes as its manual page documents them ("RETURN VALUE"), with advice.
NVIDIA_SMI_EXIT_ADVICE = {
    3: "the operation is not available on this GPU",
    4: "insufficient permissions: run nvidia-smi as the Ansible user to see why",
    8: "the GPU's external power cables are not attached: a hardware fault, redeploy the VM",
    10: "the NVIDIA kernel module detected an interrupt issue with the GPU: redeploy the VM",
    12: "the NVML library was not found: reinstall the driver (its libnvidia-ml)",
    14: "the GPU's infoROM is corrupted: a hardware fault, redeploy the VM",
    15: "the GPU has fallen off the bus: a hardware or host fault, redeploy or restart the VM",
}
AZURE_GPU_SIZES = (
    "an NC-series size (NCasT4_v3 with T4, NC A100 v4, NCads H100 v5) or an ND-series size"
)

# Minimum Linux driver for the CUDA runtime a torch wheel bundles. torch wheels carry their
# own CUDA runtime, so CUDA minor-version compatibility applies within a major (NVIDIA's CUDA
# Toolkit release notes, "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor
# Version Compatibility": 11.x >= 450.80.02, 12.x >= 525.60.13). The toolkit's own driver
# (full compatibility) is higher: cu118 520.61.05, cu121 530.30.02, cu124 550.54.14,
# cu126 560.28.03, cu128 570.26. cu128 is held to its toolkit driver: its wheels are the
# Blackwell builds and PyTorch documents them for driver >= 570.
TORCH_CUDA_MIN_DRIVER = {
    "cu118": "450.80.02",
    "cu121": "525.60.13",
    "cu124": "525.60.13",
    "cu126": "525.60.13",
    "cu128": "570.26",
}
# GPU memory (GiB) the models of each family need in Forge; a documented default table.
VRAM_GIB_BY_FAMILY = {
    "sd1": 4,
    "sd2": 4,
    "sdxl": 8,
    "sdxl_refiner": 8,
    "sd3": 10,
    "flux_dev": 12,
    "flux_schnell": 12,
}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def parse_query_csv(text: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of ``--query-gpu=... --format=csv,noheader,nounits`` as dicts."""
    gpus = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(fields):
            continue
        # "[N/A]", "[Not Supported]": what nvidia-smi prints for a value the GPU lacks.
        row: dict[str, Any] = {
            field: None if cells[i].startswith("[") else cells[i] for i, field in enumerate(fields)
        }
        for key in ("index", "memory.total"):
            if (row.get(key) or "").isdigit():
                row[key] = int(row[key])
        gpus.append(row)
    return gpus


def parse_cuda_version(text: str) -> str | None:
    """The CUDA version the driver supports, from ``nvidia-smi`` or ``nvidia-smi -q``."""
    match = re.search(r"CUDA Version\s*:?\s*([0-9]+\.[0-9]+)", text)
    return match.group(1) if match else None


def probe(run: Runner) -> dict[str, Any]:
    """What nvidia-smi says: gpus, driver_version, cuda_version, or a problem code."""
    result: dict[str, Any] = {
        "problem": None,
        "detail": "",
        "gpus": [],
        "driver_version": None,
        "cuda_version": None,
    }
    fields = QUERY_FIELDS
    answer = run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
    if answer is None:
        result["problem"] = "no_nvidia_smi"
        return result
    rc, out, err = answer
    if rc != 0 and "compute_cap" in out + err:
        # Drivers before 510 do not know the compute_cap field.
        fields = tuple(f for f in fields if f != "compute_cap")
        rc, out, err = run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
        ) or (127, "", "")
    if rc != 0:
        message = (out + err).strip()
        result["problem"] = classify_failure(rc, message)
        result["detail"] = message.splitlines()[0] if message else f"exit code {rc}"
        result["exit_code"] = rc
        return result
    result["gpus"] = parse_query_csv(out, fields)
    if not result["gpus"]:
        result["problem"] = "no_gpu"
        return result
    result["driver_version"] = result["gpus"][0].get("driver_version")
    # The query interface has no CUDA field: read it from -q, else from the banner table.
    for argv in (["nvidia-smi", "-q"], ["nvidia-smi"]):
        answer = run(argv)
        if answer is not None and answer[0] == 0:
            result["cuda_version"] = parse_cuda_version(answer[1])
            if result["cuda_version"]:
                break
    return result


def classify_failure(rc: int, message: str) -> str:
    """The problem code for a failed nvidia-smi call."""
    if rc == NOT_LOADED_RC or "couldn't communicate with the NVIDIA driver" in message:
        return "driver_not_loaded"
    if rc == NO_DEVICES_RC and "No devices were found" in message:
        return "no_gpu"
    return "nvidia_smi_failed"


def families_in_catalog(
    families: list[str], bundles: list[str] | None = None, catalog: list[Any] | None = None
) -> list[str]:
    """Model families named directly, by the catalog's bundles and by its entries' base_model."""
    found = list(families)
    for bundle in bundles or []:
        found += [e["base_model"] for e in BUNDLES.get(bundle, []) if e.get("base_model")]
    for entry in catalog or []:
        if isinstance(entry, dict) and entry.get("base_model"):
            found.append(entry["base_model"])
    return sorted(set(found))


def newest_torch_cuda(driver_version: str) -> str | None:
    """The newest torch CUDA build this driver can run."""
    usable = [
        build
        for build, minimum in TORCH_CUDA_MIN_DRIVER.items()
        if version_tuple(driver_version) >= version_tuple(minimum)
    ]
    return max(usable, key=lambda b: int(b[2:])) if usable else None


def verdict(
    host: str,
    found: dict[str, Any],
    *,
    torch_cuda: str,
    families: list[str],
    free_disk_bytes: int | None,
    min_free_disk_gb: float,
    vram_shortfall: str = "fail",
    vram_table: dict[str, float] | None = None,
) -> dict[str, Any]:
    """ok / warn / fail for one host, with every problem and warning spelled out."""
    vram_table = {**VRAM_GIB_BY_FAMILY, **(vram_table or {})}
    problems: list[str] = []
    warnings: list[str] = []
    problem = found.get("problem")
    if problem == "no_nvidia_smi":
        problems.append(
            f"GPU check failed on {host}: nvidia-smi not found. Either the NVIDIA driver is not "
            f"installed or this VM size has no NVIDIA GPU; on Azure choose {AZURE_GPU_SIZES} "
            "(Azure ML GPU images ship the driver)."
        )
    elif problem == "driver_not_loaded":
        problems.append(
            f"GPU check failed on {host}: the NVIDIA driver is installed but not loaded "
            f"({found['detail']}). Check `lsmod | grep nvidia` and `dmesg | grep -i nvidia`; after "
            "a kernel update reboot or reinstall the driver for the running kernel "
            "(DKMS); Secure Boot may block an unsigned module."
        )
    elif problem == "nvidia_smi_failed":
        advice = NVIDIA_SMI_EXIT_ADVICE.get(found.get("exit_code") or 0)
        problems.append(
            f"GPU check failed on {host}: nvidia-smi failed: {found['detail']}"
            + (f" (exit code {found['exit_code']}: {advice})." if advice else "")
        )
    elif problem == "no_gpu":
        problems.append(
            f"GPU check failed on {host}: nvidia-smi lists no GPU; "
            f"on Azure choose {AZURE_GPU_SIZES}."
        )
    supported = None
    gpus = found.get("gpus") or []
    if gpus:
        driver = str(found.get("driver_version") or "")
        supported = newest_torch_cuda(driver)
        minimum = TORCH_CUDA_MIN_DRIVER.get(torch_cuda)
        if minimum is None:
            problems.append(
                f"Unknown torch CUDA build {torch_cuda!r}; choose one of "
                + ", ".join(TORCH_CUDA_MIN_DRIVER)
            )
        elif version_tuple(driver) < version_tuple(minimum):
            advice = (
                f"set preflight_torch_cuda: {supported} (and Forge's TORCH_COMMAND to match)"
                if supported
                else "no supported torch build runs on it"
            )
            problems.append(
                f"Driver {driver} on {host} is too old for torch built for CUDA "
                f"{torch_cuda[2:-1]}.{torch_cuda[-1]} ({torch_cuda}): it needs driver >= "
                f"{minimum}. Upgrade the driver (Azure ML images: recreate the compute instance "
                f"on a current image), or {advice}."
            )
        needed = max((vram_table.get(f, 0) for f in families), default=0)
        have_mib = max(int(g.get("memory.total") or 0) for g in gpus)
        if needed and have_mib < needed * 1024 * 0.93:  # a "16 GB" T4 reports 15360 MiB
            hungry = sorted(f for f in families if vram_table.get(f, 0) == needed)
            message = (
                f"{gpus[0]['name']} on {host} has {have_mib} MiB of GPU memory; the catalog's "
                f"{', '.join(hungry)} models need about {needed} GiB. Choose a larger GPU size "
                "or lighter models (fp8/nf4 variants)."
            )
            (problems if vram_shortfall == "fail" else warnings).append(message)
    if free_disk_bytes is not None and free_disk_bytes < min_free_disk_gb * 1024**3:
        problems.append(
            f"Only {free_disk_bytes / 1024**3:.1f} GiB free on {host} where Forge and its models "
            f"live; at least {min_free_disk_gb:g} GiB is needed. Free space or enlarge the disk."
        )
    return {
        "verdict": "fail" if problems else ("warn" if warnings else "ok"),
        "problems": problems,
        "warnings": warnings,
        "torch_cuda_supported": supported,
    }


def summary(found: dict[str, Any]) -> dict[str, Any]:
    """The GPU facts later roles use."""
    gpus = found.get("gpus") or []
    return {
        "count": len(gpus),
        "name": gpus[0]["name"] if gpus else None,
        "names": [g["name"] for g in gpus],
        "gpus": [
            {
                "index": g.get("index"),
                "name": g["name"],
                "uuid": g.get("uuid"),
                "memory_mib": int(g.get("memory.total") or 0),
                "compute_capability": g.get("compute_cap"),
            }
            for g in gpus
        ],
        "memory_mib": max((int(g.get("memory.total") or 0) for g in gpus), default=0),
        "compute_capability": gpus[0].get("compute_cap") if gpus else None,
        "driver_version": found.get("driver_version"),
        "cuda_version": found.get("cuda_version"),
        "problem": found.get("problem"),
    }
