"""The plan's bytes to fetch count a ``.partial`` only as far as the run will resume from it:
one the run discards (no resume record, or one for other bytes) is fetched again in full, one
longer than its recorded resume point from that point. The run itself then asks for exactly
the bytes the plan announced."""

from __future__ import annotations

import json

import pytest

from forge_fleet.download_partial import _Partial
from forge_fleet.http_download import Settings, check_disk, execute, make_plan
from tests.doubles.model_hub import ModelHub
from tests.fixtures.credentials import TOKEN
from tests.fixtures.models import real_model, sha

TARGET = "models/VAE/ae.safetensors"
ENTRY = {
    "source": "huggingface",
    "repo": "org/flux",
    "file": "ae.safetensors",
    "revision": "main",
    "kind": "vae",
    "label": "models_catalog[0] (org/flux/ae.safetensors)",
}


@pytest.fixture
def source(tmp_path):
    return real_model(tmp_path / "ae", 200_000)


@pytest.fixture
def hub(source):
    with ModelHub() as server:
        server.state.tokens.add(TOKEN)
        server.add_hf_file("org/flux", "ae.safetensors", source)
        yield server


@pytest.fixture
def forge(tmp_path):
    path = tmp_path / "forge"
    (path / "models/VAE").mkdir(parents=True)
    return path


def settings(hub):
    return Settings(hf_endpoint=hub.api_url, hf_token=TOKEN, retries=0, backoff=0.01, connections=1)


def leave_partial(hub, forge, source, *, kept, prefix, sha256=None):
    """A partial file of ``kept`` bytes (the source's own), with a resume record of
    ``prefix`` bytes (none when None) for the expected sha256 or ``sha256``."""
    [item] = make_plan([ENTRY], str(forge), settings(hub))
    with open(source, "rb") as handle:
        (forge / (TARGET + ".partial")).write_bytes(handle.read(kept))
    if prefix is not None:
        partial = _Partial(item, str(forge / TARGET))
        partial.save_state(prefix)
        if sha256 is not None:
            state = json.loads((forge / (TARGET + ".partial.json")).read_text())
            state["sha256"] = sha256
            (forge / (TARGET + ".partial.json")).write_text(json.dumps(state))


def plan_then_run(hub, forge, source) -> tuple[int, str]:
    """The plan's bytes to fetch, and the Range of the run's request for the file."""
    plan = make_plan([ENTRY], str(forge), settings(hub))
    check_disk(plan, str(forge))
    hub.state.log.clear()
    result = execute(plan, str(forge), settings(hub))
    assert result["errors"] == []
    assert sha(forge / TARGET) == sha(source)
    [request] = hub.cdn_requests()
    return plan[0].bytes_to_fetch, request["range"] or ""


def test_a_partial_the_run_resumes_is_not_fetched_again(hub, forge, source):
    leave_partial(hub, forge, source, kept=80_000, prefix=80_000)
    to_fetch, asked = plan_then_run(hub, forge, source)
    assert to_fetch == source.stat().st_size - 80_000
    assert asked == "bytes=80000-"


def test_a_partial_without_a_resume_record_is_fetched_again_in_full(hub, forge, source):
    leave_partial(hub, forge, source, kept=80_000, prefix=None)
    to_fetch, asked = plan_then_run(hub, forge, source)
    assert to_fetch == source.stat().st_size
    assert asked == ""


def test_a_partial_of_other_bytes_is_fetched_again_in_full(hub, forge, source):
    leave_partial(hub, forge, source, kept=80_000, prefix=80_000, sha256="0" * 64)
    to_fetch, asked = plan_then_run(hub, forge, source)
    assert to_fetch == source.stat().st_size
    assert asked == ""


def test_a_partial_longer_than_its_resume_point_counts_from_that_point(hub, forge, source):
    leave_partial(hub, forge, source, kept=120_000, prefix=50_000)
    to_fetch, asked = plan_then_run(hub, forge, source)
    assert to_fetch == source.stat().st_size - 50_000
    assert asked == "bytes=50000-"


def test_the_plan_reads_the_partial_and_changes_nothing(hub, forge, source):
    leave_partial(hub, forge, source, kept=120_000, prefix=50_000, sha256="0" * 64)
    before = {p.name: p.read_bytes() for p in (forge / "models/VAE").iterdir()}
    make_plan([ENTRY], str(forge), settings(hub))
    assert {p.name: p.read_bytes() for p in (forge / "models/VAE").iterdir()} == before
