"""HTTP for the model downloads: settings, one request with redirects followed by hand,
the header policy (which headers may go to which host), retries with backoff, JSON APIs.

Standard library only, Python 3.8+ (it runs on the VMs); ``http_download`` re-exports the
names other code uses.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import ssl
import threading
import time
import urllib.parse
from typing import Any

USER_AGENT = "forge-fleet/0.1 (+model_download)"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class DownloadError(Exception):
    """A download cannot be done; the message names the entry and what to do."""


class Settings:
    def __init__(self, **options: Any) -> None:
        self.hf_endpoint = options.get("hf_endpoint") or "https://huggingface.co"
        self.civitai_endpoint = options.get("civitai_endpoint") or "https://civitai.com"
        # A token read from a file or a vault block often ends with a newline: not part of it.
        self.hf_token = (options.get("hf_token") or "").strip() or None
        self.civitai_key = (options.get("civitai_key") or "").strip() or None
        self.connections = max(1, int(options.get("connections", 4)))
        self.parallel_files = max(1, int(options.get("parallel_files", 2)))
        self.segment_bytes = int(options.get("segment_bytes", 4 * 1024 * 1024))
        self.min_split_bytes = int(options.get("min_split_bytes", 64 * 1024 * 1024))
        self.retries = int(options.get("retries", 5))
        self.backoff = float(options.get("backoff", 1.0))
        self.max_backoff = float(options.get("max_backoff", 60.0))
        self.timeout = float(options.get("timeout", 60.0))
        self.ca_file = options.get("ca_file") or None
        self.progress_file = options.get("progress_file") or None
        self.progress_interval = float(options.get("progress_interval", 2.0))
        self.verify = bool(options.get("verify", False))
        # model_cache.Cache: the fleet cache tried before the origin, per file; None: off
        self.cache = options.get("cache")
        self.buffer_bytes = 1024 * 1024
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()

    def ssl_context(self) -> ssl.SSLContext:
        """One context for every connection: loading the CA store takes tens of milliseconds,
        and a catalog of thirty entries opens hundreds of connections."""
        with self._ssl_lock:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self.ca_file)
            return self._ssl


# -- HTTP ---------------------------------------------------------------------------------


class Response:
    """An open HTTP response and the connection it came on."""

    def __init__(
        self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str
    ) -> None:
        self.conn = conn
        self.resp = resp
        self.url = url
        self.status = resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def close(self) -> None:
        self.conn.close()


def _connect(url: str, settings: Settings) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=settings.timeout, context=settings.ssl_context()
        )
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=settings.timeout)
    raise DownloadError(f"unsupported URL scheme {parts.scheme!r}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def outgoing_headers(
    url: str,
    auth_origin: tuple[str, str, int | None],
    *,
    headers: dict[str, str] | None = None,
    auth: str | None = None,
    private_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Which headers a request to ``url`` may carry: the security boundary for tokens, and
    the only place request headers are put together.

    The User-Agent and the request's own headers (Range) go everywhere. The secrets - the
    Bearer token (``auth``) and catalog-declared headers (``private_headers``, e.g. a private
    mirror's Authorization) - go only to ``auth_origin`` (scheme, host and port of the URL
    they were given for), never to the CDN or storage host a redirect points at.
    """
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if _origin(url) == auth_origin:
        sent.update(private_headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {auth}"
    return sent


def public_url(url: str) -> str:
    """A URL fit for messages: no query string (pre-signed URLs carry signatures there) and
    no ``user:password@`` (a mirror's credentials may be written into its URL)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def request(
    method: str,
    url: str,
    settings: Settings,
    *,
    headers: dict[str, str] | None = None,
    auth: str | None = None,
    private_headers: dict[str, str] | None = None,
    auth_origin: tuple[str, str, int | None] | None = None,
    follow: bool = True,
) -> Response:
    """One request; redirects are followed by hand so the Authorization header (and any
    catalog-declared header, which may carry a secret) is sent only to the origin it was meant
    for (``auth_origin``, by default the first URL's) and never to a CDN or storage host."""
    auth_origin = auth_origin or _origin(url)
    for _ in range(6):
        conn = _connect(url, settings)
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = outgoing_headers(
            url, auth_origin, headers=headers, auth=auth, private_headers=private_headers
        )
        try:
            conn.request(method, target or "/", headers=sent)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):  # first: a certificate error is both
            conn.close()
            raise
        except ValueError:
            conn.close()
            raise _bad_header(url) from None
        if follow and resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            location = urllib.parse.urljoin(url, resp.getheader("Location"))
            resp.read()
            conn.close()
            if url.startswith("https:") and not location.startswith("https:"):
                raise DownloadError(
                    f"{public_url(url)} redirects to plain HTTP ({public_url(location)}); "
                    "refused: a download that starts over HTTPS stays on HTTPS"
                )
            url = location
            continue
        return Response(conn, resp, url)
    raise DownloadError(f"too many redirects from {public_url(url)}")


def _bad_header(url: str) -> DownloadError:
    """http.client refuses a header value with a line break, quoting the value (a token) in
    its message: this error says the same without it."""
    return DownloadError(
        f"a request to {public_url(url)} was not sent: a header value holds a line break or "
        "another character HTTP does not allow (check the token, API key or catalog headers "
        "for a stray newline); the value is not shown"
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _retry_delay(settings: Settings, attempt: int, retry_after: str | None) -> float:
    asked = retry_after_seconds(retry_after)
    if asked is not None:
        return min(asked, settings.max_backoff)
    return min(settings.backoff * (2**attempt), settings.max_backoff)


def _with_retries(label: str, settings: Settings, action):
    """Run ``action()``; retry dropped connections, 429 and 5xx with backoff.

    A certificate that does not verify is not a passing fault: it fails at once.
    """
    last = ""
    for attempt in range(settings.retries + 1):
        try:
            return action()
        except ssl.SSLCertVerificationError as error:
            raise DownloadError(
                f"{label}: the server's TLS certificate does not verify "
                f"({error.verify_message or error.reason}); if a private CA signs it, trust "
                "that CA on this host or pass its bundle as the module's ca_file"
            ) from None
        except _Retryable as error:
            last = str(error)
            if attempt < settings.retries:
                time.sleep(_retry_delay(settings, attempt, error.retry_after))
        except (OSError, http.client.HTTPException) as error:
            last = f"connection problem: {type(error).__name__}: {error}"
            if attempt < settings.retries:
                time.sleep(_retry_delay(settings, attempt, None))
    raise DownloadError(f"{label}: gave up after {settings.retries + 1} attempts: {last}")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _get_json(url: str, settings: Settings, label: str, auth: str | None) -> Any:
    def action():
        resp = request("GET", url, settings, auth=auth, headers={"Accept": "application/json"})
        try:
            body = resp.resp.read()
        finally:
            resp.close()
        if resp.status in RETRY_STATUSES:
            raise _Retryable(
                f"HTTP {resp.status} from {public_url(url)}", resp.header("Retry-After")
            )
        if resp.status in (401, 403):
            raise DownloadError(
                f"{label}: CivitAI refused the request (HTTP {resp.status}); set a CivitAI API key "
                "(models_civitai_api_key) whose account can download this model"
            )
        if resp.status == 404:
            raise DownloadError(
                f"{label}: CivitAI has no such model or version ({public_url(url)})"
            )
        if resp.status != 200:
            raise DownloadError(f"{label}: HTTP {resp.status} from {public_url(url)}")
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise DownloadError(f"{label}: {public_url(url)} did not answer JSON") from None

    return _with_retries(label, settings, action)
