"""site.yml's settings for a test lab: the stand-ins serving, and the controller-side files
(fleet report, webui credentials, run record) kept in the test's own folder.

with site_settings(lab, folder) as site:
    result = run_playbook("site.yml", lab.inventory, extravars=site.extravars,
                          envvars=site.envvars)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import stand_ins
from tests.harness.lab import LabHandle


@dataclass(frozen=True)
class SiteSettings:
    extravars: dict[str, Any]  # the stand-ins' settings (secrets included) + the folders below
    envvars: dict[str, str]
    reports: Path
    credentials: Path


@contextmanager
def site_settings(lab: LabHandle, folder: Path) -> Iterator[SiteSettings]:
    """The stand-ins (HF/CivitAI, Forge repo and index, Azurite, AzCopy site) serve the lab
    while the block runs; reports and credentials go under ``folder``, never the checkout."""
    reports, credentials = folder / "reports", folder / "credentials"
    with stand_ins.running(lab.lab.gateway, folder / "stand-ins.yml") as settings_file:
        settings = yaml.safe_load(settings_file.read_text())
        yield SiteSettings(
            extravars={
                **settings,
                "report_dir": str(reports),
                "webui_credentials_dir": str(credentials),
            },
            envvars={"FORGE_RUN_RECORD": str(reports / ".run-record.json")},
            reports=reports,
            credentials=credentials,
        )
