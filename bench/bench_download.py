"""Downloads against curl and against hashing, measured in the same run.

    .venv/bin/python bench/bench_download.py [--size-mb 256] [--capped-mb 100] [--rss-gb 8]

All servers are the stand-in (tests/doubles/model_hub) on loopback; both sides fetch the same
file from the same server. Prints, and exits 1 when a target of issue 4 is missed:
  1. one stream, loopback:        our throughput / curl's          (target >= 0.9)
                                  also against `curl | tee FILE | sha256sum`, the same work
                                  as ours (download and hash in one pass), for context
  2. 20 MB/s cap per connection:  our time with 8 connections vs curl's single stream (>= 3.5x)
  3. re-run with all present:     cost for 8 GB of models / cost for 1 GB (<= 1.1), and
                                  sha256 of the files / the re-run  (far below: >= 100x)
  4. peak RSS of the download process for a large file over 8 connections (< 100 MB):
     the 8 GiB (sparse, served as is) file of step 3, downloaded for real and verified

Every timed run starts from the same state: the previous run's output removed and `sync`
called (curl leaves its file dirty in the page cache, ours fsyncs before the rename), so no
side pays for the other's writeback or clean-up. On a 2-core machine the Python stand-in and
the client share the cores: ratio 1 moves with any other load; read one run as a sample.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "module_utils"), str(ROOT)]

from forge_fleet.http_download import Settings, execute, make_plan, sha256_file  # noqa: E402
from tests.doubles.model_hub import Blob, ModelHub  # noqa: E402

CHILD = """
import sys
sys.path[:0] = [sys.argv[1]]
from forge_fleet.http_download import Settings, execute, make_plan
entry = {"source": "url", "url": sys.argv[2], "kind": "checkpoint", "label": "bench",
         "filename": "big.safetensors", "sha256": sys.argv[4]}
options = Settings(connections=8, segment_bytes=4 * 1024 * 1024, min_split_bytes=1)
result = execute(make_plan([entry], sys.argv[3], options), sys.argv[3], options)
assert not result["errors"], result["errors"]
assert result["files"][0]["size"] == int(sys.argv[5]), result
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]))
"""


def data_file(path: Path, size: int) -> Path:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(block)
    return path


def sha256_rate(size_mb: int) -> float:
    """MiB/s of hashlib's sha256 in this process: no client that verifies while it streams
    (one digest, necessarily sequential) can go faster than this."""
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(size_mb):
        digest.update(block)
    return size_mb / (time.perf_counter() - start)


def clear(path: Path) -> None:
    """Remove what an earlier run left (a file or a Forge folder)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def best(runs: int, action, leftover: Path | None = None) -> float:
    """Best time of ``runs`` runs. ``leftover`` (the earlier run's output) is removed before
    each timed run: freeing a 256 MiB file takes tens of milliseconds, not part of a download,
    and curl's ``-o`` and our rmtree would otherwise pay it differently."""
    times = []
    for _ in range(runs):
        if leftover is not None:
            clear(leftover)
        # curl leaves its file's pages dirty, ours fsyncs before the rename: without a sync
        # here, whichever side runs next pays for writing back the other's bytes.
        os.sync()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(url: str, forge: Path, connections: int) -> None:
    forge.mkdir(exist_ok=True)
    entry = {
        "source": "url",
        "url": url,
        "kind": "checkpoint",
        "label": "bench",
        "filename": "m.safetensors",
    }
    options = Settings(connections=connections, segment_bytes=4 * 1024 * 1024, min_split_bytes=1)
    result = execute(make_plan([entry], str(forge), options), str(forge), options)
    assert not result["errors"], result["errors"]


def curl(url: str, out: Path) -> None:
    subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True)


def curl_hashed(url: str, out: Path) -> None:
    """curl writing the file and sha256sum hashing the same stream: one pass, like ours."""
    subprocess.run(
        f"set -o pipefail; curl -sSf '{url}' | tee '{out}' | sha256sum >/dev/null",
        shell=True,
        executable="/bin/bash",
        check=True,
    )


def present_model(tmp: Path, size: int, name: str) -> tuple[Path, dict, float]:
    """A sparse model of ``size`` recorded in the manifest as a first run leaves it.

    Returns the Forge folder, its catalog entry, and how long sha256 of the file took.
    """
    forge = tmp / f"forge-{name}"
    folder = forge / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    path = folder / "model.safetensors"
    with open(path, "wb") as handle:
        handle.truncate(size)
    start = time.perf_counter()
    digest = sha256_file(str(path))
    hash_s = time.perf_counter() - start
    entry = {
        "source": "url",
        "url": "https://models.invalid/model.safetensors",
        "kind": "checkpoint",
        "label": "bench",
        "sha256": digest,
    }
    first = execute(make_plan([entry], str(forge), Settings()), str(forge), Settings())
    assert [f["action"] for f in first["files"]] == ["verified"], first
    return forge, entry, hash_s


def rerun(forge: Path, entry: dict) -> None:
    plan = make_plan([entry], str(forge), Settings())
    assert plan[0]["action"] == "present"
    execute(plan, str(forge), Settings())


