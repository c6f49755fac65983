"""The fleet model cache: a Blob container holding the catalog's files, each named by its
sha256 (content-addressed: a catalog entry's hash names its object), moved with AzCopy.

The cache is a transport, not a source of truth. A reader (every VM, read-only SAS) copies
``<container>/<sha256>`` into ``<file>.cache-partial`` and gives it the final name only when
size and sha256 match what the catalog / upstream says; anything else (no such object,
AzCopy failing, wrong bytes) is a :class:`CacheMiss` and the caller falls back to the origin
for that file. The stager (one VM, write SAS) uploads the files it holds, verified, whose
object is missing or of the wrong size, and replaces objects a reader found bad.

The SAS travels only as AzCopy's argument (AzCopy takes it nowhere else); it never appears in
a result, a message or a log of ours: AzCopy's output is redacted before it is quoted, and its
job plans and logs go to a private folder that is emptied after every call.

Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

from .hashing import sha256_file

SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SECRET_QUERY = re.compile(r"(?i)\b(sig|se|sp|sv|sr|st|spr|skoid|sktid|skt|ske|sks|skv)=[^&\s\"']+")


class CacheMiss(Exception):
    """The cache could not give this file; ``bad`` names the sha256 of wrong bytes found."""

    def __init__(self, reason: str, bad: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bad = bad


def redact(text: str) -> str:
    """Hide every SAS query value (AzCopy quotes URLs in its errors)."""
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=<hidden>", text)


def split_sas_url(sas_url: str) -> tuple[str, str]:
    """(container URL, token) of a container SAS URL; ValueError when it is not one."""
    base, _, token = sas_url.strip().partition("?")
    if not base.startswith("https://") or not token or base.rstrip("/").count("/") < 3:
        raise ValueError(
            "the model cache SAS URL must look like "
            "https://<account>.blob.core.windows.net/<container>?<token>"
        )
    return base.rstrip("/"), token


class Cache:
    """One container, one SAS, one AzCopy binary."""

    def __init__(self, sas_url: str, azcopy: str, timeout: float = 3600.0) -> None:
        self.container, self._token = split_sas_url(sas_url)
        self.azcopy = azcopy
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"Cache({self.container!r})"

    def url(self, name: str = "") -> str:
        path = f"{self.container}/{name}" if name else self.container
        return f"{path}?{self._token}"

    def run(self, *args: str) -> tuple[int, str]:
        """AzCopy with its job plans and logs in a private folder removed afterwards;
        (exit code, redacted output)."""
        work = tempfile.mkdtemp(prefix="forge-fleet-azcopy-")
        env = dict(os.environ)
        env.update(
            AZCOPY_JOB_PLAN_LOCATION=os.path.join(work, "plans"),
            AZCOPY_LOG_LOCATION=os.path.join(work, "logs"),
            AZCOPY_DISABLE_SYSLOG="true",
        )
        try:
            done = subprocess.run(
                [self.azcopy, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
                check=False,
            )
            return done.returncode, redact(done.stdout.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            return 124, f"AzCopy took longer than {self.timeout:.0f} s"
        except OSError as error:
            return 127, f"AzCopy could not start: {error}"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- reader ---------------------------------------------------------------------------

    def pull(self, sha256: str, size: int | None, path: str) -> None:
        """Copy object ``sha256`` to ``path`` (verified) or raise :class:`CacheMiss`."""
        partial = f"{path}.cache-partial"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        code, output = self.run(
            "copy", self.url(sha256), partial, "--from-to=BlobLocal", "--overwrite=true",
            "--check-md5=NoCheck",
            "--log-level=ERROR", "--output-level=essential",
        )  # fmt: skip
        try:
            if code != 0 or not os.path.isfile(partial):
                raise CacheMiss(_why(code, output))
            got_size = os.path.getsize(partial)
            got = sha256_file(partial)
            if got != sha256 or (size is not None and got_size != size):
                raise CacheMiss(
                    f"cache object {sha256[:12]} is damaged ({got_size} bytes, sha256 {got})",
                    bad=got,
                )
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)

    # -- stager ---------------------------------------------------------------------------

    def listing(self) -> dict[str, int]:
        """Object name -> size; RuntimeError (redacted) when the container cannot be listed."""
        code, output = self.run(
            "list", self.url(), "--location=Blob", "--machine-readable", "--output-level=essential"
        )
        if code != 0:
            why = _why(code, output)
            raise RuntimeError(f"cannot list the model cache {self.container}: {why}")
        found: dict[str, int] = {}
        for line in output.splitlines():
            if "Content Length:" not in line:
                continue
            match = re.match(r"^(?:INFO:\s*)?(.+?);\s+Content Length:\s*(\d+)\s*$", line.strip())
            if not match:  # a format this code does not know: say so rather than re-upload
                raise RuntimeError(f"unexpected line from azcopy list: {line.strip()[:200]}")
            found[match.group(1)] = int(match.group(2))
        return found

    def push(self, path: str, sha256: str) -> None:
        """Upload ``path`` as object ``sha256`` after checking its bytes; RuntimeError else."""
        got = sha256_file(path)
        if got != sha256:
            raise RuntimeError(
                f"{path} no longer has sha256 {sha256} (it has {got}): not uploaded; "
                "re-run the models stage on this host to repair it first"
            )
        code, output = self.run(
            "copy", path, self.url(sha256), "--overwrite=true", "--from-to=LocalBlob",
            "--log-level=ERROR", "--output-level=essential",
        )  # fmt: skip
        if code != 0:
            why = _why(code, output)
            raise RuntimeError(f"upload of {sha256[:12]} to the model cache failed: {why}")


def _why(code: int, output: str) -> str:
    if re.search(r"BlobNotFound|404|does not exist|ResourceNotFound|was not found", output):
        return "not in the cache"
    if re.search(r"AuthorizationPermissionMismatch|AuthenticationFailed|403", output):
        return "the cache refused the SAS (403)"
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return f"AzCopy exit {code}: {lines[-1][:300] if lines else 'no output'}"


def stage(
    cache: Cache, files: list[dict[str, Any]], replace: list[str], check_mode: bool
) -> dict[str, Any]:
    """Make the cache hold every cacheable file of ``files`` ({label, path, sha256, size}).

    An object is uploaded when it is missing or its size differs, and re-uploaded when its
    sha256 is in ``replace`` (a reader found wrong bytes under that name). Each upload comes
    from the stager's own copy, whose sha256 is checked first. In check mode only the listing
    is read. Returns {changed, uploaded, replaced, cached, skipped, errors}.
    """
    present = cache.listing()
    result: dict[str, Any] = {
        "uploaded": [], "replaced": [], "cached": [], "skipped": [], "errors": []
    }  # fmt: skip
    seen: set[str] = set()
    for item in files:
        sha = item.get("sha256") or ""
        label = item.get("label") or item.get("path")
        if not SHA256.match(sha):
            result["skipped"].append(f"{label}: no sha256 known in advance, not cacheable")
            continue
        if sha in seen:
            continue
        seen.add(sha)
        if sha in replace:
            bucket = "replaced"
        elif sha not in present or present[sha] != (item.get("size") or present[sha]):
            bucket = "uploaded"
        else:
            result["cached"].append(sha)
            continue
        entry = {"sha256": sha, "label": label, "size": item.get("size")}
        if not check_mode:
            try:
                cache.push(item["path"], sha)
            except (RuntimeError, OSError) as error:
                result["errors"].append(f"{label}: {error}")
                continue
        result[bucket].append(entry)
    result["changed"] = bool(result["uploaded"] or result["replaced"])
    return result
