"""model_download through ansible-playbook -vvv on localhost: results, check mode, no secrets.

One stand-in and one sequence of real playbook runs (check, download, re-run, a touched file,
a corrupted file) per module; each test asserts one behaviour on what those runs left.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from forge_fleet.http_download import human_bytes
from lab.tls import CA_CERT, issue_server_cert
from tests.doubles.model_hub import ModelHub
from tests.fixtures.credentials import KEY, TOKEN
from tests.fixtures.models import real_model
from tests.harness.playbook import run_local_playbook

MIRROR_SECRET = "mirror-header-secret-0123456789"


def entries(hub: ModelHub) -> list[dict]:
    """A catalog as an operator writes it (the module checks and labels it itself)."""
    return [
        {"source": "huggingface", "repo": "org/flux", "file": "ae.safetensors", "kind": "vae"},
        {"source": "civitai", "version_id": 42},
        {
            "source": "url",
            "url": f"{hub.api_url}/api/download/models/43",
            "headers": {"Authorization": f"Bearer {MIRROR_SECRET}"},
            "kind": "lora",
            "filename": "mirror.safetensors",
        },
    ]


CORRUPT = "import sys; f = open(sys.argv[1], 'r+b'); f.seek(1000); f.write(b'broken'); f.close()"


def download_task(hub: ModelHub, dest: Path, register: str, **extra) -> dict:
    args = {
        "dest": str(dest),
        "catalog": entries(hub),
        "huggingface_token": "{{ hf_token }}",
        "civitai_api_key": "{{ civitai_key }}",
        "huggingface_endpoint": hub.api_url,
        "civitai_endpoint": hub.api_url,
        "ca_file": str(CA_CERT),
    }
    task = {"name": f"Run model_download ({register})", "register": register}
    task.update(
        {key: value for key, value in extra.items() if key in ("check_mode", "ignore_errors")}
    )
    args.update({key: value for key, value in extra.items() if key not in task})
    return {"model_download": args, **task}


def play(tmp_path: Path, hub: ModelHub, forge: Path) -> list[dict]:
    """check -> download -> re-run -> touched (same bytes) -> corrupted (check, run) ->
    a wrong catalog sha256 in another folder."""
    vae = forge / "models/VAE/ae.safetensors"
    wrong = entries(hub)[:1]
    wrong[0]["sha256"] = "0" * 64
    tasks = [
        download_task(hub, forge, "check", check_mode=True, compat=True),
        {
            "name": "Look for the Forge folder after the check",
            "ansible.builtin.stat": {"path": str(forge)},
            "register": "after_check",
        },
        download_task(hub, forge, "download", progress_file=str(tmp_path / "progress.json")),
        download_task(hub, forge, "rerun"),
        download_task(hub, forge, "in_place_check", check_mode=True, compat=True),
        {
            "name": "Check the same files with model_compat",
            "model_compat": {
                "files": "{{ in_place_check.declared }}",
                "forge_dir": str(forge),
                "manifest": True,
            },
            "register": "in_place_compat",
            "ignore_errors": True,  # the stand-in's LoRAs fit no model: findings either way
        },
        {
            "name": "Touch the VAE (same bytes, new mtime)",
            "ansible.builtin.file": {
                "path": str(vae),
                "state": "touch",
                "modification_time": "200001010000.00",
            },
        },
        download_task(hub, forge, "touched_plan", check_mode=True, compat=True, hash_changed=False),
        download_task(hub, forge, "touched_check", check_mode=True, compat=True),
        download_task(hub, forge, "touched"),
        {
            "name": "Corrupt the VAE (same size)",
            "ansible.builtin.command": {"argv": [sys.executable, "-c", CORRUPT, str(vae)]},
        },
        download_task(hub, forge, "corrupted_check", check_mode=True, compat=True),
        download_task(hub, forge, "corrupted"),
        download_task(hub, tmp_path / "other", "failing", ignore_errors=True),
        download_task(
            hub,
            tmp_path / "other",
            "missing",
            ignore_errors=True,
            progress_file=str(tmp_path / "missing-progress.json"),
        ),
        download_task(hub, tmp_path / "bad", "bad_catalog", ignore_errors=True),
    ]
    tasks[-1]["model_download"]["catalog"] = [
        {
            "source": "url",
            "url": "http://mirror.example/x.safetensors",
            "kind": "lora",
            "colour": "red",
            "headers": {"Authorization": f"Bearer {MIRROR_SECRET}"},
        }
    ]
    tasks[-3]["model_download"]["catalog"] = wrong
    missing = entries(hub)[:1]
    missing[0]["repo"] = "org/none"
    tasks[-2]["model_download"]["catalog"] = missing
    names = [
        "check",
        "download",
        "rerun",
        "in_place_check",
        "in_place_compat",
        "touched_plan",
        "touched_check",
        "touched",
        "corrupted_check",
        "corrupted",
        "failing",
    ]
    names += ["missing", "bad_catalog", "after_check"]
    show = {
        "name": "Save the results",
        "ansible.builtin.copy": {
            "content": "{{ " + "{" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
            "dest": str(tmp_path / "results.json"),
            "mode": "0600",
        },
    }
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"hf_token": TOKEN, "civitai_key": KEY},
            "tasks": [*tasks, show],
        }
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("module")
    forge = tmp_path / "forge"
    cert, key = issue_server_cert(["127.0.0.1"], tmp_path / "tls")
    with ModelHub(tls=(str(cert), str(key))) as hub:
        hub.state.tokens.add(TOKEN)
        hub.state.civitai_keys.update({KEY, MIRROR_SECRET})
        ae = real_model(tmp_path / "ae", 20_000)
        hub.add_hf_file("org/flux", "ae.safetensors", ae)
        hub.add_civitai_version(
            42, 4, real_model(tmp_path / "l", 5000, seed=3), name="style.safetensors"
        )
        hub.add_civitai_version(
            43, 5, real_model(tmp_path / "m", 3000, seed=4), name="m.safetensors", restricted=True
        )
        done = run_local_playbook(tmp_path, play(tmp_path, hub, forge))
        assert done.ok, done.explain()
        results = json.loads((tmp_path / "results.json").read_text())
        return {
            **results,
            "output": done.stdout,
            "forge": forge,
            "ae": ae,
            "progress": (tmp_path / "progress.json").read_text(),
            "missing_progress": (tmp_path / "missing-progress.json").read_text(),
            "cdn": hub.cdn_requests(),
            "bad_dir": tmp_path / "bad",
        }


def actions(result: dict) -> list[str]:
    return [f["action"] for f in result["files"]]


def test_check_mode_reports_what_and_how_many_bytes(runs):
    result = runs["check"]
    assert actions(result) == ["download", "download", "download"]
    assert result["bytes_to_fetch"] >= 20_000 + 5000
    assert result["totals"]["download"] == 3
    assert result["changed"] is True


def test_check_mode_changes_nothing(runs):
    assert runs["after_check"]["stat"]["exists"] is False  # not even the Forge folder


def test_download_places_every_file_and_reports_it(runs):
    result = runs["download"]
    assert result["changed"] is True
    assert result["totals"]["downloaded"] == 3
    vae = next(f for f in result["files"] if f["destination"] == "models/VAE/ae.safetensors")
    assert (vae["kind"], vae["size"]) == ("vae", os.path.getsize(runs["ae"]))
    assert vae["sha256"] == hashlib.sha256(runs["ae"].read_bytes()).hexdigest()
    assert (runs["forge"] / "models/Lora/style.safetensors").exists()
    assert (runs["forge"] / "models/Lora/mirror.safetensors").exists()


def test_progress_file_ends_finished_with_all_bytes(runs):
    progress = json.loads(runs["progress"])
    assert progress["finished"] is True
    assert progress["bytes_done"] == progress["bytes_total"] > 20_000


def test_rerun_is_unchanged(runs):
    assert actions(runs["rerun"]) == ["present", "present", "present"]
    assert runs["rerun"]["changed"] is False


def test_present_files_are_never_fetched_again(runs):
    blobs = [r["path"] for r in runs["cdn"]]
    # three downloads, the repair of the corrupted VAE, the wrong-hash attempt elsewhere
    assert len(blobs) == 5


def test_touched_file_is_reverified_without_a_change(runs):
    assert sorted(actions(runs["touched"])) == ["present", "present", "verified"]
    assert runs["touched"]["changed"] is False


def test_check_mode_hashes_a_changed_file_and_reports_its_repair_by_name(runs):
    assert sorted(actions(runs["corrupted_check"])) == ["present", "present", "repair"]
    assert runs["corrupted_check"]["changed"] is True
    size = human_bytes(os.path.getsize(runs["ae"]))
    assert runs["corrupted_check"]["changes"] == [
        f"repair models/VAE/ae.safetensors ({size} to fetch)"
    ]


def test_check_mode_names_every_file_it_would_download(runs):
    changes = runs["check"]["changes"]
    size = human_bytes(os.path.getsize(runs["ae"]))
    assert changes[0] == f"download models/VAE/ae.safetensors ({size} to fetch)"
    assert changes[1].startswith("download models/Lora/style.safetensors (")
    assert changes[1].endswith(" KiB to fetch)")  # CivitAI's sizeKB
    assert changes[2] == "download models/Lora/mirror.safetensors (size unknown until it downloads)"
    assert "download models/VAE/ae.safetensors" in runs["check"]["msg"]


def test_check_mode_on_a_touched_but_intact_file_reports_no_change(runs):
    assert sorted(actions(runs["touched_check"])) == ["present", "present", "verify"]
    assert runs["touched_check"]["changed"] is False


def test_corrupted_file_is_repaired(runs):
    assert sorted(actions(runs["corrupted"])) == ["present", "present", "repaired"]
    assert runs["corrupted"]["changed"] is True
    assert (runs["forge"] / "models/VAE/ae.safetensors").read_bytes() == runs["ae"].read_bytes()


def test_failed_download_fails_the_task_with_a_clear_message(runs):
    result = runs["failing"]
    assert result["failed"] is True
    assert "1 model download(s) failed" in result["msg"]
    assert "does not match (sha256" in result["msg"]


@pytest.mark.parametrize("secret", [TOKEN, KEY, MIRROR_SECRET])
def test_no_secret_appears_in_any_output_at_vvv(runs, secret):
    assert "ESTABLISH LOCAL CONNECTION" in runs["output"]  # really at -vvv
    assert "invocation" in runs["output"]
    manifest = (runs["forge"] / "models/.forge-fleet-manifest.json").read_text()
    for text in (runs["output"], runs["progress"], manifest):
        assert secret not in text


def test_a_run_failing_before_any_download_names_what_is_missing(runs):
    result = runs["missing"]
    assert result["failed"] is True
    assert "no such repository: org/none" in result["msg"]


def test_a_run_failing_before_any_download_leaves_its_progress_file_finished(runs):
    progress = json.loads(runs["missing_progress"])
    assert progress["finished"] is True
    assert progress["result"]["errors"] == 1


def test_a_bad_catalog_fails_naming_every_problem_and_touches_nothing(runs):
    result = runs["bad_catalog"]
    assert result["failed"] is True
    assert "The model catalog has 2 problem(s), nothing downloaded" in result["msg"]
    assert "unknown key 'colour'" in result["msg"]
    assert "url must start with https://" in result["msg"]
    assert not runs["bad_dir"].exists()


def test_the_result_declares_each_file_for_the_compatibility_check(runs):
    """The models role hands ``declared`` to model_compat as it is (no Jinja rebuilds it)."""
    forge = str(runs["forge"])
    expected = [
        {"path": f"{forge}/models/VAE/ae.safetensors", "kind": "vae", "family": None},
        {"path": f"{forge}/models/Lora/style.safetensors", "kind": "lora", "family": None},
        {"path": f"{forge}/models/Lora/mirror.safetensors", "kind": "lora", "family": None},
    ]
    assert runs["check"]["declared"] == expected
    assert runs["download"]["declared"] == expected


def test_a_plan_with_every_file_in_place_answers_the_compatibility_check(runs):
    """compat: the plan returns what model_compat returns for the same files (one run less)."""
    answer, compat = runs["in_place_check"]["compat"], runs["in_place_compat"]
    assert answer["files"] and answer["tree"]["files"]
    assert answer["tree"]["forge_dir"] == str(runs["forge"])
    assert "models/VAE/ae.safetensors" in answer["tree"]["manifest"]
    assert {k: answer[k] for k in ("files", "findings", "tree")} == {
        k: compat[k] for k in ("files", "findings", "tree")
    }
    # a hashed file whose bytes are right is in place too
    assert runs["touched_check"]["compat"] == answer


def test_a_plan_with_a_file_to_fetch_or_hash_leaves_the_check_to_model_compat(runs):
    """No answer on bytes the real run may still replace: missing, corrupted, or not hashed."""
    for name in ("check", "corrupted_check", "touched_plan"):
        assert "compat" not in runs[name], name
    assert "verify" in actions(runs["touched_plan"])
