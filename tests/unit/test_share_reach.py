"""The preflight share check: what gradio 4.40's --share needs, probed as gradio reaches it."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from forge_fleet import share_reach


@pytest.fixture
def listening():
    """A TCP port that accepts connections (a share server's frp port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web(listening):
    """gradio's share server and CDN on loopback: /v2/tunnel-request and the binary."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(f"GET {self.path}")
            body = json.dumps([{"host": "127.0.0.1", "port": listening}]).encode()
            self.send_response(200 if self.path == "/v2/tunnel-request" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self):
            seen.append(f"HEAD {self.path}")
            self.send_response(200 if self.path.endswith("frpc_linux_amd64") else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_binary_is_named_as_gradios_tunneling_names_it():
    assert share_reach.frpc_machine("x86_64") == "amd64"
    assert share_reach.frpc_machine("aarch64") == "aarch64"


def test_gradio_share_server_address_is_host_and_port():
    assert share_reach.share_server({}) is None
    assert share_reach.share_server({"GRADIO_SHARE_SERVER_ADDRESS": "frp.example:7000"}) == (
        "frp.example",
        7000,
    )
    with pytest.raises(ValueError, match="gradio expects host:port"):
        share_reach.share_server({"GRADIO_SHARE_SERVER_ADDRESS": "frp.example"})


def test_gradios_share_server_and_the_tunnel_it_hands_out_reached_give_no_warning(web, monkeypatch):
    base, seen = web
    monkeypatch.setattr(share_reach, "TUNNEL_REQUEST", f"{base}/v2/tunnel-request")
    monkeypatch.setattr(share_reach, "FRPC_CDN", base + "/frpc-gradio-0.2/frpc_linux_{machine}")
    result = share_reach.check({}, frpc_provided=False, machine="x86_64", timeout=5)
    assert result["warnings"] == []
    assert result["tunnel"]["ok"] and result["tunnel"]["tunnel"].startswith("127.0.0.1:")
    assert sorted(seen) == ["GET /v2/tunnel-request", "HEAD /frpc-gradio-0.2/frpc_linux_amd64"]


def test_a_missing_binary_on_the_cdn_warns_and_names_webui_frpc_url(web, monkeypatch):
    base, _ = web
    monkeypatch.setattr(share_reach, "TUNNEL_REQUEST", f"{base}/v2/tunnel-request")
    monkeypatch.setattr(share_reach, "FRPC_CDN", base + "/frpc-gradio-0.2/frpc_linux_{machine}")
    result = share_reach.check({}, frpc_provided=False, machine="riscv64", timeout=5)
    assert result["warnings"] == [
        "sharing may fail: this VM cannot download gradio's tunnel binary "
        f"{base}/frpc-gradio-0.2/frpc_linux_riscv64 (HTTP 403). Copy that file where the VMs "
        "can reach it and set webui_frpc_url and webui_frpc_sha256 (roles/webui/README.md)."
    ]


def test_a_provided_binary_is_not_looked_for_on_the_cdn(web, monkeypatch, listening):
    base, seen = web
    monkeypatch.setattr(share_reach, "FRPC_CDN", base + "/frpc-gradio-0.2/frpc_linux_{machine}")
    env = {"GRADIO_SHARE_SERVER_ADDRESS": f"127.0.0.1:{listening}"}
    result = share_reach.check(env, frpc_provided=True, machine="x86_64", timeout=5)
    assert result["warnings"] == []
    assert result["frpc"] == {"what": "webui_frpc_url", "ok": True, "seen": "provided"}
    assert seen == []  # neither gradio's server nor the CDN was asked


def test_an_unreachable_own_share_server_warns_with_what_to_do(closed_port):
    env = {"GRADIO_SHARE_SERVER_ADDRESS": f"127.0.0.1:{closed_port}"}
    result = share_reach.check(env, frpc_provided=True, machine="x86_64", timeout=2)
    (line,) = result["warnings"]
    assert line.startswith(
        "sharing may fail: this VM cannot reach gradio's share server "
        f"127.0.0.1:{closed_port} (GRADIO_SHARE_SERVER_ADDRESS) ("
    )
    assert "GRADIO_SHARE_SERVER_ADDRESS in forge_environment" in line
    assert "webui_share: false" in line


def test_a_share_server_that_answers_an_error_warns(web, monkeypatch):
    base, _ = web
    monkeypatch.setattr(share_reach, "TUNNEL_REQUEST", f"{base}/v2/no-such-endpoint")
    result = share_reach.check({}, frpc_provided=True, machine="x86_64", timeout=5)
    assert "(HTTP 404)" in result["warnings"][0]


def test_a_probe_that_hangs_is_cut_off_and_warned_about():
    began = time.monotonic()
    result = share_reach.check(
        {},
        frpc_provided=False,
        machine="x86_64",
        timeout=0.2,
        checks={
            "tunnel": lambda: (time.sleep(5), {})[1],
            "frpc": lambda: {"what": "cdn", "ok": True, "seen": "HTTP 200"},
        },
    )
    assert time.monotonic() - began < 2
    assert f"{share_reach.TUNNEL_REQUEST} (no answer within 0.2 s)" in result["warnings"][0]
    assert len(result["warnings"]) == 1
