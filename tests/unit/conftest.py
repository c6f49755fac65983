"""Fixtures shared by the unit tests that talk to the ARM stand-in (tests/doubles/arm)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def arm_server(tmp_path_factory):
    """One ARM stand-in per test module."""
    # Imported here, not at the top: the Python 3.8 run of the VM-side unit tests
    # (tests/test_python38.py) loads this file too, and has no Azure SDK.
    from tests.harness.arm import arm_stand_in  # noqa: PLC0415

    with arm_stand_in(tmp_path_factory.mktemp("arm")) as server:
        yield server


@pytest.fixture
def arm(arm_server):
    """The module's stand-in, emptied, with the class's (empty) workspace."""
    from tests.harness.arm import RG, SUB, WS  # noqa: PLC0415

    arm_server.reset()
    arm_server.state.workspaces[(SUB, RG, WS)] = {}
    return arm_server
