#!/usr/bin/python
"""Ansible module: read the GPUs, driver and CUDA from nvidia-smi and judge the host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Report NVIDIA GPUs, driver and CUDA and whether the host can run Forge
description:
  - Runs C(nvidia-smi) on the target (query CSV, then C(-q) for the CUDA version) with a
    timeout. A missing C(nvidia-smi), a driver that is not loaded or a failing
    C(nvidia-smi) are reported as a verdict with advice, never as a module crash.
  - Judges the host - the driver against the torch CUDA build, GPU memory against the model
    families, free disk against a minimum - and returns C(verdict) ok, warn or fail with every
    problem spelled out. It never fails itself, so a fleet-wide table can show every host.
  - Read-only; behaves the same in check mode.
options:
  host:
    description: How messages name the host (pass C(inventory_hostname)).
    type: str
    default: this host
  torch_cuda:
    description: The torch CUDA build Forge will install (Forge's default is C(cu121)).
    type: str
    default: cu121
  model_families:
    description: Families of the models the host will serve (sd1, sdxl, flux_dev, ...).
    type: list
    elements: str
    default: []
  model_bundles:
    description: Catalog bundles (models_bundles); the families of their models are checked too.
    type: list
    elements: str
    default: []
  model_catalog:
    description:
      - Catalog entries (models_catalog), a list of mappings; each C(base_model) is checked
        too. Anything else fails with a message that shows what a catalog looks like.
      - Values of entries' C(headers) are masked like C(no_log) options, in the invocation
        logged to the host's journal and in the result.
    type: raw
    default: []
  vram_gib:
    description: Overrides of the GiB of GPU memory each family needs.
    type: dict
    default: {}
  vram_shortfall:
    description: Whether too little GPU memory fails the host or only warns.
    type: str
    choices: [fail, warn]
    default: fail
  disk_path:
    description: >-
      Where Forge lives (need not exist yet): its file system is measured (as
      M(path_free_space) does, returned as RV(disk)) and judged against O(min_free_disk_gb),
      in this same run.
    type: path
  free_disk_bytes:
    description: >-
      Free bytes where Forge lives, measured elsewhere; omitted with O(disk_path) skips the
      check. Mutually exclusive with O(disk_path).
    type: int
  min_free_disk_gb:
    description: GiB that must be free where Forge lives.
    type: float
    default: 50
  timeout:
    description: Seconds each nvidia-smi call may take.
    type: int
    default: 30
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Check GPU, driver and CUDA
  gpu_facts:
    host: "{{ inventory_hostname }}"
    model_families: [sdxl]
    model_bundles: [flux1_dev_fp8]
    disk_path: /home/azureuser/stable-diffusion-webui-forge
  register: gpu

- name: Stop a host that cannot run Forge
  ansible.builtin.assert:
    that: gpu.verdict != 'fail'
    fail_msg: "{{ gpu.problems | join(' ') }}"
"""

RETURN = r"""
gpu:
  description: >-
    count, name (of GPU 0), names, memory_mib (largest GPU), compute_capability (of GPU 0;
    null for drivers before 510), driver_version, cuda_version (what the driver supports),
    gpus (one entry per GPU) and problem (null, no_nvidia_smi, driver_not_loaded,
    nvidia_smi_failed, no_gpu).
  type: dict
  returned: always
  contains:
    gpus:
      description: index, name, uuid, memory_mib and compute_capability of each GPU.
      type: list
      elements: dict
  sample:
    count: 1
    name: NVIDIA A100 80GB PCIe
    names: [NVIDIA A100 80GB PCIe]
    memory_mib: 81920
    compute_capability: "8.0"
    driver_version: 535.183.01
    cuda_version: "12.2"
    gpus:
      - {index: 0, name: NVIDIA A100 80GB PCIe, uuid: GPU-8a1d0b52-93c4-4f0e-b8a7-1c2d3e4f5a60,
         memory_mib: 81920, compute_capability: "8.0"}
    problem: null
disk:
  description: >-
    With O(disk_path): path, measured_path (the closest existing ancestor), free_bytes and
    total_bytes, as M(path_free_space) returns them.
  type: dict
  returned: when disk_path is given
verdict:
  description: ok, warn or fail.
  type: str
  returned: always
problems:
  description: What fails the host, each with what to do.
  type: list
  elements: str
  returned: always
notices:
  description: >-
    What the operator should know but does not fail the host (not named C(warnings), which
    Ansible reserves).
  type: list
  elements: str
  returned: always
model_families:
  description: The families checked against GPU memory (direct, from bundles and catalog).
  type: list
  elements: str
  returned: always
torch_cuda_supported:
  description: The newest torch CUDA build the driver can run (null without a working driver).
  type: str
  returned: always
"""

import subprocess

from ansible.module_utils.forge_fleet.catalog import check_shape
from ansible.module_utils.forge_fleet.catalog_module import CatalogModule
from ansible.module_utils.forge_fleet.disk_space import free_space
from ansible.module_utils.forge_fleet.nvidia_gpu import (
    families_in_catalog,
    probe,
    summary,
    verdict,
)


def main() -> None:
    # CatalogModule: the catalog's header values (a mirror's token) are masked from the
    # moment the options are read, in the invocation logged to the VM's journal too.
    module = CatalogModule(
        argument_spec={
            "host": {"type": "str", "default": "this host"},
            "torch_cuda": {"type": "str", "default": "cu121"},
            "model_families": {"type": "list", "elements": "str", "default": []},
            "model_bundles": {"type": "list", "elements": "str", "default": []},
            # raw: a catalog that is not a list is refused with what it must look like
            "model_catalog": {"type": "raw", "default": []},
            "vram_gib": {"type": "dict", "default": {}},
            "vram_shortfall": {"type": "str", "choices": ["fail", "warn"], "default": "fail"},
            "disk_path": {"type": "path"},
            "free_disk_bytes": {"type": "int"},
            "min_free_disk_gb": {"type": "float", "default": 50},
            "timeout": {"type": "int", "default": 30},
        },
        mutually_exclusive=[("disk_path", "free_disk_bytes")],
        supports_check_mode=True,
    )
    params = module.params
    shape = check_shape(params["model_catalog"])
    if shape:
        module.fail_json(msg=f"Cannot check the GPU memory for the catalog: {shape[0]}")
    disk = None
    if params["disk_path"]:
        try:
            disk = free_space(params["disk_path"])
        except OSError as error:
            module.fail_json(msg=f"Cannot measure free space for {params['disk_path']}: {error}")
    binary = module.get_bin_path("nvidia-smi")

    def run(argv):
        if binary is None:
            return None
        try:
            done = subprocess.run(
                [binary, *argv[1:]],
                capture_output=True,
                text=True,
                timeout=params["timeout"],
                check=False,
            )
        except subprocess.TimeoutExpired:
            return (124, "", f"nvidia-smi did not answer within {params['timeout']}s")
        return (done.returncode, done.stdout, done.stderr)

    found = probe(run)
    families = families_in_catalog(
        params["model_families"], params["model_bundles"], params["model_catalog"]
    )
    judged = verdict(
        params["host"],
        found,
        torch_cuda=params["torch_cuda"],
        families=families,
        free_disk_bytes=disk["free_bytes"] if disk else params["free_disk_bytes"],
        min_free_disk_gb=params["min_free_disk_gb"],
        vram_shortfall=params["vram_shortfall"],
        vram_table=params["vram_gib"],
    )
    judged["notices"] = judged.pop("warnings")
    if disk:
        judged["disk"] = disk
    module.exit_json(changed=False, gpu=summary(found), model_families=families, **judged)


if __name__ == "__main__":
    main()
