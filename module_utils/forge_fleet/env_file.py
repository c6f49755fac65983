"""Forge's environment file: the variables Forge's launcher reads (webui.sh, launch.py and
the built-in extensions' installers), written once on the VM and read by both the
preparation (``forge_prepare``) and the systemd unit (``EnvironmentFile=``), so the two
always see the same values.

The format is the subset of systemd's EnvironmentFile that both sides parse alike: comment
lines starting with ``#``, and ``NAME="value"`` lines whose value escapes ``\\`` and ``"``
with a backslash. Values hold no newline.
"""

from __future__ import annotations

import re

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# user:password@ in a URL: the file is world-readable and Forge prints several of these
# variables on /internal/sysinfo, which answers without a login
_CREDENTIALS = re.compile(r"://[^/@\s]*@")
_LINE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$')

# Set by the forge role from its own settings (the variable to use instead), or never to
# be set (COMMANDLINE_ARGS is printed verbatim on /internal/sysinfo).
MANAGED = {
    "python_cmd": "the conda stage's environment (conda_env_name)",
    "venv_dir": "nothing: Forge runs in the conda environment, without a venv",
    "TORCH_COMMAND": "forge_torch_command",
    "TORCH_INDEX_URL": "forge_torch_index_base / forge_torch_cuda",
    "PIP_INDEX_URL": "forge_pip_index_url",
    "PIP_CERT": "forge_pip_cert",
    "COMMANDLINE_ARGS": "webui_extra_args (Forge prints COMMANDLINE_ARGS on /internal/sysinfo)",
    "LAUNCH_SCRIPT": "nothing: the webui stage sets it",
    "SD_WEBUI_RESTART": "nothing: webui.sh sets it",
}


def problems(environment: object) -> list[str]:
    """What is wrong with an operator's ``forge_environment`` (empty when nothing)."""
    if not isinstance(environment, dict):
        return [
            f"forge_environment must be a mapping of NAME: value, not {type(environment).__name__}"
        ]
    found = []
    for name, value in environment.items():
        if not isinstance(name, str) or not NAME.match(name):
            found.append(f"{name!r} is not an environment variable name")
        elif name in MANAGED:
            found.append(f"{name} is set by Forge Fleet; use {MANAGED[name]}")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            found.append(f"{name} must be a string, not {type(value).__name__}")
        elif "\n" in str(value) or "\r" in str(value):
            found.append(f"{name} holds a line break")
        elif _CREDENTIALS.search(str(value)):
            found.append(
                f"{name} holds a user:password@ URL; credentials never go into Forge's "
                "environment (Forge shows it on /internal/sysinfo): use a mirror that needs none"
            )
    return found


def render(variables: dict[str, object], header: str = "") -> str:
    """The file's text: ``header`` as comment lines, then one line per variable, in order."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, value in variables.items():
        if not NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"{name} holds a line break")
        lines.append(
            f'{name}="{text.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        )
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, str]:
    """The variables of a file ``render`` wrote; ValueError names a line it cannot read."""
    variables = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        match = _LINE.match(stripped)
        if not match:
            raise ValueError(f'line {number} is not NAME="value": {stripped[:60]!r}')
        variables[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
    return variables


def read(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        return parse(handle.read())
