"""The ARM stand-in wired for tests: TLS from the lab CA, and the settings that point
playbooks/fleet.yml and the azureml_compute inventory plugin at it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.tls import CA_CERT, issue_server_cert
from tests.doubles.arm import ArmStandIn

SUB = "00000000-0000-0000-0000-0000000000aa"
RG = "rg-forge-class"
WS = "ws-forge-class"


@contextmanager
def arm_stand_in(tmp: Path) -> Iterator[ArmStandIn]:
    cert, key = issue_server_cert(["127.0.0.1"], tmp / "tls")
    with ArmStandIn((str(cert), str(key))) as arm:
        yield arm


def fleet_vars(arm: ArmStandIn, students: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    """Extra vars for playbooks/fleet.yml: the roster and the stand-in's endpoint."""
    return {
        "fleet_azureml_subscription_id": SUB,
        "fleet_azureml_resource_group": RG,
        "fleet_azureml_workspace": WS,
        "fleet_azureml_location": "westeurope",
        "fleet_azureml_base_url": arm.url,
        "fleet_azureml_ca_bundle": str(CA_CERT),
        "fleet_azureml_auth_source": "token",
        "fleet_azureml_access_token": arm.state.token,
        "fleet_roster_students": students,
        "fleet_roster_poll_interval": 0.2,
        "fleet_roster_wait_timeout": 60,
        **more,
    }


def inventory_env(arm: ArmStandIn, token: str | None = None) -> dict[str, str]:
    """Environment that points the inventory plugin at the stand-in."""
    return {
        "AZURE_SUBSCRIPTION_ID": SUB,
        "FORGE_AZUREML_BASE_URL": arm.url,
        "FORGE_AZUREML_CA_BUNDLE": str(CA_CERT),
        "FORGE_AZUREML_AUTH_SOURCE": "token",
        "FORGE_AZUREML_ACCESS_TOKEN": token or arm.state.token,
    }


def ssh_public_key(tmp: Path) -> Path:
    """A real OpenSSH key pair; returns the public key's path."""
    key = tmp / "instructor_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "instructor", "-f", str(key)],
            check=True,
        )
    return key.with_suffix(".pub")