def peak_rss(hub: ModelHub, source: Path, digest: str, size: int, tmp: Path) -> tuple:
    """Peak RSS (MB) of a process that downloads ``source`` over 8 connections, and seconds."""
    hub.state.blobs["b16b16b16b16b16b"] = Blob(source, digest, size)
    started = time.perf_counter()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(ROOT / "module_utils"),
            hub.cdn_url("b16b16b16b16b16b"),
            str(tmp / "forge3"),
            digest,
            str(size),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout.split()[-1]) / 1024, time.perf_counter() - started


def single_stream(url: str, tmp: Path) -> tuple[float, float, float]:
    """Best of 5 for curl, curl | tee | sha256sum and ours, in interleaved rounds so that all
    three see the same machine load."""
    out, forge = tmp / "curl.out", tmp / "forge1"
    curl_times, hashed_times, ours_times = [], [], []
    for _ in range(5):
        curl_times.append(best(1, lambda: curl(url, out), out))
        hashed_times.append(best(1, lambda: curl_hashed(url, out), out))
        ours_times.append(best(1, lambda: ours(url, forge, 1), forge))
    return min(curl_times), min(hashed_times), min(ours_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--capped-mb", type=int, default=100)
    parser.add_argument("--rss-gb", type=int, default=8, help="file size for step 4")
    args = parser.parse_args()
    missed = []
    with tempfile.TemporaryDirectory() as name, ModelHub() as hub:
        tmp = Path(name)
        blob = hub.add_blob(data_file(tmp / "big.bin", args.size_mb << 20))
        url = hub.cdn_url(blob)
        curl(url, tmp / "warm")  # page cache warm for both sides
        curl_s, hashed_s, ours_s = single_stream(url, tmp)
        ratio1 = curl_s / ours_s
        ceiling = max(sha256_rate(args.size_mb) for _ in range(3)) / (args.size_mb / curl_s)
        print(
            f"1. loopback, one stream, {args.size_mb} MiB, best of 5 each: "
            f"curl {args.size_mb / curl_s:.0f} MiB/s, "
            f"ours {args.size_mb / ours_s:.0f} MiB/s -> ratio {ratio1:.2f} (target >= 0.9); "
            f"curl | tee | sha256sum {args.size_mb / hashed_s:.0f} MiB/s -> ours "
            f"{hashed_s / ours_s:.2f}x that; sha256 alone runs at {ceiling:.2f}x curl's speed "
            "here (the ceiling for any client that verifies while it streams)"
        )
        if ratio1 < 0.9:
            missed.append("single-stream throughput below 0.9x curl")

        capped = hub.add_blob(data_file(tmp / "capped.bin", args.capped_mb << 20))
        capped_url = hub.cdn_url(capped)
        hub.state.bytes_per_second = 20 * 1000 * 1000
        curl_capped = best(1, lambda: curl(capped_url, tmp / "curl2.out"), tmp / "curl2.out")
        ours_capped = best(1, lambda: ours(capped_url, tmp / "forge2", 8), tmp / "forge2")
        hub.state.bytes_per_second = None
        ratio2 = curl_capped / ours_capped
        print(
            f"2. 20 MB/s per connection, {args.capped_mb} MiB: curl {curl_capped:.1f} s, "
            f"ours (8 connections) {ours_capped:.1f} s -> {ratio2:.1f}x (target >= 3.5x)"
        )
        if ratio2 < 3.5:
            missed.append("capped multi-connection speed-up below 3.5x")

        small, small_entry, _ = present_model(tmp, 1 << 30, "small")
        big, big_entry, big_hash = present_model(tmp, args.rss_gb << 30, "big")
        small_times, big_times = [], []
        for _ in range(200):  # interleaved, so both sizes see the same machine
            small_times.append(best(1, lambda: rerun(small, small_entry)))
            big_times.append(best(1, lambda: rerun(big, big_entry)))
        small_s, big_s = sorted(small_times)[100], sorted(big_times)[100]
        ratio3 = big_s / small_s
        print(
            f"3. re-run, all present (median of 200): 1 GiB {small_s * 1000:.2f} ms, "
            f"{args.rss_gb} GiB {big_s * 1000:.2f} ms "
            f"-> ratio {ratio3:.2f} (target <= 1.1); sha256 of the {args.rss_gb} GiB file "
            f"{big_hash:.1f} s = {big_hash / big_s:,.0f}x the re-run"
        )
        if ratio3 > 1.1:
            missed.append("re-run cost grows with model bytes")
        if big_hash / big_s < 100:
            missed.append("re-run not far below hashing")

        big_file = big / "models" / "Stable-diffusion" / "model.safetensors"
        shutil.rmtree(small)  # room on the disk for the real copy the download writes
        peak_mb, took = peak_rss(hub, big_file, big_entry["sha256"], args.rss_gb << 30, tmp)
        print(
            f"4. peak RSS downloading and verifying {args.rss_gb} GiB over 8 connections: "
            f"{peak_mb:.1f} MB (target < 100 MB; {took:.0f} s, "
            f"{(args.rss_gb << 10) / took:.0f} MiB/s)"
        )
        if peak_mb >= 100:
            missed.append("peak RSS 100 MB or more")
    for miss in missed:
        print(f"MISSED: {miss}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
