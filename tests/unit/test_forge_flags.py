"""scripts/forge-flags reads the flags Forge accepts from its source, and the webui role's list
(__webui_forge_flags, the one webui_extra_args is checked against) is exactly what it reads
from the pinned Forge commit."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lab.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "forge-flags"
FORGE_BARE = "stable-diffusion-webui-forge.git"


def load_script():
    loader = importlib.machinery.SourceFileLoader("forge_flags", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


forge_flags = load_script()


def flags_in(source: str) -> set[str]:
    return forge_flags.flags_in_source(textwrap.dedent(source))


def write_checkout(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(source))
    return root


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


# --- the parser, on small sources ---------------------------------------------------------


def test_every_option_string_of_an_aliased_flag_is_a_flag():
    assert flags_in('parser.add_argument("-j", "--workers", type=int)') == {"-j", "--workers"}


def test_a_short_flag_such_as_f_is_a_flag():
    source = 'parser.add_argument("-f", action="store_true", help=argparse.SUPPRESS)'
    assert flags_in(source) == {"-f"}


def test_flags_added_inside_a_preload_function_are_found():
    source = """
        def preload(parser):
            parser.add_argument("--lora-dir", type=str, default=None)
    """
    assert flags_in(source) == {"--lora-dir"}


def test_flags_added_to_an_argument_group_are_found():
    source = """
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--unet-in-fp16", action="store_true")
    """
    assert flags_in(source) == {"--unet-in-fp16"}


def test_positional_arguments_and_keyword_values_are_not_flags():
    source = 'parser.add_argument("model", help="--not-a-flag", default="-x", metavar="-m")'
    assert flags_in(source) == set()


def test_strings_outside_add_argument_are_not_flags():
    source = 'print("--listen"); parser.set_defaults("--port"); parser.parse_args(["--api"])'
    assert flags_in(source) == set()


# --- a checkout --------------------------------------------------------------------------

SMALL_FORGE = {
    "backend/args.py": """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--gpu-device-id", type=int)
    """,
    "modules/cmd_args.py": """
        from backend.args import parser
        parser.add_argument("-f", action="store_true")
        parser.add_argument("--vae-path", type=str)
    """,
    "extensions-builtin/sd_forge_lora/preload.py": """
        def preload(parser):
            parser.add_argument("--lora-dir", type=str)
    """,
    "extensions-builtin/no_preload/scripts/tool.py": 'parser.add_argument("--not-read")\n',
    "modules/timer.py": 'parser.add_argument("--own-parser")\n',
}
SMALL_FORGE_FLAGS = ["-f", "--gpu-device-id", "--lora-dir", "--vae-path"]


def test_a_checkout_gives_the_flags_of_its_parser_files_short_ones_first(tmp_path):
    checkout = write_checkout(tmp_path, SMALL_FORGE)
    assert forge_flags.forge_flags(checkout) == SMALL_FORGE_FLAGS


def test_the_yaml_block_is_the_roles_flow_list():
    flags = [f"--flag-number-{index}" for index in range(20)]
    block = forge_flags.yaml_block(["-f", *flags])
    lines = block.splitlines()
    assert lines[0] == "__webui_forge_flags: ["
    assert lines[1].startswith("  -f, --flag-number-0, ")
    assert lines[-1] == "]"
    assert all(line.startswith("  --") and line.endswith(",") for line in lines[2:-1])
    assert max(len(line) for line in lines) <= forge_flags.YAML_WIDTH
    assert yaml.safe_load(block) == {"__webui_forge_flags": ["-f", *flags]}


def test_the_command_prints_one_flag_a_line(tmp_path):
    result = run(str(write_checkout(tmp_path, SMALL_FORGE)))
    assert (result.returncode, result.stdout) == (0, "".join(f"{f}\n" for f in SMALL_FORGE_FLAGS))


def test_the_command_prints_the_yaml_block(tmp_path):
    result = run("--yaml", str(write_checkout(tmp_path, SMALL_FORGE)))
    assert result.returncode == 0
    assert result.stdout == f"__webui_forge_flags: [\n  {', '.join(SMALL_FORGE_FLAGS)},\n]\n"


def test_a_folder_that_is_not_a_forge_checkout_is_refused(tmp_path):
    result = run(str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"not a Forge checkout: no {tmp_path}/backend/args.py" in result.stderr


# --- the role's list against the pinned Forge ---------------------------------------------


def read_yaml(path: str) -> dict:
    return yaml.safe_load((REPO_ROOT / path).read_text())


@pytest.fixture(scope="module")
def pinned_forge(tmp_path_factory) -> Path:
    """A checkout of the forge role's forge_version, cloned from the local upstream copy."""
    upstream = Path(os.environ.get("FORGE_UPSTREAM", REPO_ROOT.parent / "shared" / "upstream"))
    bare = upstream / FORGE_BARE
    if not bare.is_dir():
        pytest.skip(
            f"no Forge clone at {bare}: set FORGE_UPSTREAM to a folder holding {FORGE_BARE} "
            "(a clone of lllyasviel/stable-diffusion-webui-forge with the pinned commit)"
        )
    commit = read_yaml("roles/forge/defaults/main.yml")["forge_version"]
    checkout = tmp_path_factory.mktemp("forge") / "forge"
    clone = ["git", "clone", "-q", "--no-checkout", f"file://{bare}", str(checkout)]
    subprocess.run(clone, check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "-q", commit], check=True)
    return checkout


def test_the_roles_flag_list_is_the_one_derived_from_the_pinned_forge(pinned_forge):
    derived = forge_flags.forge_flags(pinned_forge)
    listed = read_yaml("roles/webui/vars/main.yml")["__webui_forge_flags"]
    missing, extra = sorted(set(derived) - set(listed)), sorted(set(listed) - set(derived))
    assert listed == derived, (
        "__webui_forge_flags in roles/webui/vars/main.yml is not the pinned Forge's list: "
        f"missing {missing}, not accepted by Forge {extra}"
        + ("" if missing or extra else " (same flags, out of order or repeated)")
        + ". Regenerate it: scripts/forge-flags --yaml <checkout of forge_version>"
    )
