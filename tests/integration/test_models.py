"""The models stage on lab VMs against the Hugging Face / CivitAI stand-in over HTTPS."""

from __future__ import annotations

import hashlib

import pytest

from lab.tls import issue_server_cert
from tests.doubles.model_hub import ModelHub
from tests.fixtures import models as m
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

TOKEN = "hf_lab_token_never_printed_5d41402abc4b2a76"
KEY = "civitai_lab_key_never_printed_7d793037a076"
MIRROR = "mirror_header_never_printed_9e107d9d372bb6826bd8"
FORGE = "/home/azureuser/stable-diffusion-webui-forge"
CATALOG = [
    {
        "source": "huggingface",
        "repo": "runwayml/tiny-sd15",
        "file": "tiny-sd15.safetensors",
        "kind": "checkpoint",
        "base_model": "sd1",
    },
    {"source": "civitai", "version_id": 1001},
]


@pytest.fixture(scope="module")
def hub(lab, tmp_path_factory):
    files = tmp_path_factory.mktemp("hub")
    gateway = lab.lab.gateway
    cert, key = issue_server_cert([gateway], files / "tls")
    with ModelHub(gateway, tls=(str(cert), str(key))) as server:
        server.state.tokens.add(TOKEN)
        server.state.granted.add(TOKEN)
        server.state.civitai_keys.update({KEY, MIRROR})
        server.add_hf_file(
            "runwayml/tiny-sd15",
            "tiny-sd15.safetensors",
            m.write_with_data(files / "sd15.safetensors", m.tiny_checkpoint("sd1")),
        )
        server.add_civitai_version(
            1001,
            100,
            m.write_with_data(files / "detail.safetensors", m.kohya_lora("sd1"), seed=2),
            name="detail-tweaker.safetensors",
            base_model="SD 1.5",
            restricted=True,
        )
        server.add_civitai_version(
            2002,
            200,
            m.write_with_data(files / "xl.safetensors", m.kohya_lora("sdxl"), seed=3),
            name="xl-style.safetensors",
            base_model="SDXL 1.0",
        )
        server.add_civitai_version(
            3003,
            300,
            m.write_with_data(files / "mirror.safetensors", m.kohya_lora("sd1"), seed=4),
            name="mirror.safetensors",
            restricted=True,
        )
        yield server


def full_catalog(hub):
    """CATALOG plus a private mirror whose Authorization header is a secret."""
    mirror = {
        "source": "url",
        "url": f"{hub.api_url}/api/download/models/3003",
        "headers": {"Authorization": f"Bearer {MIRROR}"},
        "kind": "lora",
        "filename": "mirror-style.safetensors",
    }
    return [*CATALOG, mirror]


def models_run(lab, hub, catalog=None, **options):
    extravars = {
        "models_catalog": full_catalog(hub) if catalog is None else catalog,
        "models_huggingface_endpoint": hub.api_url,
        "models_civitai_endpoint": hub.api_url,
        "models_huggingface_token": TOKEN,
        "models_civitai_api_key": KEY,
        "models_poll_interval": 1,
    }
    return run_playbook("playbooks/models.yml", lab.inventory, extravars=extravars, **options)


def remote_sha(lab, host, path):
    return lab.exec(host, "sha256sum", path).split()[0]


@pytest.fixture(scope="module")
def converged(lab, hub):
    result = models_run(lab, hub, verbosity=3)
    assert result.ok, result.explain()
    return result


def test_models_land_in_forge_folders_owned_by_azureuser(lab, hub, converged):
    host = lab.hosts[0]
    for path, source in (
        (
            "models/Stable-diffusion/tiny-sd15.safetensors",
            ("runwayml/tiny-sd15", "tiny-sd15.safetensors"),
        ),
        ("models/Lora/detail-tweaker.safetensors", None),
    ):
        full = f"{FORGE}/{path}"
        assert lab.exec(host, "stat", "-c", "%U", full).strip() == "azureuser"
        if source:
            blob = hub.state.blobs[hub.state.hf_files[source]["blob"]]
            assert remote_sha(lab, host, full) == blob.sha256
    facts = converged.task("Export the models facts for later roles", host).res["ansible_facts"]
    assert sorted((f["role"], f["family"]) for f in facts["models_files"]) == [
        ("checkpoint", "sd1"),
        ("lora", "sd1"),
        ("lora", "sd1"),
    ]
    mirrored = f"{FORGE}/models/Lora/mirror-style.safetensors"
    assert lab.exec(host, "stat", "-c", "%U", mirrored).strip() == "azureuser"


