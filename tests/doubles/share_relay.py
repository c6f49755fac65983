"""The lab's gradio share server: links for the Forge stand-in that answer, and that it can drop.

gradio's ``--share`` asks a share server for a tunnel (gradio 4.40: the ``frpc`` binary logs in
to the server named by ``GRADIO_SHARE_SERVER_ADDRESS``, ``host:port``, else the one
api.gradio.app names) and prints the public link the server gives it. The server routes each
request for ``<id>.<domain>`` through that tunnel to Forge on the VM, and answers for a link it
no longer has with an error page of its own (404). Links die without a word in Forge's log.

This relay plays that server for the stand-in (tests/doubles/forge/repo/modules/standin_share.py
is its client; the protocol is theirs alone, not frp's):

- tunnel port (what the VMs get as ``GRADIO_SHARE_SERVER_ADDRESS``): a client sends
  ``LOGIN\\n`` and gets ``OK https://<id>.<domain>\\n``; that connection stays open and the relay
  writes ``CONNECT <n>\\n`` on it for each public connection; the client answers by opening a
  new connection with ``DATA <n>\\n``, which the relay joins to the public one, byte for byte.
- public port (what the controller's link check gets as ``webui_share_check_via``): HTTP,
  routed by the ``Host`` header's first label; an unknown one answers 404 with an HTML page.
- ``drop(link)``: forgets a link and closes its tunnel, as the real server does when a link
  dies; the client says nothing, and the link stays dead.
- a client whose tunnel closed without a drop (this server stopped: the lab's stand-ins run only
  while a playbook runs) logs in again with ``LOGIN <id>`` and keeps its link, as frpc
  reconnects to its server; a dropped id gets ``NO``.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import socket
import socketserver
import threading
import time

# the stand-in's tunnel client, whose byte pipe and line reading the server shares
from tests.doubles.forge.repo.modules.standin_share import pipe, read_line

NOT_FOUND = (
    b"<!DOCTYPE html><html><head><title>Not Found</title></head><body>"
    b"<h1>The page you requested was not found.</h1>"
    b"<p>Sorry, the page you are looking for is currently unavailable.</p></body></html>"
)
HEAD_LIMIT = 65536
JOIN_TIMEOUT = 10.0


def join(one: socket.socket, other: socket.socket) -> None:
    """Pipe both ways until either side closes (returns then)."""
    forward = threading.Thread(target=pipe, args=(one, other), daemon=True)
    forward.start()
    pipe(other, one)
    forward.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ShareRelay:
    """Serve both ports on ``host`` while the ``with`` block runs."""

    def __init__(
        self,
        host: str,
        domain: str = "share.lab.invalid",
        ports: tuple[int, int] = (0, 0),
        delay: float = 0.0,
    ):
        """``delay``: seconds each public connection waits before it is routed (the round
        trip to a share server on the internet, for benchmarks)."""
        self.host = host
        self.domain = domain
        self.delay = delay
        self._ports = ports
        self._lock = threading.Lock()
        self._tunnels: dict[str, socket.socket] = {}  # link id -> the client's open connection
        self._waiting: dict[str, tuple[threading.Event, list]] = {}
        self._dropped: set[str] = set()
        self._numbers = itertools.count(1)
        self._servers: list[_Server] = []

    # -- what the lab and the tests use ----------------------------------------------------

    @property
    def tunnel_address(self) -> str:
        return f"{self.host}:{self._servers[0].server_address[1]}"

    @property
    def public_url(self) -> str:
        return f"http://{self.host}:{self._servers[1].server_address[1]}"

    def links(self) -> list[str]:
        with self._lock:
            return [f"https://{link_id}.{self.domain}" for link_id in self._tunnels]

    def drop(self, link: str) -> bool:
        """Forget ``link`` (a URL or its id) and close its tunnel; False if it was unknown."""
        link_id = link.split("://", 1)[-1].split(".", 1)[0]
        with self._lock:
            control = self._tunnels.pop(link_id, None)
            self._dropped.add(link_id)
        if control is None:
            return False
        with contextlib.suppress(OSError):
            control.shutdown(socket.SHUT_RDWR)
        control.close()
        return True

    # -- serving ---------------------------------------------------------------------------

    def __enter__(self) -> ShareRelay:
        relay = self

        class Tunnel(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._tunnel(self.request)

        class Public(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._public(self.request)

        for handler, port in ((Tunnel, self._ports[0]), (Public, self._ports[1])):
            server = _Server((self.host, port), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self._lock:
            controls = list(self._tunnels.values())
            self._tunnels.clear()
        for control in controls:  # closed, not dropped: the clients log in again later
            with contextlib.suppress(OSError):
                control.shutdown(socket.SHUT_RDWR)
            control.close()

    def _tunnel(self, sock: socket.socket) -> None:
        line = _read_line(sock)
        if line == "LOGIN" or line.startswith("LOGIN "):
            link_id = line[6:] or secrets.token_hex(9)
            with self._lock:
                refused = link_id in self._dropped or link_id in self._tunnels
                if not refused:
                    self._tunnels[link_id] = sock
            if refused:  # a dropped link stays dead; a link in use is not taken over
                sock.sendall(b"NO\n")
                sock.close()
                return
            sock.sendall(f"OK https://{link_id}.{self.domain}\n".encode())
            # the handler's thread holds the connection open until the client or drop closes it
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
            with self._lock:
                if self._tunnels.get(link_id) is sock:
                    del self._tunnels[link_id]
            return
        if line.startswith("DATA "):
            with self._lock:
                waiting = self._waiting.pop(line[5:], None)
            if waiting is None:
                sock.close()
                return
            event, slot = waiting
            finished = threading.Event()
            slot.append((sock, finished))
            event.set()
            # socketserver closes the connection when this handler returns: wait for the pipes
            finished.wait()
            return
        sock.close()

    def _public(self, client: socket.socket) -> None:
        head = b""
        client.settimeout(JOIN_TIMEOUT)
        try:
            while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
                data = client.recv(4096)
                if not data:
                    return
                head += data
        except OSError:
            return
        if self.delay:
            time.sleep(self.delay)
        link_id = _host(head).split(".", 1)[0]
        with self._lock:
            control = self._tunnels.get(link_id)
        if control is None:
            client.sendall(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: text/html; charset=utf-8\r\n"
                + f"content-length: {len(NOT_FOUND)}\r\nconnection: close\r\n\r\n".encode()
                + NOT_FOUND
            )
            client.close()
            return
        number = str(next(self._numbers))
        event, slot = threading.Event(), []
        with self._lock:
            self._waiting[number] = (event, slot)
        try:
            control.sendall(f"CONNECT {number}\n".encode())
        except OSError:
            self.drop(link_id)
            client.close()
            return
        if not event.wait(JOIN_TIMEOUT):
            with self._lock:
                self._waiting.pop(number, None)
            client.close()
            return
        data_sock, finished = slot[0]
        client.settimeout(None)
        try:
            data_sock.sendall(head)
            join(client, data_sock)
        finally:
            finished.set()


def _read_line(sock: socket.socket) -> str:
    sock.settimeout(JOIN_TIMEOUT)
    try:
        line = read_line(sock)
    except OSError:
        return ""
    sock.settimeout(None)
    return line


def _host(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode("ascii", "replace").split(":", 1)[0]
    return ""
