"""Downloads against the Hugging Face / CivitAI stand-in on loopback: real sockets, real files."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from forge_fleet import download_task
from forge_fleet.http_download import (
    USER_AGENT,
    DownloadError,
    Settings,
    check_declared_families,
    check_disk,
    execute,
    make_plan,
    outgoing_headers,
    retry_after_seconds,
)
from tests.doubles.model_hub import ModelHub
from tests.fixtures.credentials import KEY, TOKEN
from tests.fixtures.models import real_model, sha


@pytest.fixture
def hub(tmp_path):
    with ModelHub() as server:
        server.state.tokens.add(TOKEN)
        server.state.granted.add(TOKEN)
        server.state.civitai_keys.add(KEY)
        yield server


@pytest.fixture
def forge(tmp_path):
    path = tmp_path / "forge"
    path.mkdir()
    return path


def settings(hub, **extra):
    options = {
        "hf_endpoint": hub.api_url,
        "civitai_endpoint": hub.api_url,
        "hf_token": TOKEN,
        "civitai_key": KEY,
        "retries": 2,
        "backoff": 0.01,
    }
    return Settings(**{**options, **extra})


def hf_entry(file="ae.safetensors", kind="vae", repo="org/flux", **extra):
    return {
        "source": "huggingface",
        "repo": repo,
        "file": file,
        "revision": "main",
        "kind": kind,
        "label": f"models_catalog[0] ({repo}/{file})",
        **extra,
    }


def civitai_entry(**extra):
    return {"source": "civitai", "label": "models_catalog[1] (civitai)", **extra}


def run(entries, forge, options):
    plan = make_plan(entries, str(forge), options)
    check_disk(plan, str(forge))
    return execute(plan, str(forge), options)


def test_huggingface_file_lands_verified_in_its_forge_folder(hub, tmp_path, forge):
    source = real_model(tmp_path / "ae.safetensors", 300_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    result = run([hf_entry()], forge, settings(hub))
    assert result["errors"] == []
    [item] = result["files"]
    assert item["action"] == "downloaded"
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source) == item["sha256"]
    assert not list((forge / "models/VAE").glob("*.partial*"))


def test_token_goes_to_the_hub_and_never_to_the_cdn(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    run([hf_entry()], forge, settings(hub))
    api = [r for r in hub.state.log if r["host"] == "api"]
    assert api and all(r["authorization"] for r in api)
    assert hub.cdn_requests() and not any(r["authorization"] for r in hub.cdn_requests())


def test_gated_repo_without_access_names_the_repo_and_what_to_do(hub, tmp_path, forge):
    hub.add_hf_file(
        "black-forest-labs/FLUX.1-dev",
        "ae.safetensors",
        real_model(tmp_path / "a", 1000),
        gated=True,
    )
    hub.state.granted.clear()
    entry = hf_entry(repo="black-forest-labs/FLUX.1-dev")
    with pytest.raises(DownloadError) as caught:
        make_plan([entry], str(forge), settings(hub))
    message = str(caught.value)
    assert "black-forest-labs/FLUX.1-dev is a gated repository (HTTP 403)" in message
    assert "request access" in message and "this token's account" in message


def test_gated_repo_without_a_token_asks_for_one(hub, tmp_path, forge):
    hub.add_hf_file("o/g", "ae.safetensors", real_model(tmp_path / "a", 1000), gated=True)
    options = settings(hub)
    options.hf_token = None
    with pytest.raises(
        DownloadError, match=r"gated repository \(HTTP 401\).*models_huggingface_token"
    ):
        make_plan([hf_entry(repo="o/g")], str(forge), options)


NOT_FOUND = {
    ("org/flux", "nope.safetensors"): (
        "no such file or revision: org/flux, revision main, file nope.safetensors"
    ),
    ("org/missing", "ae.safetensors"): "no such repository: org/missing",
}


@pytest.mark.parametrize("where", list(NOT_FOUND))
def test_not_found_names_what_is_missing(hub, tmp_path, forge, where):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    with pytest.raises(DownloadError) as caught:
        make_plan([hf_entry(repo=where[0], file=where[1])], str(forge), settings(hub))
    assert NOT_FOUND[where] in str(caught.value)


def test_civitai_version_picks_the_file_kind_and_hash_and_keeps_the_key_off_storage(
    hub, tmp_path, forge
):
    source = real_model(tmp_path / "lora", 50_000)
    hub.add_civitai_version(
        128713, 9001, source, name="detail-tweaker.safetensors", model_type="LORA", restricted=True
    )
    result = run([civitai_entry(version_id=128713)], forge, settings(hub))
    assert result["errors"] == []
    assert (forge / "models/Lora/detail-tweaker.safetensors").exists()
    assert result["files"][0]["base_model"] == "SD 1.5"
    assert not any(r["authorization"] for r in hub.cdn_requests())
    assert all(KEY not in r["query"] and "token" not in r["query"] for r in hub.state.log)


def test_civitai_model_id_resolves_to_its_newest_version(hub, tmp_path, forge):
    hub.add_civitai_version(1, 77, real_model(tmp_path / "old", 100), name="old.safetensors")
    hub.add_civitai_version(
        2, 77, real_model(tmp_path / "new", 200, seed=2), name="new.safetensors"
    )
    result = run([civitai_entry(model_id=77)], forge, settings(hub))
    assert [f["destination"] for f in result["files"]] == ["models/Lora/new.safetensors"]


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        ({"restricted": True}, "HTTP 401"),
        ({"restricted": True, "login_page": True}, "a login page instead of the model"),
        ({"early_access": True}, "a JSON message"),
    ],
)
def test_civitai_non_model_answers_are_errors_and_nothing_is_saved(
    hub, tmp_path, forge, knobs, expected
):
    hub.add_civitai_version(5, 50, real_model(tmp_path / "x", 100), name="x.safetensors", **knobs)
    options = settings(hub)
    options.civitai_key = None
    result = run([civitai_entry(version_id=5)], forge, options)
    assert expected in result["errors"][0]
    assert not (forge / "models/Lora").exists() or not any((forge / "models/Lora").iterdir())


def test_interrupted_download_resumes_and_fetches_only_the_missing_bytes(hub, tmp_path, forge):
    source = real_model(tmp_path / "big", 2_000_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    hub.state.drop_after_bytes = 700_000
    first = run([hf_entry()], forge, settings(hub, retries=0))
    assert "re-run to resume" in first["errors"][0]
    assert not (forge / "models/VAE/ae.safetensors").exists()
    kept = os.path.getsize(forge / "models/VAE/ae.safetensors.partial")
    assert 0 < kept <= 700_000
    second = run([hf_entry()], forge, settings(hub))
    assert second["errors"] == []
    assert hub.cdn_requests()[-1]["range"] == f"bytes={kept}-"
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)


def test_dropped_connection_is_resumed_within_the_same_run(hub, tmp_path, forge):
    source = real_model(tmp_path / "big", 1_000_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    hub.state.drop_after_bytes = 400_000
    result = run([hf_entry()], forge, settings(hub))
    assert result["errors"] == []
    assert hub.cdn_requests()[-1]["range"].startswith("bytes=")
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_busy_and_failing_servers_are_retried(hub, tmp_path, forge, status):
    source = real_model(tmp_path / "a", 10_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    hub.state.fail_statuses = [status, status]
    hub.state.retry_after = "0"
    assert run([hf_entry()], forge, settings(hub))["errors"] == []
    assert len(hub.cdn_requests()) == 3


def test_a_server_that_keeps_failing_gives_a_clear_final_error(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 10_000))
    hub.state.fail_statuses = [500] * 10
    [error] = run([hf_entry()], forge, settings(hub))["errors"]
    assert error.startswith(
        "models_catalog[0] (org/flux/ae.safetensors): gave up after 3 attempts: HTTP 500"
    )


def test_wrong_hash_never_sits_under_the_final_name(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 10_000))
    entry = hf_entry(sha256="0" * 64)
    [error] = run([entry], forge, settings(hub))["errors"]
    assert "does not match (sha256" in error
    assert not (forge / "models/VAE/ae.safetensors").exists()
    assert not list((forge / "models/VAE").glob("*.partial*"))


def test_rerun_with_everything_present_asks_nobody_and_reads_nothing(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 10_000))
    run([hf_entry()], forge, settings(hub))
    hub.state.log.clear()
    again = run([hf_entry()], forge, settings(hub))
    assert [f["action"] for f in again["files"]] == ["present"]
    assert again["changed"] is False
    assert hub.state.log == []


def test_corrupted_file_is_repaired_on_rerun(hub, tmp_path, forge):
    source = real_model(tmp_path / "a", 100_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    run([hf_entry()], forge, settings(hub))
    target = forge / "models/VAE/ae.safetensors"
    with open(target, "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\xff\xff")
    result = run([hf_entry()], forge, settings(hub))
    assert [f["action"] for f in result["files"]] == ["repaired"]
    assert sha(target) == sha(source)


def test_full_verification_can_be_asked_for(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 10_000))
    run([hf_entry()], forge, settings(hub))
    result = run([hf_entry()], forge, settings(hub, verify=True))
    assert [f["action"] for f in result["files"]] == ["verified"]


def test_large_file_is_fetched_over_several_ranged_connections(hub, tmp_path, forge):
    source = real_model(tmp_path / "big", 3_000_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    options = settings(hub, connections=4, segment_bytes=256 * 1024, min_split_bytes=1_000_000)
    assert run([hf_entry()], forge, options)["errors"] == []
    ranges = [r["range"] for r in hub.cdn_requests() if r["range"]]
    assert len(ranges) >= 10
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)


def test_several_files_download_in_parallel(hub, tmp_path, forge):
    entries = []
    for i in range(3):
        hub.add_hf_file(
            "org/flux", f"f{i}.safetensors", real_model(tmp_path / f"s{i}", 50_000, seed=i)
        )
        entries.append(hf_entry(file=f"f{i}.safetensors", label=f"e{i}"))
    result = run(entries, forge, settings(hub, parallel_files=3))
    assert sorted(f["action"] for f in result["files"]) == ["downloaded"] * 3


def test_plan_reports_bytes_to_download_and_changes_nothing(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 123_456))
    [item] = make_plan([hf_entry()], str(forge), settings(hub))
    assert item.action == "download"
    assert item.bytes_to_fetch == os.path.getsize(tmp_path / "a")
    assert list(forge.iterdir()) == []
    assert hub.cdn_requests() == []


def test_not_enough_disk_fails_before_any_byte_moves(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    plan = make_plan([hf_entry()], str(forge), settings(hub))
    plan[0].bytes_to_fetch = 10**15
    with pytest.raises(
        DownloadError, match=r"not enough disk space for the models: .* GiB to download"
    ):
        check_disk(plan, str(forge))


def test_progress_file_shows_bytes_rate_and_eta(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 500_000))
    progress = tmp_path / "progress.json"
    run([hf_entry()], forge, settings(hub, progress_file=str(progress)))
    data = json.loads(progress.read_text())
    assert data["finished"] is True
    [item] = data["files"]
    assert item["state"] == "done"
    assert item["bytes_done"] == item["bytes_total"] == os.path.getsize(tmp_path / "a")
    assert {"rate_bytes_per_s", "eta_s"} <= set(item)
    assert TOKEN not in progress.read_text()


def test_manifest_records_size_mtime_and_sha256_without_secrets(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    run([hf_entry()], forge, settings(hub))
    text = (forge / "models/.forge-fleet-manifest.json").read_text()
    record = json.loads(text)["models/VAE/ae.safetensors"]
    assert record["sha256"] == sha(tmp_path / "a")
    assert record["size"] == os.path.getsize(tmp_path / "a")
    assert TOKEN not in text and KEY not in text


def test_civitai_lora_for_another_base_model_is_refused_before_any_download(hub, tmp_path, forge):
    hub.add_hf_file("org/xl", "sd_xl_base_1.0.safetensors", real_model(tmp_path / "c", 1000))
    hub.add_civitai_version(
        7, 70, real_model(tmp_path / "l", 100), name="sd15.safetensors", base_model="SD 1.5"
    )
    entries = [
        hf_entry(
            repo="org/xl", file="sd_xl_base_1.0.safetensors", kind="checkpoint", base_model="sdxl"
        ),
        civitai_entry(version_id=7),
    ]
    plan = make_plan(entries, str(forge), settings(hub))
    [problem] = check_declared_families(plan)
    assert "CivitAI says this lora is for SD 1.5 (sd1)" in problem
    assert "the catalog's models are sdxl" in problem
    assert hub.cdn_requests() == []


def test_renamed_repo_is_followed_on_the_hub_with_the_token(hub, tmp_path, forge):
    source = real_model(tmp_path / "a", 10_000)
    hub.add_hf_file("org/new-name", "ae.safetensors", source, gated=True)
    hub.state.renamed["org/old-name"] = "org/new-name"
    result = run([hf_entry(repo="org/old-name")], forge, settings(hub))
    assert result["errors"] == []
    assert [r["path"] for r in hub.api_requests()] == [
        "/org/old-name/resolve/main/ae.safetensors",
        "/org/new-name/resolve/main/ae.safetensors",
    ]
    assert all(r["authorization"] for r in hub.api_requests())
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)


def test_busy_hub_metadata_is_retried(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    hub.state.api_fail_statuses = [429, 502]
    hub.state.retry_after = "0"
    [item] = make_plan([hf_entry()], str(forge), settings(hub))
    assert item.action == "download"
    assert len(hub.api_requests()) == 3


@pytest.mark.parametrize("connections", [1, 4])
def test_url_entry_headers_reach_only_their_own_host(hub, tmp_path, forge, connections):
    secret = "mirror-secret-header-value"
    hub.state.civitai_keys.add(secret)
    hub.add_civitai_version(
        9, 90, real_model(tmp_path / "m", 600_000), name="mirror.safetensors", restricted=True
    )
    entry = {
        "source": "url",
        "url": f"{hub.api_url}/api/download/models/9",
        "headers": {"Authorization": f"Bearer {secret}"},
        "kind": "lora",
        "filename": "mirror.safetensors",
        "label": "models_catalog[2] (mirror)",
    }
    options = settings(
        hub,
        civitai_key=None,
        connections=connections,
        segment_bytes=128 * 1024,
        min_split_bytes=100_000,
    )
    result = run([entry], forge, options)
    assert result["errors"] == []
    assert hub.api_requests() and all(r["authorization"] for r in hub.api_requests())
    assert len(hub.cdn_requests()) >= (4 if connections > 1 else 1)
    assert hub.cdn_requests() and not any(r["authorization"] for r in hub.cdn_requests())
    assert secret not in json.dumps(result)


def test_plan_knows_a_file_of_the_wrong_size_needs_repair_without_reading_it(hub, tmp_path, forge):
    source = real_model(tmp_path / "a", 100_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    run([hf_entry()], forge, settings(hub))
    target = forge / "models/VAE/ae.safetensors"
    with open(target, "r+b") as handle:
        handle.truncate(60_000)
    [item] = make_plan([hf_entry()], str(forge), settings(hub))
    assert item.action == "repair"
    assert item.bytes_to_fetch == os.path.getsize(source)
    assert os.path.getsize(target) == 60_000


def test_touched_file_with_the_right_content_is_verified_not_downloaded(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 10_000))
    run([hf_entry()], forge, settings(hub))
    os.utime(forge / "models/VAE/ae.safetensors", (1, 1))
    hub.state.log.clear()
    result = run([hf_entry()], forge, settings(hub))
    assert [f["action"] for f in result["files"]] == ["verified"]
    assert result["changed"] is False
    assert hub.cdn_requests() == []


def test_progress_file_is_rewritten_while_no_byte_arrives(hub, tmp_path, forge):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 10_000))
    hub.state.fail_statuses = [429]
    hub.state.retry_after = "1"
    progress = tmp_path / "progress.json"
    options = settings(hub, progress_file=str(progress), progress_interval=0.1)
    plan = make_plan([hf_entry()], str(forge), options)
    seen = []
    worker = threading.Thread(target=execute, args=(plan, str(forge), options))
    worker.start()
    while worker.is_alive():
        try:
            data = json.loads(progress.read_text())
        except (OSError, ValueError):
            data = None
        if data and not data["finished"] and data["bytes_done"] == 0:
            seen.append(data["updated"])
        time.sleep(0.05)
    worker.join()
    assert len(set(seen)) >= 5  # a one-second Retry-After, rewritten every 0.1 s
    assert json.loads(progress.read_text())["finished"] is True


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0), ("soon", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after_seconds(header, now=40.0) == seconds


def civitai_two_files(hub, tmp_path):
    """A checkpoint version offering fp16 (primary) and fp32 SafeTensor files."""
    fp32 = real_model(tmp_path / "fp32", 40_000, seed=32)
    blob = hub.add_blob(fp32)
    extra = {
        "id": 3002,
        "name": "model-fp32.safetensors",
        "type": "Model",
        "primary": False,
        "sizeKB": os.path.getsize(fp32) / 1024,
        "_blob": blob,
        "metadata": {"format": "SafeTensor", "size": "full", "fp": "fp32"},
        "hashes": {"SHA256": sha(fp32).upper()},
    }
    hub.add_civitai_version(
        300,
        30,
        real_model(tmp_path / "fp16", 20_000, seed=16),
        name="model-fp16.safetensors",
        model_type="Checkpoint",
        extra_files=[extra],
    )
    return fp32


def test_civitai_file_is_chosen_by_precision(hub, tmp_path, forge):
    fp32 = civitai_two_files(hub, tmp_path)
    result = run([civitai_entry(version_id=300, precision="fp32")], forge, settings(hub))
    assert result["errors"] == []
    target = forge / "models/Stable-diffusion/model-fp32.safetensors"
    assert sha(target) == sha(fp32) == result["files"][0]["sha256"]
    assert "fp=fp32" in hub.api_requests()[-1]["query"]


def test_civitai_primary_file_is_taken_when_the_entry_says_nothing(hub, tmp_path, forge):
    civitai_two_files(hub, tmp_path)
    result = run([civitai_entry(version_id=300)], forge, settings(hub))
    assert [f["destination"] for f in result["files"]] == [
        "models/Stable-diffusion/model-fp16.safetensors"
    ]


def test_civitai_entry_matching_no_file_lists_what_is_offered(hub, tmp_path, forge):
    civitai_two_files(hub, tmp_path)
    with pytest.raises(DownloadError) as caught:
        make_plan([civitai_entry(version_id=300, precision="nf4")], str(forge), settings(hub))
    message = str(caught.value)
    assert "no file matches" in message
    assert "model-fp16.safetensors" in message and "model-fp32.safetensors" in message


def test_civitai_version_listing_no_files_says_so_and_what_to_do(hub, tmp_path, forge):
    hub.add_civitai_version(7, 70, real_model(tmp_path / "x", 100), name="x.safetensors")
    hub.state.civitai_versions[7]["files"] = []  # early access, or its files were removed
    with pytest.raises(DownloadError) as caught:
        make_plan([civitai_entry(version_id=7)], str(forge), settings(hub))
    message = str(caught.value)
    assert message.startswith(
        "models_catalog[1] (civitai): CivitAI version 7 lists no files (early access, or removed)"
    )
    assert "choose another version_id from the model's page on CivitAI" in message
    assert "no file matches" not in message and "offered" not in message
    assert list(forge.iterdir()) == []
    assert hub.cdn_requests() == []


def test_civitai_version_in_early_access_says_until_when(hub, tmp_path, forge):
    hub.add_civitai_version(8, 80, real_model(tmp_path / "x", 100), name="x.safetensors")
    hub.state.civitai_versions[8].update(files=[], earlyAccessEndsAt="2026-12-24T00:00:00.000Z")
    with pytest.raises(DownloadError) as caught:
        make_plan([civitai_entry(version_id=8)], str(forge), settings(hub))
    message = str(caught.value)
    assert "lists no files (early access until 2026-12-24T00:00:00.000Z)" in message
    assert "or wait until the early access ends" in message


@pytest.mark.parametrize(
    "entry",
    [
        {"source": "huggingface", "repo": "org/flux", "file": "../../../etc/x", "kind": "vae"},
        {"source": "huggingface", "repo": "org/flux", "file": "..", "kind": "vae"},
        {"source": "url", "url": "https://mirror.example/a/../../x.safetensors", "kind": "vae"},
    ],
)
def test_a_path_leaving_its_folder_is_refused_before_any_request_or_file(hub, forge, entry):
    params = {
        "forge_dir": str(forge),
        "catalog": [entry],
        "bundles": [],
        "huggingface_endpoint": hub.api_url,
        "civitai_endpoint": hub.api_url,
        "huggingface_token": TOKEN,
        "civitai_api_key": None,
        "connections_per_file": 1,
        "parallel_files": 1,
        "verify": False,
        "progress_file": str(forge / "progress.json"),
        "retries": 0,
        "ca_file": None,
        "cache_sas_url": None,
        "azcopy": "azcopy",
        "hash_changed": True,
        "folders": [],
        "compat": False,
        "allow_pickle": False,
    }
    failed, result = download_task.run_task(params, check_mode=False)
    assert failed is True
    assert result["msg"].startswith("The model catalog has 1 problem(s), nothing downloaded: ")
    assert "models_catalog[0] (" in result["msg"] and "'..' segment" in result["msg"]
    assert hub.state.log == []
    assert list(forge.iterdir()) == []


def test_parallel_files_are_bounded_by_the_setting(hub, tmp_path, forge):
    hub.state.bytes_per_second = 2_000_000  # 0.1 s per file: downloads overlap
    entries = []
    for i in range(4):
        source = real_model(tmp_path / f"p{i}", 200_000, seed=i)
        hub.add_hf_file("org/flux", f"p{i}.safetensors", source)
        entries.append(hf_entry(file=f"p{i}.safetensors", label=f"p{i}"))
    result = run(entries, forge, settings(hub, parallel_files=2, connections=1))
    assert result["errors"] == []
    assert hub.peak_parallel() == 2


def test_connections_per_file_are_bounded_by_the_setting(hub, tmp_path, forge):
    hub.state.bytes_per_second = 4_000_000
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1_200_000))
    options = settings(hub, connections=3, segment_bytes=128 * 1024, min_split_bytes=100_000)
    assert run([hf_entry()], forge, options)["errors"] == []
    assert hub.peak_parallel(ranged_only=True) == 3


def test_https_download_trusts_the_ca_file_and_keeps_the_token_off_the_cdn(tmp_path, forge):
    tls = pytest.importorskip("lab.tls")
    cert, key = tls.issue_server_cert(["127.0.0.1"], tmp_path)
    with ModelHub(tls=(str(cert), str(key))) as server:
        server.state.tokens.add(TOKEN)
        source = real_model(tmp_path / "a", 300_000)
        server.add_hf_file("org/flux", "ae.safetensors", source, gated=True)
        server.state.granted.add(TOKEN)
        options = settings(server, ca_file=str(tls.CA_CERT))
        result = run([hf_entry()], forge, options)
        cdn = server.cdn_requests()
    assert options.hf_endpoint.startswith("https://")
    assert result["errors"] == []
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)
    assert cdn and not any(r["authorization"] for r in cdn)


def test_secrets_go_only_to_the_origin_they_were_given_for():
    home = ("https", "huggingface.co", None)
    secret = {"X-Mirror-Key": "k"}
    sent = outgoing_headers("https://huggingface.co/a/b", home, auth="hf_x", private_headers=secret)
    assert sent == {"User-Agent": USER_AGENT, "Authorization": "Bearer hf_x", "X-Mirror-Key": "k"}
    for elsewhere in (
        "https://cdn-lfs.huggingface.co/blob",  # another host
        "http://huggingface.co/a/b",  # another scheme
        "https://huggingface.co:8443/a/b",  # another port
    ):
        sent = outgoing_headers(
            elsewhere, home, headers={"Range": "bytes=0-"}, auth="hf_x", private_headers=secret
        )
        assert sent == {"User-Agent": USER_AGENT, "Range": "bytes=0-"}, elsewhere
