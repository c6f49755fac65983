"""The models stage on lab VMs against the Hugging Face / CivitAI stand-in over HTTPS."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from forge_fleet.http_download import human_bytes
from lab import podman
from lab.tls import issue_server_cert
from tests.doubles.model_hub import ModelHub
from tests.fixtures import models as m
from tests.fixtures.catalog import SD15_CATALOG
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

TOKEN = "hf_lab_token_never_printed_5d41402abc4b2a76"
KEY = "civitai_lab_key_never_printed_7d793037a076"
MIRROR = "mirror_header_never_printed_9e107d9d372bb6826bd8"
FORGE = "/home/azureuser/stable-diffusion-webui-forge"
CATALOG = SD15_CATALOG


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


FOLDER_TASK = "Create the models folder"
COMPAT = "Check that the models fit together"
DOWNLOAD_STEPS = (
    "Forget the progress of an earlier run",
    "Start the downloads in the background",
    "Wait for the downloads, showing progress",
    "Collect the download results",
)


def ran(result, name: str, host: str) -> bool:
    """Whether a task with this name has a result for the host at all (skipped counts)."""
    return any(t.task == name or t.task.endswith(f" : {name}") for t in result.for_host(host))


def test_rerun_changes_nothing_and_downloads_nothing(lab, hub, converged):
    hub.state.log.clear()
    again = models_run(lab, hub)
    assert again.ok, again.explain()
    for host in lab.hosts:
        assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
        # the plan read both folders as declared: no module run for them
        assert again.task(FOLDER_TASK, host).status == "skipped"
        assert again.task(PLAN, host).res["folders_differ"] == []
        # nothing to download: the download's steps are not even included
        assert not any(ran(again, step, host) for step in DOWNLOAD_STEPS)
        # and the plan's run answered the compatibility check: no model_compat run
        assert again.task(PLAN, host).res["compat"]["findings"] == []
        assert again.task(COMPAT, host).status == "skipped"
    assert hub.cdn_requests() == []


def test_the_check_hands_every_file_present_and_the_manifest_to_the_report(lab, converged):
    host = lab.hosts[0]
    facts = converged.task("Export the models facts for later roles", host).res["ansible_facts"]
    tree = facts["models_tree"]
    assert tree["forge_dir"] == FORGE
    assert tree["findings"] == []
    names = sorted(f["path"].rsplit("/", 1)[-1] for f in tree["files"])
    assert names == sorted(
        ["tiny-sd15.safetensors", "detail-tweaker.safetensors", "mirror-style.safetensors"]
    )
    assert "models/Lora/detail-tweaker.safetensors" in tree["manifest"]


def test_folder_drift_is_reported_by_check_and_repaired(lab, hub, converged):
    host = lab.hosts[0]
    models = f"{FORGE}/models"
    healthy = lab.exec(host, "stat", "-c", "%a %U %G", FORGE, models)
    assert healthy.split() == ["755", "azureuser", "azureuser"] * 2
    lab.exec(host, "chmod", "0777", models)  # mode loosened
    lab.exec(host, "chown", "root:root", FORGE)  # owner changed
    drifted = lab.exec(host, "stat", "-c", "%a %U %G", FORGE, models)
    dry = models_run(lab, hub, check=True)
    assert dry.ok, dry.explain()
    assert lab.exec(host, "stat", "-c", "%a %U %G", FORGE, models) == drifted
    assert dry.task(PLAN, host).res["folders_differ"] == [FORGE, models]
    assert dry.changed_tasks(host) == [FOLDER_TASK]
    assert dry.stats[lab.hosts[1]]["changed"] == 0
    real = models_run(lab, hub)
    assert real.ok, real.explain()
    assert lab.exec(host, "stat", "-c", "%a %U %G", FORGE, models) == healthy
    assert real.changed_tasks(host) == [FOLDER_TASK]
    assert real.task(FOLDER_TASK, lab.hosts[1]).status == "skipped"


def test_a_lora_the_catalog_does_not_list_is_handed_to_the_report_not_failed_nor_deleted(
    lab, hub, converged, tmp_path
):
    host = lab.hosts[0]
    wrong = f"{FORGE}/models/Lora/xl-style.safetensors"
    local = m.write_with_data(tmp_path / "xl-style.safetensors", m.kohya_lora("sdxl"), seed=3)
    podman.podman("cp", str(local), f"{host}:{wrong}")
    lab.exec(host, "chown", "azureuser:azureuser", wrong)
    try:
        result = models_run(lab, hub)
        assert result.ok, result.explain()
        assert result.stats[host]["changed"] == 0
        assert lab.exec(host, "sh", "-c", f"test -f {wrong} && echo kept").strip() == "kept"
        # every file in place: the plan answered the check, and the catalog's files are fine
        assert result.task(PLAN, host).res["compat"]["findings"] == []
        assert result.task(COMPAT, host).status == "skipped"
        facts = result.task("Export the models facts for later roles", host).res["ansible_facts"]
        found = facts["models_tree"]["findings"]
        assert [f["code"] for f in found] == ["no_matching_model"]
        assert found[0]["paths"] == [wrong]
        assert (
            "xl-style.safetensors: LoRA for sdxl does not fit any model present"
            in found[0]["message"]
        )
    finally:
        lab.exec(host, "rm", "-f", wrong)


def test_a_rerun_whose_catalog_no_longer_fits_fails_at_the_check_naming_the_file(
    lab, hub, converged
):
    """Every file in place, so the plan answers the check; its findings still fail the host,
    at the check, with model_compat's own message. Here the catalog lost its checkpoint."""
    result = models_run(lab, hub, catalog=full_catalog(hub)[-1:])  # the mirror's LoRA alone
    assert not result.ok
    for host in lab.hosts:
        plan = result.task(PLAN, host).res
        assert [f["code"] for f in plan["compat"]["findings"]] == ["no_matching_model"]
        check = result.task(COMPAT, host)
        assert check.status == "failed"
        assert check.msg.startswith("1 model problem(s): ")
        assert "mirror-style.safetensors" in check.msg
        assert lab.exec(host, "sh", "-c", f"ls {FORGE}/models/Lora").split() == [
            "detail-tweaker.safetensors",
            "mirror-style.safetensors",
        ]


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


