"""One vocabulary: the catalog, the downloader and the compatibility check agree on kinds,
families and Forge folders because they import them from one module."""

from __future__ import annotations

from forge_fleet import catalog, http_download, model_compat, model_inspect, vocabulary


def test_every_kind_has_one_folder_and_every_folder_check_knows_it():
    for kind, folder in vocabulary.KIND_DIRS.items():
        assert kind in model_compat.FOLDER_ROLES[folder], (kind, folder)
        assert kind in model_compat.KIND_ROLES, kind
    assert set(model_compat.FOLDER_ROLES) == set(vocabulary.KIND_DIRS.values())


def test_upscalers_land_in_and_are_found_in_models_esrgan():
    assert vocabulary.KIND_DIRS["upscaler"] == "models/ESRGAN"
    assert model_compat.FOLDER_ROLES["models/ESRGAN"] == ("upscaler",)
    assert catalog.CIVITAI_TYPE_KINDS["Upscaler"] == "upscaler"


def test_a_folder_of_two_kinds_declares_its_first():
    assert vocabulary.folder_kinds()["models/Stable-diffusion"] == ("checkpoint", "diffusion_model")


def test_families_and_folders_are_the_same_objects_everywhere():
    assert catalog.FAMILIES is model_inspect.FAMILIES is vocabulary.FAMILIES
    assert catalog.KIND_DIRS is http_download.KIND_DIRS is vocabulary.KIND_DIRS
