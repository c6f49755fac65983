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


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../../../etc/x", "a '..' segment"),
        ("..", "a '..' segment"),
        ("vae/%2e%2e/%2E%2E/x", "a '..' segment"),
        ("./ae.safetensors", "a '.' segment"),
        ("/etc/passwd", "absolute"),
        ("vae//ae.safetensors", "an empty segment"),
        ("vae/", "an empty segment"),
        ("", "empty"),
    ],
)
def test_huggingface_file_must_stay_inside_the_repository(path, why):
    [problem] = problems_of([dict(HF_VAE, file=path)])
    assert problem.startswith("models_catalog[0] (")
    assert f"file {path!r} must be a path inside the repository" in problem
    assert why in problem
    assert "give the file's path from the repository's 'Files' tab" in problem


def test_huggingface_file_in_folders_of_the_repository_is_accepted():
    [entry] = normalize_catalog([dict(HF_VAE, file="split_files/vae/ae.v1.safetensors")])
    assert entry["destination"] == "models/VAE/ae.v1.safetensors"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://mirror.example/loras/../../x.safetensors", "a '..' segment"),
        ("https://mirror.example/loras/%2E%2E/x.safetensors", "a '..' segment"),
        ("https://mirror.example/loras/./x.safetensors", "a '.' segment"),
        ("https://mirror.example//x.safetensors", "an empty segment"),
        ("https://mirror.example/loras/..", "a '..' segment"),
    ],
)
def test_url_path_must_name_the_file_directly(url, why):
    [problem] = problems_of([{"source": "url", "url": url, "kind": "lora"}])
    assert "the URL's path" in problem and "must name the file directly" in problem
    assert why in problem
    assert "give the address of the file itself" in problem


def test_a_catalog_written_as_a_mapping_says_what_a_catalog_looks_like():
    catalog = {"flux_vae": {"source": "huggingface", "repo": "a/b", "file": "ae.safetensors"}}
    [problem] = problems_of(catalog)
    assert problem.startswith(
        "models_catalog must be a list of entries, one per file, got a mapping (keys flux_vae)"
    )
    assert "a line starting with '-'" in problem and "becomes its 'name'" in problem
    assert "for example: models_catalog: [{source: huggingface, repo: " in problem


def test_a_catalog_written_as_a_string_says_what_a_catalog_looks_like():
    [problem] = problems_of("flux1-dev.safetensors")
    assert problem.startswith("models_catalog must be a list of entries, one per file, got a str")
    assert "for example: models_catalog: [{source: huggingface" in problem


def test_an_entry_that_is_not_a_mapping_is_shown_with_an_example():
    [problem] = problems_of(["ae.safetensors"])
    assert problem.startswith("models_catalog[0] ('ae.safetensors') must be a mapping of keys")
    assert "for example: {source: huggingface" in problem


@pytest.mark.parametrize(
    ("entry", "named", "says"),
    [
        (
            {"source": "hf", "repo": "a/b", "file": "x.safetensors", "kind": "vae"},
            "models_catalog[0] (source 'hf', repo 'a/b', file 'x.safetensors')",
            "source must be one of huggingface, civitai, url, got 'hf'",
        ),
        (
            {"repo": "a/b", "file": "x.safetensors", "kind": "vae"},
            "models_catalog[0] (repo 'a/b', file 'x.safetensors')",
            "add 'source' (huggingface, civitai, url)",
        ),
        (
            {"source": "huggingface", "repo": "a/b", "kind": "vae"},
            "models_catalog[0] (source 'huggingface', repo 'a/b')",
            "missing 'file'",
        ),
        (
            {"source": "civitai"},
            "models_catalog[0] (source 'civitai')",
            "give exactly one of model_id or version_id",
        ),
        (
            {"source": "url", "kind": "lora"},
            "models_catalog[0] (source 'url')",
            "missing 'url'",
        ),
        (
            {"kind": "vae"},
            "models_catalog[0] (keys kind)",
            "add 'source'",
        ),
    ],
)
def test_an_entry_without_a_name_is_named_by_what_it_says(entry, named, says):
    problems = problems_of([entry])
    assert all(p.startswith(named + ": ") for p in problems), problems
    assert any(says in p for p in problems), problems


def test_a_url_entry_is_named_without_its_credentials_or_query():
    entry = {"source": "url", "url": "https://u:pw@mirror.example/x?sig=s3cret", "kind": "bad"}
    [problem] = problems_of([entry])
    assert problem.startswith("models_catalog[0] (https://mirror.example/x): kind must be")
    assert "pw" not in problem and "s3cret" not in problem


def test_header_values_are_found_in_a_catalog_written_as_a_mapping():
    catalog = {"mirror": {"source": "url", "url": "https://a/x", "headers": {"A": "Bearer s2"}}}
    assert header_values(catalog) == {"Bearer s2"}
