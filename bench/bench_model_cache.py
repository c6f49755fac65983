"""The fleet model cache against fetching from the origin, measured in the same run.

    FORGE_LAB_PREFIX=... .venv/bin/python bench/bench_model_cache.py [--vms 3] [--cap-mb 8]
                                                                     [--pad-mb 32]

Lab VMs (the lab image), real AzCopy in them, real Azurite on the lab network as the cache,
the model hub stand-in as the origin ("the internet"), its CDN capped at --cap-mb MB/s per
connection. The catalog: a checkpoint padded to about --pad-mb MiB and a LoRA. For n = 1..N
VMs, each side starts from VMs without models and an empty cache and runs
playbooks/models.yml on the first n VMs:

  without the cache: every VM downloads from the origin;
  with the cache:    the first VM downloads and fills the cache, the others pull from it.

Prints, per n, the bytes the origin served (counted by the stand-in) for each side as a
multiple of the catalog's size (goal: 1x with the cache, nx without), and the wall time of
the play for n = N on each side. AzCopy is installed on every VM by a warm-up run before any
measurement, so neither side pays for it. Exits 1 when the cache side's origin bytes are not
exactly 1x the catalog for every n.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tests.fixtures import models as m  # noqa: E402
from tests.harness.lab import free_port_block, lab_vms  # noqa: E402
from tests.harness.model_cache import cache_services  # noqa: E402
from tests.harness.playbook import run_playbook  # noqa: E402

TOKEN = "hf_bench_token"
KEY = "civitai_bench_key"
FORGE = "/home/azureuser/stable-diffusion-webui-forge"
CATALOG = [
    {
        "source": "huggingface",
        "repo": "bench/padded-sd15",
        "file": "padded-sd15.safetensors",
        "kind": "checkpoint",
        "base_model": "sd1",
    },
    {"source": "civitai", "version_id": 1001},
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--cap-mb", type=float, default=8.0, help="origin MB/s per connection")
    parser.add_argument("--pad-mb", type=int, default=32, help="extra MiB in the checkpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        return run(Path(tmp), args)


def run(tmp: Path, args: argparse.Namespace) -> int:
    tensors = dict(m.tiny_checkpoint("sd1"))
    tensors["model.diffusion_model.bench_padding.weight"] = ([args.pad_mb, 512, 1024], "F16")
    checkpoint = m.write_with_data(tmp / "padded.safetensors", tensors)
    lora = m.write_with_data(tmp / "lora.safetensors", m.kohya_lora("sd1"), seed=2)
    catalog_bytes = checkpoint.stat().st_size + lora.stat().st_size
    with (
        lab_vms("bench-cache", args.vms, free_port_block(args.vms)) as lab,
        cache_services(lab.lab.gateway, tmp) as services,
    ):
        hub, azurite = services.hub, services.azurite
        hub.state.tokens.add(TOKEN)
        hub.state.civitai_keys.add(KEY)
        hub.add_hf_file("bench/padded-sd15", "padded-sd15.safetensors", checkpoint)
        hub.add_civitai_version(1001, 100, lora, name="lora.safetensors", base_model="SD 1.5")
        container = azurite.service().create_container("models")
        days = datetime.timedelta(days=1)
        base = {
            "models_catalog": CATALOG,
            "models_huggingface_endpoint": hub.api_url,
            "models_civitai_endpoint": hub.api_url,
            "models_huggingface_token": TOKEN,
            "models_civitai_api_key": KEY,
            "models_poll_interval": 1,
            "models_cache_azcopy_url": services.azcopy_url,
            "models_cache_azcopy_sha256": services.azcopy_sha256,
        }
        cache = {
            "models_cache_sas_url": azurite.sas_url("models", "rl", days),
            "models_cache_stager_sas_url": azurite.sas_url("models", "rwl", days),
        }

        def fresh() -> None:
            for host in lab.hosts:
                lab.exec(host, "rm", "-rf", f"{FORGE}/models")
            for blob in container.list_blobs():
                container.delete_blob(blob.name)
            hub.state.log.clear()

        def play(n: int, with_cache: bool) -> tuple[int, float]:
            fresh()
            began = time.monotonic()
            result = run_playbook(
                "playbooks/models.yml",
                lab.inventory,
                extravars={**base, **(cache if with_cache else {})},
                limit=",".join(lab.hosts[:n]),
            )
            took = time.monotonic() - began
            if not result.ok:
                raise SystemExit(result.explain())
            return sum(hub.bytes_served().values()), took

        play(args.vms, True)  # warm-up: AzCopy installed everywhere, SSH connections up
        hub.state.bytes_per_second = int(args.cap_mb * 1_000_000)
        rows = []
        for n in range(1, args.vms + 1):
            origin, origin_s = play(n, False)
            cached, cached_s = play(n, True)
            rows.append((n, origin, origin_s, cached, cached_s))
    return report(rows, catalog_bytes, args)


def report(rows, catalog_bytes: int, args: argparse.Namespace) -> int:
    mib = 1024 * 1024
    print(
        f"catalog: 2 files, {catalog_bytes / mib:.1f} MiB; origin capped at {args.cap_mb:g} MB/s "
        f"per connection; {os.cpu_count()} cores; one run per cell"
    )
    missed = []
    for n, origin, origin_s, cached, cached_s in rows:
        print(
            f"{n} VM(s): origin bytes without cache {origin / mib:.1f} MiB "
            f"({origin / catalog_bytes:.2f}x catalog), with cache {cached / mib:.1f} MiB "
            f"({cached / catalog_bytes:.2f}x catalog) -> {origin / max(cached, 1):.2f}x less; "
            f"wall {origin_s:.1f} s vs {cached_s:.1f} s"
        )
        if cached != catalog_bytes:
            missed.append(f"{n} VM(s): the origin served {cached / catalog_bytes:.2f}x, not 1x")
    n, _, origin_s, _, cached_s = rows[-1]
    print(
        f"wall time of playbooks/models.yml for {n} VMs: without cache {origin_s:.1f} s, "
        f"with cache {cached_s:.1f} s -> ratio {origin_s / cached_s:.2f}"
    )
    for line in missed:
        print("MISSED:", line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
