"""Filters for Forge's environment file (module_utils/forge_fleet/env_file.py):

content: "{{ variables | forge_env_file(header) }}"
that: forge_environment | forge_env_problems | length == 0
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet import env_file  # noqa: E402


def forge_env_file(variables: dict, header: str = "") -> str:
    try:
        return env_file.render(dict(variables), header)
    except ValueError as error:
        raise AnsibleFilterError(f"forge_env_file: {error}") from error


def forge_env_problems(environment: object) -> list[str]:
    return env_file.problems(environment)


class FilterModule:
    def filters(self) -> dict:
        return {"forge_env_file": forge_env_file, "forge_env_problems": forge_env_problems}
