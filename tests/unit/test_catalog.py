"""The model catalog is checked, whole, before any byte moves."""

from __future__ import annotations

import pytest

from forge_fleet.catalog import BUNDLES, CatalogError, header_values, normalize_catalog

HF_VAE = {"source": "huggingface", "repo": "a/b", "file": "vae/ae.safetensors", "kind": "vae"}


def problems_of(entries, bundles=None) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        normalize_catalog(entries, bundles)
    return caught.value.problems


def test_huggingface_entry_routes_by_kind_to_the_forge_folder():
    [entry] = normalize_catalog([HF_VAE])
    assert entry["destination"] == "models/VAE/ae.safetensors"
    assert entry["revision"] == "main"


@pytest.mark.parametrize(
    ("kind", "folder"),
    [
        ("checkpoint", "models/Stable-diffusion"),
        ("diffusion_model", "models/Stable-diffusion"),
        ("text_encoder", "models/text_encoder"),
        ("lora", "models/Lora"),
        ("embedding", "embeddings"),
        ("controlnet", "models/ControlNet"),
        ("upscaler", "models/ESRGAN"),
    ],
)
def test_each_kind_lands_in_its_forge_folder(kind, folder):
    [entry] = normalize_catalog([dict(HF_VAE, kind=kind)])
    assert entry["destination"] == f"{folder}/ae.safetensors"


def test_filename_overrides_the_upstream_name():
    [entry] = normalize_catalog([dict(HF_VAE, filename="flux-ae.safetensors")])
    assert entry["destination"] == "models/VAE/flux-ae.safetensors"


def test_civitai_destination_waits_for_the_api_answer():
    [entry] = normalize_catalog([{"source": "civitai", "version_id": 128713}])
    assert entry["destination"] is None


def test_unknown_key_is_named_with_its_entry_and_the_allowed_keys():
    [problem] = problems_of([dict(HF_VAE, revison="main")])
    assert problem.startswith("models_catalog[0] (a/b/vae/ae.safetensors): unknown key 'revison'")
    assert "revision" in problem


def test_every_problem_is_reported_at_once():
    problems = problems_of(
        [
            {"source": "huggingface", "repo": "a/b", "kind": "vae"},
            {"source": "ftp", "url": "ftp://x"},
            {"source": "civitai", "model_id": 1, "version_id": 2, "precision": "fp64"},
        ]
    )
    assert len(problems) == 4
    assert "models_catalog[0]" in problems[0] and "missing 'file'" in problems[0]
    assert "models_catalog[1]" in problems[1] and "source must be one of" in problems[1]
    assert any("exactly one of model_id or version_id" in p for p in problems)
    assert any("precision must be one of" in p for p in problems)


def test_duplicate_destinations_name_both_entries():
    [problem] = problems_of([HF_VAE, dict(HF_VAE, repo="c/d")])
    assert "models_catalog[1] (c/d/vae/ae.safetensors)" in problem
    assert "models_catalog[0] (a/b/vae/ae.safetensors)" in problem
    assert "models/VAE/ae.safetensors" in problem


def test_plain_http_urls_are_refused():
    [problem] = problems_of([{"source": "url", "url": "http://x/y.safetensors", "kind": "lora"}])
    assert "https://" in problem


@pytest.mark.parametrize("name", ["../x.safetensors", "sub/x.safetensors", ".hidden"])
def test_filenames_cannot_leave_the_forge_folder(name):
    [problem] = problems_of([dict(HF_VAE, filename=name)])
    assert "plain file name" in problem


def test_huggingface_and_url_entries_need_a_kind():
    [problem] = problems_of([{"source": "huggingface", "repo": "a/b", "file": "x.safetensors"}])
    assert "add 'kind'" in problem


def test_malformed_sha256_is_refused():
    [problem] = problems_of([dict(HF_VAE, sha256="abc")])
    assert "64 hexadecimal digits" in problem


def test_bundle_expands_to_its_files_in_forge_folders():
    entries = normalize_catalog([], ["flux1_dev_fp8"])
    assert [e["destination"] for e in entries] == [
        "models/Stable-diffusion/flux1-dev-fp8.safetensors",
        "models/VAE/ae.safetensors",
        "models/text_encoder/clip_l.safetensors",
        "models/text_encoder/t5xxl_fp8_e4m3fn.safetensors",
    ]
    assert entries[0]["label"].startswith("models_bundles[0] (bundle flux1_dev_fp8:")


def test_unknown_bundle_lists_the_known_ones():
    [problem] = problems_of([], ["flux"])
    assert "unknown bundle 'flux'" in problem
    assert all(name in problem for name in BUNDLES)


def test_entry_duplicating_a_bundle_file_is_caught():
    clash = {"source": "url", "url": "https://x/ae.safetensors", "kind": "vae"}
    [problem] = problems_of([clash], ["flux1_dev_fp8"])
    assert "both write models/VAE/ae.safetensors" in problem


def test_header_values_are_found_in_any_catalog_even_a_malformed_one():
    catalog = [
        {"source": "url", "url": "https://a/x", "headers": {"Authorization": "Bearer s1", "N": 7}},
        {"source": "url", "url": "https://a/y", "headers": {"X-Empty": "", "X-None": None}},
        {"source": "url", "url": "https://a/z", "headers": "not a mapping"},
        "not an entry",
    ]
    assert header_values(catalog) == {"Bearer s1", "7"}
    assert header_values("not a list") == set()
