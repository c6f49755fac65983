"""Forge Fleet lab stand-in for Forge's modules/launch_utils.py (tests/DOUBLES.md).

Written from Forge's launch contract, not from its code. As Forge does:
- the COMMANDLINE_ARGS environment variable is appended to sys.argv (Forge's
  modules/paths_internal.py), and ``args`` is parsed leniently here (unknown flags pass;
  modules/shared_cmd_options.py refuses them when the UI starts);
- ``prepare_environment()`` installs TORCH_COMMAND, then CLIP_PACKAGE and OPENCLIP_PACKAGE
  when they are set (Forge's defaults are GitHub archives the lab cannot reach, so unset
  means skipped), then REQS_FILE, with the python it runs on, from whatever package index
  pip is configured for, and leaves gradio's package folder (site-packages/gradio) in the
  env; a failed step raises Forge's RuntimeError ("Couldn't install <what>."); it prints
  "Exiting because of --exit argument" last, only when every step passed;
- ``start()`` prints "Launching Web UI with arguments: <sys.argv[1:], shell-quoted>", then
  parses the options strictly (modules/shared_cmd_options.py) and serves the stand-in UI.
"""

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import sysconfig
from importlib import metadata

sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))

DEFAULT_TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu121"


def make_parser():
    parser = argparse.ArgumentParser()
    add = parser.add_argument
    # modules/cmd_args.py (the flags Forge Fleet and the lab use)
    add("-f", action="store_true", help=argparse.SUPPRESS)
    add("--exit", action="store_true", help="terminate after installation")
    add("--data-dir", type=str, default=os.path.dirname(os.path.realpath(__file__)))
    add("--models-dir", type=str, default=None)
    add("--ckpt-dir", type=str, default=None)
    add("--vae-dir", type=str, default=None)
    add("--text-encoder-dir", type=str, default=None)
    add("--share", action="store_true")
    add("--listen", action="store_true")
    add("--port", type=int, default=None)
    add("--server-name", type=str, default=None)
    add("--gradio-auth", type=str, default=None)
    add("--gradio-auth-path", type=str, default=None)
    add("--api", action="store_true")
    add("--api-auth", type=str, default=None)
    add("--enable-insecure-extension-access", action="store_true")
    add("--allow-code", action="store_true")
    add("--hide-ui-dir-config", action="store_true")
    add("--xformers", action="store_true")
    add("--skip-torch-cuda-test", action="store_true")
    add("--skip-prepare-environment", action="store_true")
    add("--skip-python-version-check", action="store_true")
    add("--skip-install", action="store_true")
    add("--reinstall-torch", action="store_true")
    # extensions-builtin/sd_forge_lora/preload.py
    add("--lora-dir", type=str, default=None)
    # backend/args.py
    add("--cuda-malloc", action="store_true")
    return parser


def run(command, desc, errdesc):
    """Run a command, its output streaming through; raise Forge's error when it fails."""
    print(desc, flush=True)
    result = subprocess.run(command, shell=True, env=os.environ, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{errdesc}.\nCommand: {command}\nError code: {result.returncode}")


def is_installed(name):
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def requirements_met(path):
    """True when every `name==version` line of the file is installed at that version."""
    with open(path, encoding="utf8") as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, _, version = line.partition("==")
            try:
                if version and metadata.version(name.strip()) != version.strip():
                    return False
            except metadata.PackageNotFoundError:
                return False
    return True


def check_python_version(args):
    major, minor = sys.version_info[:2]
    if (major, minor) == (3, 10) or args.skip_python_version_check:
        return
    if major == 3 and 7 <= minor <= 11:
        print(
            "INCOMPATIBLE PYTHON VERSION\n"
            "This program is tested with 3.10.6 Python, but you have "
            f"{major}.{minor}.{sys.version_info[2]}.\n"
            'If you encounter an error with "RuntimeError: Couldn\'t install torch." message,\n'
            "or any other error regarding unsuccessful package (library) installation,\n"
            "please downgrade (or upgrade) to the latest version of 3.10 Python",
            flush=True,
        )
        return
    raise SystemExit(f"Python {major}.{minor} is not supported; use Python 3.10")


def prepare_environment():
    # the sign for webui.sh to run launch.py again is consumed by the next preparation
    with contextlib.suppress(OSError):
        os.remove(os.path.join("tmp", "restart"))
    python = sys.executable
    torch_index_url = os.environ.get("TORCH_INDEX_URL", DEFAULT_TORCH_INDEX_URL)
    torch_command = os.environ.get(
        "TORCH_COMMAND",
        f"pip install torch==2.3.1 torchvision==0.18.1 --extra-index-url {torch_index_url}",
    )
    requirements_file = os.environ.get("REQS_FILE", "requirements_versions.txt")
    check_python_version(args)
    print(f"Python {sys.version}", flush=True)
    if args.reinstall_torch or not is_installed("torch") or not is_installed("torchvision"):
        run(
            f'"{python}" -m {torch_command}',
            "Installing torch and torchvision",
            "Couldn't install torch",
        )
    if not args.skip_torch_cuda_test:
        import torch  # noqa: PLC0415 - installed by this very preparation

        if not torch.cuda.is_available():
            raise RuntimeError(
                "Torch is not able to use GPU; add --skip-torch-cuda-test to COMMANDLINE_ARGS "
                "variable to disable this check"
            )
    if not os.path.isfile(requirements_file):
        here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
        requirements_file = os.path.join(here, requirements_file)
    for package, variable in (("clip", "CLIP_PACKAGE"), ("open_clip", "OPENCLIP_PACKAGE")):
        source = os.environ.get(variable, "")
        if source and not is_installed(package) and not args.skip_install:
            run(
                f'"{python}" -m pip install {source} --prefer-binary',
                f"Installing {package}",
                f"Couldn't install {package}",
            )
    if not requirements_met(requirements_file) and not args.skip_install:
        run(
            f'"{python}" -m pip install -r "{requirements_file}" --prefer-binary',
            "Installing requirements",
            "Couldn't install requirements",
        )
    # gradio is in Forge's requirements: its package folder, where gradio keeps its tunnel
    # binary (the stand-in's serving half reads it there)
    os.makedirs(os.path.join(sysconfig.get_paths()["purelib"], "gradio"), exist_ok=True)
    if "--exit" in sys.argv:
        print("Exiting because of --exit argument", flush=True)
        raise SystemExit(0)


args, _ = make_parser().parse_known_args(sys.argv[1:])


def start():
    print(f"Launching Web UI with arguments: {shlex.join(sys.argv[1:])}", flush=True)
    # as Forge: the options are parsed (strictly) only when the UI starts
    from modules import shared_cmd_options  # noqa: PLC0415
    from modules.standin_webui import serve  # noqa: PLC0415

    serve(shared_cmd_options.cmd_opts)
