"""lab.vms.port_in_use: a port is free only when nothing binds it and a connection is refused."""

from __future__ import annotations

import socket

import pytest

from lab import vms


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_port_nothing_binds_or_answers_is_free():
    assert not vms.port_in_use(_unused_port())


def test_a_listening_port_is_in_use():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert vms.port_in_use(listener.getsockname()[1])


def test_a_bound_port_is_in_use_though_nothing_listens():
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        assert vms.port_in_use(bound.getsockname()[1])


@pytest.mark.parametrize("error", [TimeoutError, OSError(113, "No route to host")])
def test_a_connection_forwarded_nowhere_is_in_use(monkeypatch, error):
    # a DNAT rule left behind by a removed VM: the SYN goes to an address that is gone
    port = _unused_port()
    real = socket.socket

    class Forwarded(real):
        def connect(self, address):
            raise error

    monkeypatch.setattr(vms.socket, "socket", Forwarded)
    assert vms.port_in_use(port)
