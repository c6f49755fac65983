"""Shared fixtures: lab VMs for integration tests (see tests/harness/)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.harness.lab import LabHandle, lab_vms
from tests.harness.lab import free_port_block as _free_port_block  # the old name still imports


def _lab_name(request: pytest.FixtureRequest) -> str:
    base = request.node.name if request.scope == "function" else request.module.__name__
    return "t-" + re.sub(r"[^a-z0-9]+", "-", base.rsplit(".", 1)[-1].lower()).strip("-")[:30]


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[LabHandle]:
    """Two fresh lab VMs shared by the tests of one module."""
    with lab_vms(_lab_name(request), 2, _free_port_block(2)) as handle:
        yield handle


@pytest.fixture(scope="module")
def fresh_vm(request: pytest.FixtureRequest) -> Iterator[LabHandle]:
    """One fresh VM shared by the tests of a module that need a host nothing ran on yet but
    change nothing on it (check mode, input refused, a failure before any change): each of
    them asserts it changed nothing. A test that does change it comes last in its module."""
    with lab_vms(f"{_lab_name(request)[:24]}-f", 1, _free_port_block(1)) as handle:
        yield handle


@pytest.fixture
def make_lab(request: pytest.FixtureRequest) -> Iterator[Callable[..., LabHandle]]:
    """Factory for fresh VMs owned by one test: make_lab(count=1, gpu=["a100"])."""
    with ExitStack() as stack:
        made = itertools.count(1)

        def factory(count: int = 1, gpu: list[str] | None = None) -> LabHandle:
            name = f"{_lab_name(request)[:24]}-{next(made)}"
            return stack.enter_context(lab_vms(name, count, _free_port_block(count), gpu))

        yield factory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-Forge tier goes out first: its module is the suite's longest (a real
    preparation on 2 cores), and tests/run hands modules to the workers in collection order,
    so started last it would run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("real_forge") is None)