PLAN = "Plan the downloads and check disk space and base models"
MISSING = "models/Lora/mirror-style.safetensors"
TRUNCATED = "models/Stable-diffusion/tiny-sd15.safetensors"
REPLACED = "models/Lora/detail-tweaker.safetensors"


@pytest.fixture(scope="module")
def faults(lab, hub, converged):
    """On the second VM: one model deleted, one truncated, one replaced by other bytes of the
    same size; then a dry run, a look at the disk, and the real run."""
    host = lab.hosts[1]
    lab.exec(host, "rm", f"{FORGE}/{MISSING}")
    lab.exec(host, "truncate", "-s", "-1000", f"{FORGE}/{TRUNCATED}")
    path = f"{FORGE}/{REPLACED}"
    lab.exec(
        host,
        "sh",
        "-c",
        f'head -c "$(stat -c %s {path})" /dev/urandom > {path}.new && '
        f"chown azureuser:azureuser {path}.new && mv {path}.new {path}",
    )
    listing = f"cd {FORGE} && ls -ln --time-style=+%s.%N models/* && sha256sum models/*/*"
    before = lab.exec(host, "sh", "-c", listing)
    dry = models_run(lab, hub, check=True)
    after = lab.exec(host, "sh", "-c", listing)
    real = models_run(lab, hub)
    sizes = {  # the whole file is fetched again: sizes from the untouched first VM
        name: int(lab.exec(lab.hosts[0], "stat", "-c", "%s", f"{FORGE}/{name}"))
        for name in (MISSING, TRUNCATED, REPLACED)
    }
    return {
        "host": host,
        "dry": dry,
        "real": real,
        "before": before,
        "after": after,
        "sizes": sizes,
    }


def dry_run_changes(faults) -> list[str]:
    assert faults["dry"].ok, faults["dry"].explain()
    return faults["dry"].task(PLAN, faults["host"]).res["changes"]


def test_check_names_a_missing_model_as_a_download(faults):
    # a plain URL announces no size before it downloads: the dry run says so
    assert [c for c in dry_run_changes(faults) if MISSING in c] == [
        f"download {MISSING} (size unknown until it downloads)"
    ]


def test_check_names_a_truncated_model_as_a_repair(faults):
    assert [c for c in dry_run_changes(faults) if TRUNCATED in c] == [
        f"repair {TRUNCATED} ({human_bytes(faults['sizes'][TRUNCATED])} to fetch)"
    ]


def test_check_names_a_replaced_model_of_the_same_size_as_a_repair(faults):
    assert [c for c in dry_run_changes(faults) if REPLACED in c] == [
        f"repair {REPLACED} ({human_bytes(faults['sizes'][REPLACED])} to fetch)"
    ]


def test_check_shows_the_files_to_the_operator_and_counts_the_change(lab, faults):
    dry = faults["dry"]
    shown = dry.task("Show what a real run would download or repair", faults["host"])
    assert sorted(shown.res["msg"]) == sorted(dry_run_changes(faults))
    for name in (MISSING, TRUNCATED, REPLACED):
        assert name in dry.stdout
    assert dry.stats[faults["host"]]["changed"] == 1
    assert dry.stats[lab.hosts[0]]["changed"] == 0
    assert dry.task(PLAN, lab.hosts[0]).res["changes"] == []


