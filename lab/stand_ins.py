"""Local stand-ins for the internet services a site.yml run needs, for `forge-lab site`.

Serves a small demo catalog (an SD 1.5-layout checkpoint and an SD 1.5 LoRA built from real
tensor layouts) from the Hugging Face / CivitAI stand-in over HTTPS on the lab network's
gateway, with credentials made up for this run. The settings reach ansible-playbook through a
0600 extra-vars file, never the command line.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.doubles.model_hub import ModelHub
from tests.fixtures import models

from .paths import STATE_DIR
from .tls import issue_server_cert

CONTENT_DIR = STATE_DIR / "stand-ins"
DEMO_CATALOG = [
    {
        "source": "huggingface",
        "repo": "forge-lab/tiny-sd15",
        "file": "tiny-sd15.safetensors",
        "kind": "checkpoint",
        "base_model": "sd1",
    },
    {"source": "civitai", "version_id": 1001},
]


def _content() -> dict[str, Path]:
    CONTENT_DIR.mkdir(parents=True, exist_ok=True)
    files = {
        "checkpoint": CONTENT_DIR / "tiny-sd15.safetensors",
        "lora": CONTENT_DIR / "detail-tweaker.safetensors",
    }
    if not files["checkpoint"].exists():
        models.write_with_data(files["checkpoint"], models.tiny_checkpoint("sd1"))
    if not files["lora"].exists():
        models.write_with_data(files["lora"], models.kohya_lora("sd1"), seed=2)
    return files


@contextmanager
def running(gateway: str, vars_path: Path) -> Iterator[Path]:
    """Serve the stand-ins while the block runs; yields the extra-vars file for the playbook."""
    files = _content()
    cert, key = issue_server_cert([gateway], CONTENT_DIR / "tls")
    token, api_key = f"hf_{secrets.token_hex(16)}", secrets.token_hex(16)
    with ModelHub(gateway, tls=(str(cert), str(key))) as hub:
        hub.state.tokens.add(token)
        hub.state.granted.add(token)
        hub.state.civitai_keys.add(api_key)
        hub.add_hf_file("forge-lab/tiny-sd15", "tiny-sd15.safetensors", files["checkpoint"])
        hub.add_civitai_version(
            1001,
            100,
            files["lora"],
            name="detail-tweaker.safetensors",
            base_model="SD 1.5",
            restricted=True,
        )
        settings = {
            "models_catalog": DEMO_CATALOG,
            "models_huggingface_endpoint": hub.api_url,
            "models_civitai_endpoint": hub.api_url,
            "models_huggingface_token": token,
            "models_civitai_api_key": api_key,
        }
        fd = os.open(vars_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(settings, handle)
        try:
            yield vars_path
        finally:
            vars_path.unlink(missing_ok=True)
