"""Every role's two descriptions of its inputs agree: defaults/main.yml and
meta/argument_specs.yml name the same variables with the same defaults (the house rule: each
role input is defined once in defaults/main.yml, with a comment, and described in
meta/argument_specs.yml with the same default).

Iterates over every role found, so a new role is checked the day it lands.
"""

from __future__ import annotations

import pytest
import yaml

from lab.paths import REPO_ROOT

ROLES = sorted(p.name for p in (REPO_ROOT / "roles").iterdir() if (p / "tasks").is_dir())


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def spec_options(role: str) -> dict:
    specs = load(REPO_ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    return specs["main"].get("options") or {}


def test_roles_are_found():
    assert len(ROLES) >= 3, ROLES


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_defaults_and_an_argument_spec(role):
    for part in ("defaults/main.yml", "meta/argument_specs.yml"):
        assert (REPO_ROOT / "roles" / role / part).is_file(), f"roles/{role}/{part} is missing"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_the_argument_spec_with_the_same_value(role):
    defaults = load(REPO_ROOT / "roles" / role / "defaults" / "main.yml")
    options = spec_options(role)
    problems = []
    for name, value in defaults.items():
        if name not in options:
            problems.append(f"{name}: in defaults/main.yml, not in meta/argument_specs.yml")
        elif "default" not in options[name]:
            problems.append(f"{name}: the argument spec gives no default (defaults: {value!r})")
        elif options[name]["default"] != value:
            problems.append(
                f"{name}: defaults/main.yml says {value!r}, "
                f"meta/argument_specs.yml says {options[name]['default']!r}"
            )
    assert not problems, f"roles/{role}: " + "; ".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_every_spec_default_is_in_defaults_and_every_input_is_the_roles(role):
    defaults = load(REPO_ROOT / "roles" / role / "defaults" / "main.yml")
    problems = []
    for name, option in spec_options(role).items():
        if not name.startswith(f"{role}_"):
            problems.append(f"{name}: a role input must start with '{role}_'")
        if "default" in option and name not in defaults:
            problems.append(f"{name}: the spec's default {option['default']!r} is not in defaults")
    assert not problems, f"roles/{role}: " + "; ".join(problems)