def test_check_changes_nothing_on_the_vm(faults):
    assert faults["after"] == faults["before"]


def test_the_real_run_changes_exactly_what_check_named(lab, faults):
    real = faults["real"]
    assert real.ok, real.explain()
    assert real.stats[faults["host"]]["changed"] == faults["dry"].stats[faults["host"]]["changed"]
    assert real.stats[lab.hosts[0]]["changed"] == 0
    collected = real.task("Collect the download results", faults["host"]).res["files"]
    changed = sorted((f["action"], f["destination"]) for f in collected if f["action"] != "present")
    assert changed == [("downloaded", MISSING), ("repaired", REPLACED), ("repaired", TRUNCATED)]
    # nothing to download on the first VM: the download's steps are not included there
    assert not ran(real, "Collect the download results", lab.hosts[0])


PROGRESS = "/var/tmp/forge-fleet-models-progress.json"


@pytest.fixture(scope="module")
def killed(lab, hub, converged):
    """On the first VM: the checkpoint deleted, the play started against a slow stand-in, and
    the download job's process killed with SIGKILL once bytes flow; then a normal re-run."""
    host = lab.hosts[0]
    lab.exec(host, "rm", f"{FORGE}/{TRUNCATED}")
    hub.state.bytes_per_second = 40_000
    killing: dict = {}

    def kill_the_job() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "at" not in killing:
            time.sleep(0.5)
            state = lab.exec(host, "cat", f"{FORGE}/{TRUNCATED}.partial.json", check=False)
            if '"prefix": 0' in state or '"prefix"' not in state:
                continue  # until a resume point beyond the first byte is on disk
            pid = json.loads(lab.exec(host, "cat", PROGRESS))["pid"]
            killing["cmdline"] = lab.exec(host, "cat", f"/proc/{pid}/cmdline")
            lab.exec(host, "kill", "-9", str(pid))
            killing["at"] = time.monotonic()
            killing["partial"] = int(
                lab.exec(host, "stat", "-c", "%s", f"{FORGE}/{TRUNCATED}.partial")
            )

    killer = threading.Thread(target=kill_the_job, daemon=True)
    killer.start()
    try:
        failed = models_run(lab, hub, catalog=CATALOG[:1])
    finally:
        hub.state.bytes_per_second = None
        killer.join()
    ended = time.monotonic()
    hub.state.log.clear()
    resumed = models_run(lab, hub, catalog=CATALOG[:1])
    return {"host": host, "failed": failed, "resumed": resumed, "ended": ended, **killing}


def test_a_killed_download_fails_the_play_within_a_minute(killed):
    assert "AnsiballZ_model_download" in killed["cmdline"].replace("\0", " ")
    assert not killed["failed"].ok
    assert killed["ended"] - killed["at"] < 60


def test_a_killed_download_names_host_file_and_what_to_do(killed):
    wait = killed["failed"].task("Wait for the downloads, showing progress", killed["host"])
    assert wait.failed
    assert wait.msg.startswith(
        f"The model download on {killed['host']} died while fetching {TRUNCATED}"
    )
    assert f"{TRUNCATED}.partial" in wait.msg
    assert "re-run the play to resume" in wait.msg


def test_the_next_run_resumes_the_killed_download_from_its_partial(lab, hub, killed):
    assert killed["resumed"].ok, killed["resumed"].explain()
    [request] = [r for r in hub.cdn_requests() if r["range"]]
    assert int(request["range"].removeprefix("bytes=").rstrip("-")) > 0
    blob = hub.state.blobs[
        hub.state.hf_files[("runwayml/tiny-sd15", "tiny-sd15.safetensors")]["blob"]
    ]
    assert remote_sha(lab, killed["host"], f"{FORGE}/{TRUNCATED}") == blob.sha256


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


def test_check_mode_on_a_fresh_vm_plans_and_changes_nothing(fresh_vm, hub):
    fresh = fresh_vm
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


def test_progress_is_shown_per_host_while_downloading(fresh_vm, hub):
    fresh = fresh_vm  # the same fresh VM: the check above changed nothing, this comes last
    hub.state.bytes_per_second = 1_000_000
    try:
        result = models_run(fresh, hub, catalog=CATALOG[:1])
    finally:
        hub.state.bytes_per_second = None
    assert result.ok, result.explain()
    lines = [line for line in result.stdout.splitlines() if ": models " in line]
    assert lines, result.stdout[-3000:]
    assert all(line.startswith(f"{fresh.hosts[0]}: models ") for line in lines), lines
    # a poll that comes before the first byte says "starting" (seen on a loaded machine);
    # the ones after it show the rate and the time left
    assert any("MiB/s, ETA" in line for line in lines), lines
    assert "RETRYING" not in result.stdout  # the progress lines replace Ansible's retry lines
    assert hashlib.sha256(b"").hexdigest() not in result.stdout
