"""Asking the source for one file's bytes: a GET from a byte onward (Range), refused when the
answer is a page rather than a model, and the hub's signed CDN URL renewed when it expires.

Shared by the single-stream and the ranged transfer. Standard library only, Python 3.8+
(it runs on the VMs).
"""

from __future__ import annotations

import urllib.parse

from .download_http import (
    RETRY_STATUSES,
    DownloadError,
    Response,
    Settings,
    _Retryable,
    public_url,
    request,
)
from .download_item import PlanItem

EXPIRED_STATUSES = (401, 403, 410)  # how a CDN refuses a signed URL past its expiry
MODEL_REFUSED_TYPES = ("text/html", "application/json")
# How a page or an API error begins: no model format starts so (safetensors begins with an
# 8-byte little-endian length, GGUF with "GGUF", torch files with "PK" or a pickle opcode).
NON_MODEL_STARTS = (b"<!doctype html", b"<html", b"<?xml", b'{"error"')


def _refuse_non_model(resp: Response, label: str, at_start: bool) -> None:
    """An HTML or JSON answer where a model was expected is an error, never a file.

    Known by its Content-Type, or, for the first bytes of a file, by how it begins (a login
    page served as application/octet-stream)."""
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip().lower()
    looks_like_page = at_start and resp.resp.peek(64)[:64].lstrip().lower().startswith(
        NON_MODEL_STARTS
    )
    if ctype in MODEL_REFUSED_TYPES or looks_like_page:
        body = resp.resp.read(300).decode("utf-8", "replace")
        resp.close()
        start = body.lstrip()[:14].lower()
        if ctype == "text/html" or start.startswith(("<!doctype html", "<html")):
            hint = "a login page"
        elif start.startswith("<"):
            hint = "an error page"
        else:
            hint = f"a JSON message ({body[:120]!r})"
        raise DownloadError(
            f"{label}: the server sent {hint} instead of the model (HTTP {resp.status}); check "
            "the API key or token and whether the model needs early access; nothing was saved"
        )


class _AlreadyComplete(Exception):
    """416 to a resume: the partial file already holds every byte the server has."""


def _range_total(resp: Response) -> int | None:
    """The full length from ``Content-Range: bytes */N`` (a 416 answer), if given."""
    found = (resp.header("Content-Range") or "").rpartition("/")[2].strip()
    return int(found) if found.isdigit() else None


def _status_error(resp: Response, label: str) -> Exception:
    if resp.status in RETRY_STATUSES:
        return _Retryable(
            f"HTTP {resp.status} from {public_url(resp.url)}", resp.header("Retry-After")
        )
    if resp.status in (401, 403):
        return DownloadError(
            f"{label}: HTTP {resp.status} from {public_url(resp.url)}; the token or API key is "
            "missing, wrong, or has no access to this model"
        )
    return DownloadError(f"{label}: HTTP {resp.status} from {public_url(resp.url)}")


class _Source:
    """One plan item's source: its URL (renewed in place when the hub signs a new one), its
    credentials and the catalog's private headers."""

    def __init__(self, item: PlanItem, settings: Settings):
        self.item = item
        self.settings = settings
        self.label = item.label
        # Catalog headers (e.g. a private mirror's Authorization) go only to the URL's own
        # origin, never to a host it redirects to.
        self.private_headers = dict(item.headers)

    def open(self, start: int, end: int | None = None) -> Response:
        headers: dict[str, str] = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = request(
            "GET",
            self.item.url,
            self.settings,
            headers=headers,
            auth=self.item.auth,
            private_headers=self.private_headers,
        )
        if resp.status == 416 and start and _range_total(resp) == start:
            resp.close()
            raise _AlreadyComplete()
        if resp.status not in (200, 206):
            resp.close()
            if resp.status in EXPIRED_STATUSES and self.renew():
                raise _Retryable(f"HTTP {resp.status} from the CDN: its signed URL expired", "0")
            raise _status_error(resp, self.label)
        _refuse_non_model(resp, self.label, at_start=start == 0)
        return resp

    def renew(self) -> bool:
        """Ask the hub again for the CDN URL (HEAD, token to the hub only, redirect not
        followed): signed URLs expire, and a large file can outlast one. True if a new URL
        came; the caller retries with it (within the usual retry budget)."""
        hub_url = self.item.renew
        if not hub_url:
            return False
        resp = request("HEAD", hub_url, self.settings, auth=self.settings.hf_token, follow=False)
        resp.close()
        location = resp.header("Location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return False
        self.item.url = urllib.parse.urljoin(hub_url, location)
        return True
