"""The fleet model cache on three lab VMs: real AzCopy in the VMs (installed from a tarball
of the npm binary served over the lab's HTTPS), real Azurite on the lab network as the cache
container, the Hugging Face / CivitAI stand-in as the origin counting the bytes it serves per
file. One lab, one module: the models stage only (playbooks/models.yml)."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures import models as m
from tests.fixtures.catalog import SD15_CATALOG
from tests.harness.lab import free_port_block, lab_vms
from tests.harness.model_cache import cache_services
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

TOKEN = "hf_cache_token_never_printed_1b6453892473a467"
KEY = "civitai_cache_key_never_printed_d3d9446802a44259"
FORGE = "/home/azureuser/stable-diffusion-webui-forge"
CHECKPOINT = f"{FORGE}/models/Stable-diffusion/tiny-sd15.safetensors"
LORA = f"{FORGE}/models/Lora/detail-tweaker.safetensors"
CONTAINER = "models"
DAYS = datetime.timedelta(days=30)
CATALOG = SD15_CATALOG


@pytest.fixture(scope="module")
def lab():
    """Three VMs for the whole module (the first one is the cache's stager)."""
    with lab_vms("t-model-cache", 3, free_port_block(3)) as handle:
        yield handle


@pytest.fixture(scope="module")
def net(lab, tmp_path_factory):
    """The origin (model hub stand-in), the cache (Azurite) and the AzCopy download site."""
    files = tmp_path_factory.mktemp("cache")
    with cache_services(lab.lab.gateway, files) as services:
        hub, azurite = services.hub, services.azurite
        hub.state.tokens.add(TOKEN)
        hub.state.granted.add(TOKEN)
        hub.state.civitai_keys.add(KEY)
        checkpoint = m.write_with_data(files / "sd15.safetensors", m.tiny_checkpoint("sd1"))
        lora = m.write_with_data(files / "detail.safetensors", m.kohya_lora("sd1"), seed=2)
        hub.add_hf_file("runwayml/tiny-sd15", "tiny-sd15.safetensors", checkpoint)
        hub.add_civitai_version(
            1001, 100, lora, name="detail-tweaker.safetensors", base_model="SD 1.5"
        )
        azurite.service().create_container(CONTAINER)
        yield {
            "hub": hub,
            "azurite": azurite,
            "read_sas": azurite.sas_url(CONTAINER, "rl", DAYS),
            "write_sas": azurite.sas_url(CONTAINER, "rwl", DAYS),
            "azcopy": {"url": services.azcopy_url, "sha256": services.azcopy_sha256},
            "files": {
                CHECKPOINT: (sha_of(checkpoint), checkpoint.stat().st_size),
                LORA: (sha_of(lora), lora.stat().st_size),
            },
        }


def sha_of(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def cache_run(lab, net, stager=True, **options):
    extravars = {
        "models_catalog": CATALOG,
        "models_huggingface_endpoint": net["hub"].api_url,
        "models_civitai_endpoint": net["hub"].api_url,
        "models_huggingface_token": TOKEN,
        "models_civitai_api_key": KEY,
        "models_poll_interval": 1,
        "models_cache_sas_url": net["read_sas"],
        "models_cache_stager_sas_url": net["write_sas"] if stager else "",
        "models_cache_azcopy_url": net["azcopy"]["url"],
        "models_cache_azcopy_sha256": net["azcopy"]["sha256"],
    }
    return run_playbook("playbooks/models.yml", lab.inventory, extravars=extravars, **options)


def said(result) -> str:
    """The run's output with the YAML callback's line wrapping and quote doubling undone."""
    return " ".join(result.stdout.split()).replace("''", "'")


def signature(sas_url: str) -> str:
    return parse_qs(urlsplit(sas_url).query)["sig"][0]


def cache_objects(net) -> dict[str, bytes]:
    client = net["azurite"].service().get_container_client(CONTAINER)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def served(net) -> dict[str, int]:
    return net["hub"].bytes_served()


@pytest.fixture(scope="module")
def dry_run(lab, net):
    """--check on the fresh VMs: nothing installed, nothing fetched, nothing in the cache."""
    return cache_run(lab, net, check=True)


@pytest.fixture(scope="module")
def converged(lab, net, dry_run):
    net["hub"].state.log.clear()
    result = cache_run(lab, net, verbosity=3)
    assert result.ok, result.explain()
    return result


def test_check_on_a_fresh_fleet_reports_the_work_and_changes_nothing(lab, net, dry_run):
    assert dry_run.ok, dry_run.explain()
    stager = lab.hosts[0]
    assert any("cannot list the cache" in t or "fill" in t for t in dry_run.changed_tasks(stager))
    for host in lab.hosts:
        assert "Plan the downloads and check disk space and base models" in " ".join(
            dry_run.changed_tasks(host)
        )
        assert lab.exec(host, "sh", "-c", f"ls {CHECKPOINT} 2>&1 || true").startswith("ls:")
    assert served(net) == {}
    assert cache_objects(net) == {}


def test_three_vms_pull_the_catalog_while_the_origin_serves_each_file_once(lab, net, converged):
    expected = dict(net["files"].values())
    assert served(net) == expected  # sha256 -> bytes: every file exactly once, nothing else
    for host in lab.hosts:
        for path, (sha, _) in net["files"].items():
            assert lab.exec(host, "sha256sum", path).split()[0] == sha
            assert lab.exec(host, "stat", "-c", "%U", path).strip() == "azureuser"
    # the cache holds each file under its sha256, with the origin's bytes
    objects = cache_objects(net)
    assert {name: hashlib.sha256(data).hexdigest() for name, data in objects.items()} == {
        sha: sha for sha in expected
    }


def test_each_host_says_where_it_got_each_file(lab, converged):
    out = said(converged)
    assert (
        f"{lab.hosts[0]}: tiny-sd15.safetensors from the origin (not in the cache), "
        "detail-tweaker.safetensors from the origin (not in the cache)" in out
    )
    for host in lab.hosts[1:]:
        assert (
            f"{host}: tiny-sd15.safetensors from the cache, "
            "detail-tweaker.safetensors from the cache; 0.00 Bytes from the origin" in out
        )


def test_no_sas_signature_in_the_output_or_on_the_vms(lab, net, converged):
    for sas in (net["read_sas"], net["write_sas"]):
        sig = signature(sas)
        assert sig not in converged.stdout
        for host in lab.hosts:
            found = lab.exec(
                host, "sh", "-c",
                f"grep -rlF -- '{sig}' /home/azureuser /var/tmp /tmp /var/log 2>/dev/null || true",
            )  # fmt: skip
            assert found.strip() == "", (host, found)


def test_rerun_changes_nothing_and_fetches_nothing(lab, net, converged):
    net["hub"].state.log.clear()
    before = cache_objects(net)
    again = cache_run(lab, net)
    assert again.ok, again.explain()
    for host in lab.hosts:
        assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
    assert served(net) == {}
    assert cache_objects(net) == before


def test_a_corrupted_cache_object_is_detected_replaced_and_reported(lab, net, converged):
    sha, size = net["files"][CHECKPOINT]
    client = net["azurite"].service().get_container_client(CONTAINER)
    client.upload_blob(sha, os.urandom(size), overwrite=True)  # same size, other bytes
    host = lab.hosts[1]
    lab.exec(host, "rm", "-f", CHECKPOINT)
    net["hub"].state.log.clear()
    result = cache_run(lab, net)
    assert result.ok, result.explain()
    # the host detected it, took the file from the origin once, and has the right bytes
    assert lab.exec(host, "sha256sum", CHECKPOINT).split()[0] == sha
    assert served(net) == {sha: size}
    out = said(result)
    assert (
        f"{host}: tiny-sd15.safetensors from the origin (cache object {sha[:12]} is damaged" in out
    )
    assert f"Fleet model cache: object {sha}" in out
    assert "gave wrong bytes (sha256 " in out and f"on {host}, which fetched" in out
    assert f"replaced from {lab.hosts[0]}'s verified copy" in out
    # the object holds the origin's bytes again
    assert hashlib.sha256(cache_objects(net)[sha]).hexdigest() == sha


def test_a_cache_miss_falls_back_to_the_origin_and_says_so(lab, net, converged):
    sha, size = net["files"][LORA]
    net["azurite"].service().get_container_client(CONTAINER).delete_blob(sha)
    host = lab.hosts[2]
    lab.exec(host, "rm", "-f", LORA)
    net["hub"].state.log.clear()
    # no stager SAS in this run: the hosts only read the cache, nobody refills it
    result = cache_run(lab, net, stager=False)
    assert result.ok, result.explain()
    assert lab.exec(host, "sha256sum", LORA).split()[0] == sha
    assert served(net) == {sha: size}
    assert f"{host}: detail-tweaker.safetensors from the origin (not in the cache)" in said(result)
    assert sha not in cache_objects(net)
    # the next run with the stager puts it back, and the fleet fetches nothing
    net["hub"].state.log.clear()
    refill = cache_run(lab, net)
    assert refill.ok, refill.explain()
    assert hashlib.sha256(cache_objects(net)[sha]).hexdigest() == sha
    assert served(net) == {}


def test_the_vms_read_only_sas_cannot_write_to_the_cache(lab, net, converged):
    sha, _ = net["files"][CHECKPOINT]
    before = cache_objects(net)
    base, token = net["read_sas"].split("?", 1)
    azcopy = "/opt/azcopy/10.32.2/azcopy"
    host = lab.hosts[1]
    for target in (f"{base}/{sha}?{token}", f"{base}/planted.safetensors?{token}"):
        out = lab.exec(
            host, "su", "-", "azureuser", "-c",
            f"head -c 4096 /dev/urandom > /tmp/x; {azcopy} copy /tmp/x '{target}' "
            "--from-to=LocalBlob --overwrite=true --output-level=essential; echo rc=$?; "
            "grep -ho AuthorizationPermissionMismatch ~/.azcopy/*.log | sort -u",
        )  # fmt: skip
        lines = out.strip().splitlines()
        assert "rc=1" in lines, out
        assert lines[-1] == "AuthorizationPermissionMismatch", out  # from AzCopy's own log
    assert cache_objects(net) == before


def test_the_report_says_where_each_host_got_each_model_and_the_internet_bytes(
    lab, net, converged, tmp_path
):
    result = run_playbook(
        "playbooks/report.yml", lab.inventory, extravars={"report_dir": str(tmp_path)}
    )
    assert result.ok, result.explain()
    csv_text = (tmp_path / "fleet-report.csv").read_text()
    rows = {r["host"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    # the stager fetched both from the origin; lab-2 re-fetched the checkpoint (poisoned
    # object), lab-3 the LoRA (miss); everything else came from the cache
    expected_from = {
        lab.hosts[0]: {"tiny-sd15.safetensors": "origin", "detail-tweaker.safetensors": "origin"},
        lab.hosts[1]: {"tiny-sd15.safetensors": "origin", "detail-tweaker.safetensors": "cache"},
        lab.hosts[2]: {"tiny-sd15.safetensors": "cache", "detail-tweaker.safetensors": "origin"},
    }
    sizes = {p.rsplit("/", 1)[1]: size for p, (_, size) in net["files"].items()}
    total = 0
    for host, files in expected_from.items():
        got = dict(item.split(":") for item in rows[host]["models_from"].split(";"))
        assert got == files, (host, rows[host]["models_from"])
        origin = sum(sizes[name] for name, src in files.items() if src == "origin")
        assert int(rows[host]["models_origin_bytes"]) == origin
        total += origin
    assert "Model bytes from the internet (origins), fleet total:" in said(result)
    assert "tiny-sd15.safetensors ok from cache" in said(result)
