"""Read an Azure Blob container SAS URL without revealing it: where it points, what it
allows, when it expires. The signature (sig=) never leaves this module."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit, urlunsplit

# SAS permission letters (sp=), as Azure documents them for a container SAS.
PERMISSION_NAMES = {
    "r": "read",
    "a": "add",
    "c": "create",
    "w": "write",
    "d": "delete",
    "x": "delete version",
    "y": "permanent delete",
    "l": "list",
    "t": "tags",
    "f": "filter",
    "m": "move",
    "e": "execute",
    "i": "set immutability policy",
}


class SasError(ValueError):
    """The URL is not a usable container SAS URL; the message never contains the signature."""


def redact(text: str) -> str:
    """Replace every sig=<value> in ``text`` with sig=REDACTED."""
    out = []
    rest = text
    while True:
        at = rest.find("sig=")
        if at < 0:
            out.append(rest)
            return "".join(out)
        out.append(rest[: at + 4] + "REDACTED")
        rest = rest[at + 4 :]
        end = 0
        while end < len(rest) and rest[end] not in "&\"' \n\t":
            end += 1
        rest = rest[end:]


def _parse_time(value: str) -> datetime.datetime:
    text = value.strip().replace("Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"):
        try:
            parsed = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed
    raise SasError(f"the SAS expiry se={value!r} is not an ISO 8601 UTC time")


def parse(url: str) -> dict[str, object]:
    """Split a container SAS URL into its public parts (no signature)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise SasError("the SAS URL must start with https:// and name the storage account host")
    query = parse_qs(parts.query, keep_blank_values=True)
    if not query.get("sig", [""])[0]:
        raise SasError("the SAS URL has no signature (sig=); copy the whole URL with its token")
    if not query.get("se"):
        raise SasError("the SAS URL has no expiry (se=)")
    if not query.get("sp"):
        raise SasError("the SAS URL has no permissions (sp=)")
    path = parts.path.strip("/")
    if not path:
        raise SasError("the SAS URL names no container (https://<account>.../<container>?<token>)")
    return {
        "base_url": urlunsplit((parts.scheme, parts.netloc, "/" + path, "", "")),
        "scheme": parts.scheme,
        "expiry": _parse_time(query["se"][0]),
        "permissions": query["sp"][0],
        "resource": query.get("sr", [""])[0],
    }


def check(
    url: str,
    required: str,
    warn_days: int,
    now: datetime.datetime | None = None,
) -> dict[str, object]:
    """Judge a SAS URL for a sync that needs the ``required`` permission letters.

    Returns {base_url, expiry, days_left, permissions, errors, warnings}; an unparsable URL
    raises SasError.
    """
    info = parse(url)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    expiry = info["expiry"]
    assert isinstance(expiry, datetime.datetime)
    left = expiry - now
    errors: list[str] = []
    warnings: list[str] = []
    stamp = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    if left.total_seconds() <= 0:
        errors.append(f"the SAS expired at {stamp}; make a new one and put it in the vault")
    elif left.total_seconds() < warn_days * 86400:
        warnings.append(
            f"the SAS expires at {stamp} (in {left.total_seconds() / 86400:.1f} days); "
            "sync stops then: make a new one before the class"
        )
    granted = str(info["permissions"])
    missing = [p for p in required if p not in granted]
    if missing:
        names = ", ".join(f"{p} ({PERMISSION_NAMES.get(p, p)})" for p in missing)
        errors.append(
            f"the SAS grants sp={granted} but sync needs {required}: missing {names}; "
            "make a SAS with those permissions"
        )
    if info["scheme"] != "https":
        warnings.append("the SAS URL uses plain http: the token travels unencrypted")
    return {
        "base_url": info["base_url"],
        "expiry": stamp,
        "days_left": round(left.total_seconds() / 86400, 2),
        "permissions": granted,
        "errors": errors,
        "warnings": warnings,
    }
