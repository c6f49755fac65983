"""Each module's and plugin's documentation parses (ansible-doc) and says what its code does.

What ansible-test's validate-modules checks, for a repository that is not a collection: the
options documented in DOCUMENTATION are the options of the module's argument spec (names,
types, required, defaults, choices, aliases, suboptions). The spec is read as validate-modules
reads it: the module's main() runs with AnsibleModule stopped at its first line. A library file
that documents an action plugin is compared with the ARGUMENT_SPEC that action validates.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import ansible.module_utils
import pytest
from ansible.module_utils.basic import AnsibleModule

from lab.paths import REPO_ROOT

BIN = Path(sys.executable).parent
MODULES = sorted(path.stem for path in (REPO_ROOT / "library").glob("*.py"))
PLUGINS = {
    "callback": sorted(p.stem for p in (REPO_ROOT / "plugins/callback").glob("*.py")),
    "inventory": sorted(p.stem for p in (REPO_ROOT / "plugins/inventory").glob("*.py")),
    "test": ["proc_hidepid_as_declared"],
}
COMPARED = ("type", "elements", "required", "default", "choices", "aliases")


def ansible_doc(kind: str, names: list[str]) -> dict:
    result = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", kind, "-j", *names],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[WARNING]" not in result.stderr, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def module_docs() -> dict:
    return ansible_doc("module", MODULES)


class _Spec(Exception):
    def __init__(self, spec: dict) -> None:
        self.spec = spec


def load(path: Path):
    if str(REPO_ROOT / "module_utils") not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(REPO_ROOT / "module_utils"))
    spec = importlib.util.spec_from_file_location(f"_doc_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def argument_spec(name: str) -> dict:
    """The module's argument spec; for a file that documents an action plugin (no main()),
    the ARGUMENT_SPEC the action validates its arguments with."""
    module = load(REPO_ROOT / "library" / f"{name}.py")
    if not hasattr(module, "main"):
        return load(REPO_ROOT / "plugins" / "action" / f"{name}.py").ARGUMENT_SPEC

    def stop(self, argument_spec, **_):
        raise _Spec(argument_spec)

    with mock.patch.object(AnsibleModule, "__init__", stop), pytest.raises(_Spec) as caught:
        module.main()
    return caught.value.spec


def normalised(options: dict, documented: bool) -> dict:
    """Options as comparable dicts: what is unset in the spec takes the documented default."""
    out = {}
    for name, option in (options or {}).items():
        row = {key: option.get(key) for key in COMPARED}
        row["type"] = row["type"] or "str"
        row["required"] = bool(row["required"])
        row["aliases"] = sorted(row["aliases"] or [])
        sub = option.get("suboptions" if documented else "options")
        row["suboptions"] = normalised(sub, documented) if sub else None
        out[name] = row
    return out


@pytest.mark.parametrize("name", MODULES)
def test_module_documents_the_options_of_its_argument_spec(name, module_docs):
    doc = module_docs[name]["doc"]
    assert doc["short_description"]
    assert module_docs[name]["examples"], f"{name}: no EXAMPLES"
    spec = argument_spec(name)
    assert normalised(doc.get("options"), True) == normalised(spec, False)


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_plugins_are_documented(kind):
    docs = ansible_doc(kind, PLUGINS[kind])
    for name in PLUGINS[kind]:
        assert docs[name]["doc"]["short_description"], f"{kind} {name}"