@pytest.mark.parametrize("secret", [TOKEN, KEY, MIRROR])
def test_no_secret_appears_in_the_output_at_vvv(converged, secret):
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in converged.stdout
    assert secret not in converged.stdout


@pytest.mark.parametrize("secret", [TOKEN, KEY, MIRROR])
def test_no_secret_reaches_the_vm_journal(lab, converged, secret):
    for host in lab.hosts:
        logged = lab.exec(host, "journalctl", "--no-pager", "-t", "ansible-model_download")
        assert "Invoked with" in logged and "catalog=" in logged  # the module does log here
        assert secret not in lab.exec(host, "journalctl", "--no-pager")


def test_credentials_never_reach_the_storage_host(hub, converged):
    assert hub.cdn_requests()
    assert not any(r["authorization"] for r in hub.cdn_requests())


def test_rerun_changes_nothing_and_downloads_nothing(lab, hub, converged):
    hub.state.log.clear()
    again = models_run(lab, hub)
    assert again.ok, again.explain()
    for host in lab.hosts:
        assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
    assert hub.cdn_requests() == []


def test_corrupted_model_is_repaired_and_nothing_else_changes(lab, hub, converged):
    host = lab.hosts[1]
    path = f"{FORGE}/models/Lora/detail-tweaker.safetensors"
    good = remote_sha(lab, host, path)
    lab.exec(
        host, "sh", "-c", f"printf 'XXXX' | dd of={path} bs=1 seek=2000 conv=notrunc status=none"
    )
    repaired = models_run(lab, hub)
    assert repaired.ok, repaired.explain()
    assert remote_sha(lab, host, path) == good
    assert repaired.stats[lab.hosts[0]]["changed"] == 0
    assert repaired.stats[host]["changed"] == 1


def test_sdxl_lora_on_an_sd15_catalog_is_refused_before_any_download(lab, hub, converged):
    hub.state.log.clear()
    catalog = [*full_catalog(hub), {"source": "civitai", "version_id": 2002}]
    result = models_run(lab, hub, catalog=catalog)
    assert not result.ok
    message = result.task(
        "Plan the downloads and check disk space and base models", lab.hosts[0]
    ).msg
    assert "CivitAI says this lora is for SDXL 1.0 (sdxl)" in message
    assert hub.cdn_requests() == []


def test_bad_catalog_stops_on_the_controller_before_touching_hosts(lab, hub):
    result = models_run(lab, hub, catalog=[{"source": "huggingface", "repo": "a/b", "fil": "x"}])
    assert not result.ok
    failure = result.failures()[0]
    assert "unknown key 'fil'" in failure.msg
    assert all(result.stats[h]["changed"] == 0 for h in lab.hosts if h in result.stats)


def test_check_mode_on_a_fresh_vm_plans_and_changes_nothing(make_lab, hub):
    fresh = make_lab()
    result = models_run(fresh, hub, check=True)
    assert result.ok, result.explain()
    plan = result.task("Plan the downloads and check disk space and base models", fresh.hosts[0])
    assert [f["action"] for f in plan.res["files"]] == ["download"] * 3
    assert plan.res["bytes_to_fetch"] > 5_000_000
    assert (
        fresh.exec(fresh.hosts[0], "sh", "-c", f"ls {FORGE}/models 2>&1 || true")
        .strip()
        .endswith("No such file or directory")
    )


def test_progress_is_shown_per_host_while_downloading(make_lab, hub):
    fresh = make_lab()
    hub.state.bytes_per_second = 1_000_000
    try:
        result = models_run(fresh, hub, catalog=CATALOG[:1])
    finally:
        hub.state.bytes_per_second = None
    assert result.ok, result.explain()
    lines = [line for line in result.stdout.splitlines() if ": models " in line]
    assert lines, result.stdout[-3000:]
    assert lines[0].startswith(f"{fresh.hosts[0]}: models ")
    assert "MiB/s, ETA" in lines[0]
    assert hashlib.sha256(b"").hexdigest() not in result.stdout
