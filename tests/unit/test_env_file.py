"""module_utils/forge_fleet/env_file.py: Forge's environment file, written by the forge role
and read by the preparation and by systemd (EnvironmentFile=; systemd's reading of the same
file: tests/integration/test_webui.py)."""

from __future__ import annotations

import pytest

from forge_fleet import env_file

VARIABLES = {
    "python_cmd": "/anaconda/envs/forge/bin/python",
    "venv_dir": "-",
    "TORCH_COMMAND": 'pip install torch==2.3.1 --extra-index-url "https://x/whl" $HOME \\d',
}


def test_what_render_writes_parse_reads_back():
    text = env_file.render(VARIABLES, "Forge's settings\nsecond line")
    assert text.startswith("# Forge's settings\n# second line\n")
    assert env_file.parse(text) == VARIABLES


def test_a_line_it_cannot_read_is_named():
    with pytest.raises(ValueError, match='line 2 is not NAME="value"'):
        env_file.parse('A="1"\nexport B=2\n')


def test_a_line_break_in_a_value_is_refused():
    with pytest.raises(ValueError, match="A holds a line break"):
        env_file.render({"A": "1\n2"})


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        (
            {"CLIP_PACKAGE": "https://user:secret@mirror/CLIP.zip"},
            "CLIP_PACKAGE holds a user:password@ URL",
        ),
        (
            {"TORCH_COMMAND": "pip install torch"},
            "TORCH_COMMAND is set by Forge Fleet; use forge_torch_command",
        ),
        ({"COMMANDLINE_ARGS": "--api"}, "COMMANDLINE_ARGS is set by Forge Fleet"),
        ({"BAD-NAME": "x"}, "'BAD-NAME' is not an environment variable name"),
        ({"BLIP_REPO": "a\nb"}, "BLIP_REPO holds a line break"),
        ({"BLIP_REPO": ["a"]}, "BLIP_REPO must be a string, not list"),
        (["CLIP_PACKAGE"], "forge_environment must be a mapping"),
    ],
)
def test_problems_name_the_variable_and_what_to_do(environment, problem):
    found = env_file.problems(environment)
    assert len(found) == 1 and found[0].startswith(problem)


def test_a_mirror_setting_has_no_problem():
    assert (
        env_file.problems(
            {"CLIP_PACKAGE": "https://mirror/CLIP.zip", "HTTPS_PROXY": "http://proxy:3128"}
        )
        == []
    )
