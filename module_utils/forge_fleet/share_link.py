"""Is a gradio share link alive? Asked from the controller, for a whole class at once.

A gradio share link (https://<id>.gradio.live) is a tunnel from gradio's share server to
Forge on the VM. It dies without a word in Forge's log (the server forgets the tunnel, the
link is over 72 hours old, the VM's tunnel process died), and then the share server answers
for the link with an error page of its own. So a link counts as alive only when it answers as
gradio does behind a login: ``GET /`` answers 200 with the app's HTML page, and ``GET /config``
401 (200 without a login). Anything else the share server answers makes the link dead.
When the controller cannot reach the share server at all (a name that does not resolve, a
refused connection, no answer in time), nothing can be said about the link: it is
``unreachable``, not dead, so a controller without internet access never restarts a class.

``via``: where the requests go instead of the link's own address (``http://host:port``), with
the link's host name in the ``Host`` header, as a share server routes them: a share server on
a private network, or the lab's own. Empty: the link itself, over HTTPS with its certificate
checked.

Standard library only (it runs in the controller's Ansible process).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ssl
import time
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ANSWERS = "answers"
DEAD = "dead"
UNREACHABLE = "unreachable"

# what each path must answer: (path, status with a login, status without)
EXPECTED = (("/", 200, 200), ("/config", 401, 200))


class LinkError(ValueError):
    """A link or a via address that is not an http(s) URL."""


def _target(link: str, via: str) -> tuple[str, str, int, str]:
    """(scheme, address to connect to, port, Host header) for one link."""
    parts = urllib.parse.urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LinkError(f"not an http(s) link: {link!r}")
    host_header = parts.netloc
    if not via:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, parts.hostname, port, host_header
    relay = urllib.parse.urlsplit(via)
    if relay.scheme not in ("http", "https") or not relay.hostname:
        raise LinkError(f"webui_share_check_via is not an http(s) URL: {via!r}")
    port = relay.port or (443 if relay.scheme == "https" else 80)
    return relay.scheme, relay.hostname, port, host_header


def _get(target: tuple[str, str, int, str], path: str, timeout: float):
    """(status, content type, first bytes of the body) of one GET; ``target`` as _target."""
    scheme, address, port, host = target
    if scheme == "https":
        context = ssl.create_default_context()
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "forge-fleet-share-check"})
        response = conn.getresponse()
        body = response.read(4096)
        return response.status, response.getheader("content-type") or "", body
    finally:
        conn.close()


def check_link(
    link: str,
    *,
    auth: bool = True,
    via: str = "",
    timeout: float = 5.0,
    get: Callable = _get,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, object]:
    """One link's state: answers, dead (with what it answered) or unreachable (with why)."""
    began = clock()
    try:
        target = _target(link, via)
    except LinkError as error:
        return {"state": DEAD, "detail": str(error), "seconds": 0.0}
    for path, with_login, without_login in EXPECTED:
        wanted = with_login if auth else without_login
        try:
            status, content_type, _ = get(target, path, timeout)
        except (OSError, http.client.HTTPException) as error:
            # a TLS error comes from a server that answered: the link's address is not gradio's
            if isinstance(error, ssl.SSLError):
                return _result(DEAD, f"GET {path}: TLS error: {error}", began, clock)
            why = getattr(error, "reason", None) or error
            return _result(UNREACHABLE, f"GET {path}: {why}", began, clock)
        if status != wanted:
            return _result(
                DEAD, f"GET {path} answered {status} (gradio answers {wanted})", began, clock
            )
        if path == "/" and "html" not in content_type.lower():
            return _result(
                DEAD,
                f"GET / answered {content_type or 'no content type'}, not gradio's page",
                began,
                clock,
            )
    return _result(ANSWERS, "the app page, and /config " + ("401" if auth else "200"), began, clock)


def _result(state: str, detail: str, began: float, clock: Callable[[], float]) -> dict[str, object]:
    return {"state": state, "detail": detail, "seconds": round(clock() - began, 2)}


def check_links(
    links: dict[str, dict[str, object]],
    *,
    via: str = "",
    timeout: float = 5.0,
    retry_for: float = 0.0,
    check: Callable[..., dict[str, object]] = check_link,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, dict[str, object]]:
    """Every host's link at once (one thread each): {host: {state, detail, seconds, url}}.

    ``links``: {host: {"url": link, "auth": bool}}; a host without a url is left out.
    ``retry_for``: seconds to ask a link that is not answering again (a link gradio printed a
    moment ago); 0 asks once.
    """
    wanted = {host: spec for host, spec in links.items() if spec.get("url")}

    def one(spec: dict[str, object]) -> dict[str, object]:
        began = clock()
        while True:
            found = check(
                str(spec["url"]), auth=bool(spec.get("auth", True)), via=via, timeout=timeout
            )
            if found["state"] == ANSWERS or clock() - began >= retry_for:
                return {**found, "url": spec["url"], "seconds": round(clock() - began, 2)}
            sleep(0.5)

    if not wanted:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(64, len(wanted))) as pool:
        futures = {host: pool.submit(one, spec) for host, spec in wanted.items()}
        return {host: future.result() for host, future in futures.items()}
