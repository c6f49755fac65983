"""Whether a VM reaches what gradio's --share needs (the preflight stage's share check).

gradio 4.40 (gradio/networking.py, gradio/tunneling.py) asks its share server for a tunnel
(GET https://api.gradio.app/v2/tunnel-request, which answers [{"host", "port"}]) unless
GRADIO_SHARE_SERVER_ADDRESS gives one as host:port, connects its frpc binary to that
host:port, and downloads the binary from its CDN when it is not in its package folder yet.
Each probe is cheap and read-only (a GET of the tunnel request, a TCP connect, a HEAD of
the binary), bounded by one deadline for all of them. Standard library only (Python 3.8).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Callable, Tuple

TUNNEL_REQUEST = "https://api.gradio.app/v2/tunnel-request"
FRPC_CDN = "https://cdn-media.huggingface.co/frpc-gradio-0.2/frpc_linux_{machine}"

# (reachable, what was seen): one probe's answer
Answer = Tuple[bool, str]


def frpc_machine(machine: str) -> str:
    """gradio/tunneling.py: platform.machine(), with x86_64 named amd64, lowercased."""
    return "amd64" if machine == "x86_64" else machine.lower()


def share_server(environment: dict[str, str]) -> tuple[str, int] | None:
    """GRADIO_SHARE_SERVER_ADDRESS (host:port) from Forge's environment, or None."""
    address = str(environment.get("GRADIO_SHARE_SERVER_ADDRESS") or "").strip()
    if not address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"GRADIO_SHARE_SERVER_ADDRESS is {address!r}; gradio expects host:port")
    return host, int(port)


def probe_http(url: str, method: str, timeout: float) -> tuple[bool, str, bytes]:
    """(answered 2xx, as gradio needs from both, what was seen, body of a GET)."""
    if not url.startswith(("https://", "http://")):
        return False, f"not an http(s) URL: {url}", b""
    # the scheme is checked just above
    request = urllib.request.Request(url, method=method, headers={"User-Agent": "forge-fleet"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(65536) if method == "GET" else b""
            return True, f"HTTP {response.status}", body
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}", b""
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return False, str(reason) or type(error).__name__, b""


def probe_tcp(host: str, port: int, timeout: float) -> Answer:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, "connected"
    except OSError as error:
        return False, str(error) or type(error).__name__


def tunnel_server(body: bytes) -> tuple[str, int] | None:
    """The host:port in the share server's answer ([{"host": ..., "port": ...}])."""
    try:
        payload = json.loads(body.decode("utf-8"))
        return str(payload[0]["host"]), int(payload[0]["port"])
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None


def check_tunnel(environment: dict[str, str], timeout: float) -> dict[str, object]:
    """The share server, as gradio reaches it; with gradio's own, the tunnel it hands out."""
    server = share_server(environment)
    if server is not None:
        ok, seen = probe_tcp(server[0], server[1], timeout)
        return {
            "what": f"{server[0]}:{server[1]} (GRADIO_SHARE_SERVER_ADDRESS)",
            "ok": ok,
            "seen": seen,
        }
    ok, seen, body = probe_http(TUNNEL_REQUEST, "GET", timeout)
    result: dict[str, object] = {"what": TUNNEL_REQUEST, "ok": ok, "seen": seen}
    tunnel = tunnel_server(body) if ok else None
    if tunnel is not None:
        tunnel_ok, tunnel_seen = probe_tcp(tunnel[0], tunnel[1], timeout)
        result["tunnel"] = f"{tunnel[0]}:{tunnel[1]}"
        if not tunnel_ok:
            result.update(
                ok=False,
                what=f"the tunnel server {tunnel[0]}:{tunnel[1]} it hands out",
                seen=tunnel_seen,
            )
    return result


def check_frpc(machine: str, timeout: float) -> dict[str, object]:
    url = FRPC_CDN.format(machine=frpc_machine(machine))
    ok, seen, _ = probe_http(url, "HEAD", timeout)
    return {"what": url, "ok": ok, "seen": seen}


def warnings(tunnel: dict[str, object], frpc: dict[str, object] | None) -> list[str]:
    """The "sharing may fail" lines, each with what to do; none when everything answered."""
    lines = []
    if not tunnel["ok"]:
        lines.append(
            f"sharing may fail: this VM cannot reach gradio's share server {tunnel['what']}"
            f" ({tunnel['seen']}). Allow outbound HTTPS to api.gradio.app and TCP to its"
            " tunnel servers, or run your own share server (GRADIO_SHARE_SERVER_ADDRESS in"
            " forge_environment), or set webui_share: false and reach Forge another way."
        )
    if frpc is not None and not frpc["ok"]:
        lines.append(
            f"sharing may fail: this VM cannot download gradio's tunnel binary {frpc['what']}"
            f" ({frpc['seen']}). Copy that file where the VMs can reach it and set"
            " webui_frpc_url and webui_frpc_sha256 (roles/webui/README.md)."
        )
    return lines


def check(
    environment: dict[str, str],
    frpc_provided: bool,
    machine: str,
    timeout: float,
    checks: dict[str, Callable[[], dict[str, object]]] | None = None,
) -> dict[str, object]:
    """Run the probes side by side, none longer than timeout (DNS included); the result."""
    checks = checks or {
        "tunnel": lambda: check_tunnel(environment, timeout),
        **({} if frpc_provided else {"frpc": lambda: check_frpc(machine, timeout)}),
    }
    results: dict[str, dict[str, object]] = {}

    def run(name: str, probe: Callable[[], dict[str, object]]) -> None:
        results[name] = probe()

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 2 + 1)  # a GET, then the tunnel's connect
    server = share_server(environment)
    asked = {
        "tunnel": f"{server[0]}:{server[1]} (GRADIO_SHARE_SERVER_ADDRESS)"
        if server
        else TUNNEL_REQUEST,
        "frpc": FRPC_CDN.format(machine=frpc_machine(machine)),
    }
    for name in checks:
        results.setdefault(
            name,
            {"what": asked.get(name, name), "ok": False, "seen": f"no answer within {timeout:g} s"},
        )
    tunnel = results["tunnel"]
    frpc = results.get("frpc")
    return {
        "tunnel": tunnel,
        "frpc": frpc
        if frpc is not None
        else {"what": "webui_frpc_url", "ok": True, "seen": "provided"},
        "warnings": warnings(tunnel, frpc),
    }
