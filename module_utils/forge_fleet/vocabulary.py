"""The words every part of Forge Fleet shares, defined once: model families, the kinds of
file a catalog names, and the Forge folder each kind lives in.

The catalog check, the downloader (where a file lands), the inspector (which family the
weights say) and the compatibility check (what a folder may hold) all import from here.
Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

# Base-model families the inspector tells apart and a catalog may declare (base_model).
FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner", "sd3", "flux_dev", "flux_schnell")

# Forge's folder for each kind of file, relative to the Forge checkout.
KIND_DIRS: dict[str, str] = {
    "checkpoint": "models/Stable-diffusion",
    "diffusion_model": "models/Stable-diffusion",
    "vae": "models/VAE",
    "text_encoder": "models/text_encoder",
    "lora": "models/Lora",
    "embedding": "embeddings",
    "controlnet": "models/ControlNet",
    "upscaler": "models/ESRGAN",
}


def folder_kinds() -> dict[str, tuple[str, ...]]:
    """Each Forge folder and the kinds it holds, in KIND_DIRS order (its first kind is what
    a file found there is declared to be)."""
    folders: dict[str, tuple[str, ...]] = {}
    for kind, folder in KIND_DIRS.items():
        folders[folder] = (*folders.get(folder, ()), kind)
    return folders
