"""The Forge stand-in's share tunnel: what gradio's frpc does, for the lab's share server.

With ``GRADIO_SHARE_SERVER_ADDRESS`` (``host:port``, gradio's own variable) the stand-in logs
in to that server (tests/doubles/share_relay.py, the protocol is theirs alone), prints the
link it gets, and carries every request the server sends for that link to Forge's local
port. When the server drops the link the tunnel ends without a word, as gradio's does; when
the server itself goes away, the tunnel logs in again with the same link until it is back.

Standard library only: it runs in the VM's conda env (Python 3.8+).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

CONNECT_TIMEOUT = 10.0
RECONNECT_INTERVAL = 1.0


class TunnelError(OSError):
    """The share server could not be reached or refused the login."""


class TunnelRefused(TunnelError):
    """The share server answered and refused the link (a dropped link stays dead)."""


def read_line(sock: socket.socket, limit: int = 256) -> str:
    """One line of the protocol (without its newline), or "" when the other side closed."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode("ascii", "replace").strip()


def pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from source to sink until either side closes; then close both."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Tunnel:
    """One link: open while the share server keeps it."""

    def __init__(self, server_address: str, local_port: int, local_host: str = "127.0.0.1"):
        host, _, port = server_address.rpartition(":")
        self.server = (host, int(port))
        self.local = (local_host, local_port)
        self.url = ""
        self._control: socket.socket | None = None
        self._closed = False

    def open(self) -> str:
        """Log in and return the public link; raises TunnelError."""
        self._login("")
        threading.Thread(target=self._serve, daemon=True).start()
        return self.url

    def _login(self, link_id: str) -> None:
        try:
            control = socket.create_connection(self.server, timeout=CONNECT_TIMEOUT)
            control.sendall(f"LOGIN {link_id}".strip().encode() + b"\n")
            answer = read_line(control)
        except OSError as error:
            raise TunnelError(f"cannot reach the share server {self.server}: {error}") from error
        if not answer.startswith("OK "):
            control.close()
            raise TunnelRefused(f"the share server refused the tunnel: {answer!r}")
        control.settimeout(None)
        self._control = control
        self.url = answer[3:]

    def _again(self) -> bool:
        """The tunnel closed without our close: log in again with the same link, as frpc
        reconnects, until the server takes it back (True) or refuses it (False)."""
        link_id = self.url.split("://", 1)[-1].split(".", 1)[0]
        while not self._closed:
            try:
                self._login(link_id)
                return True
            except TunnelRefused:
                return False
            except TunnelError:
                time.sleep(RECONNECT_INTERVAL)  # not back yet
        return False

    def close(self) -> None:
        self._closed = True
        control, self._control = self._control, None
        if control is not None:
            with contextlib.suppress(OSError):
                control.shutdown(socket.SHUT_RDWR)
            control.close()

    def _serve(self) -> None:
        while self._control is not None:
            try:
                line = read_line(self._control)
            except (OSError, AttributeError):
                line = ""
            if not line:
                # the server is gone or dropped the link: nothing is printed, as with gradio
                if self._closed or not self._again():
                    return
                continue
            if line.startswith("CONNECT "):
                threading.Thread(target=self._carry, args=(line[8:],), daemon=True).start()

    def _carry(self, number: str) -> None:
        try:
            remote = socket.create_connection(self.server, timeout=CONNECT_TIMEOUT)
        except OSError:
            return
        try:
            remote.sendall(f"DATA {number}\n".encode())
            local = socket.create_connection(self.local, timeout=CONNECT_TIMEOUT)
        except OSError:
            remote.close()
            return
        remote.settimeout(None)
        local.settimeout(None)
        threading.Thread(target=pipe, args=(remote, local), daemon=True).start()
        pipe(local, remote)
