"""What the lab and the tests start stops whole and at once: Azurite (which does not exit on
SIGTERM while a client holds a connection) within a second, its blobs kept; the lab's
background stand-ins, and whatever they started, within a few seconds even when they ignore
SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from lab import stand_ins
from lab.tls import issue_server_cert
from tests.harness.azurite import AZURITE, Azurite

# A server that ignores SIGTERM and has started a child of its own (in its process group).
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone too: it only waits for its parent to read its status
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not AZURITE.exists(), reason="azurite-blob not installed (scripts/bootstrap)")
def test_azurite_stops_within_a_second_and_keeps_its_blobs(tmp_path):
    cert, key = issue_server_cert(["127.0.0.1"], tmp_path / "tls")
    azurite = Azurite("127.0.0.1", tmp_path / "azurite", (str(cert), str(key)))
    with azurite:
        azurite.service().create_container("outputs")
        azurite.service().get_container_client("outputs").upload_blob("a.png", b"image")
        pid = azurite.process.pid
        started = time.monotonic()
        azurite.stop()
        took = time.monotonic() - started
        assert took < 2.0, f"Azurite took {took:.1f} s to stop"
        assert gone(pid)
        azurite.start()
        assert azurite.blobs("outputs") == {"a.png": 5}


def test_background_stand_ins_ignoring_sigterm_stop_whole_within_three_seconds(tmp_path):
    lab = SimpleNamespace(state_dir=tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, start_new_session=True
    )
    child = int(server.stdout.readline())
    (tmp_path / "stand-ins.pid").write_text(str(server.pid))
    started = time.monotonic()
    assert stand_ins.stop(lab) is True
    took = time.monotonic() - started
    server.stdout.close()
    assert took < 3.0, f"the stand-ins took {took:.1f} s to stop"
    assert server.poll() is not None
    deadline = time.monotonic() + 1
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child), "the stand-ins' own child outlived them"
    assert not (tmp_path / "stand-ins.pid").exists()
