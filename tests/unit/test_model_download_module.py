"""model_download through ansible-playbook -vvv on localhost: results, check mode, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from lab.paths import REPO_ROOT
from tests.doubles.model_hub import ModelHub
from tests.unit.test_http_download import KEY, TOKEN, real_model


def playbook(tmp_path: Path, hub: ModelHub, forge: Path, *args: str) -> tuple[int, str, dict]:
    entries = [
        {
            "source": "huggingface",
            "repo": "org/flux",
            "file": "ae.safetensors",
            "revision": "main",
            "kind": "vae",
            "label": "models_catalog[0] (org/flux/ae.safetensors)",
        },
        {"source": "civitai", "version_id": 42, "label": "models_catalog[1] (civitai version 42)"},
    ]
    task = {
        "model_download": {
            "forge_dir": str(forge),
            "entries": entries,
            "huggingface_token": "{{ hf_token }}",
            "civitai_api_key": "{{ civitai_key }}",
            "huggingface_endpoint": hub.api_url,
            "civitai_endpoint": hub.api_url,
        },
        "register": "result",
    }
    show = {
        "ansible.builtin.copy": {
            "content": "{{ result | to_json }}",
            "dest": str(tmp_path / "result.json"),
            "mode": "0600",
        },
        "check_mode": False,
    }
    book = tmp_path / "play.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {"hf_token": TOKEN, "civitai_key": KEY},
                    "tasks": [task, show],
                }
            ]
        )
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "NO_COLOR": "1"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-vvv",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(book),
            *args,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads((tmp_path / "result.json").read_text())
    return done.returncode, done.stdout + done.stderr, result


def test_module_downloads_reports_and_never_shows_a_secret_at_vvv(tmp_path):
    forge = tmp_path / "forge"
    with ModelHub() as hub:
        hub.state.tokens.add(TOKEN)
        hub.state.civitai_keys.add(KEY)
        hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "ae", 20_000))
        hub.add_civitai_version(
            42,
            4,
            real_model(tmp_path / "l", 5000, seed=3),
            name="style.safetensors",
            restricted=True,
        )
        rc, output, result = playbook(tmp_path, hub, forge, "--check")
        assert rc == 0, output[-3000:]
        assert [f["action"] for f in result["files"]] == ["download", "download"]
        assert result["bytes_to_fetch"] > 20_000
        assert not (forge / "models").exists()
        rc, output, result = playbook(tmp_path, hub, forge)
        assert rc == 0, output[-3000:]
        assert [f["action"] for f in result["files"]] == ["downloaded", "downloaded"]
        assert result["changed"] is True
        rc, again, result = playbook(tmp_path, hub, forge)
        assert [f["action"] for f in result["files"]] == ["present", "present"]
        assert result["changed"] is False
    for text in (output, again, (tmp_path / "result.json").read_text()):
        assert TOKEN not in text
        assert KEY not in text
    assert (forge / "models/Lora/style.safetensors").exists()
