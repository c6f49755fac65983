"""Verified, resumable, parallel model downloads from Hugging Face, CivitAI and HTTPS URLs.

Standard library only; runs on the VM inside the model_download module. This module is the
engine's front door; each concern lives in a file of its own:

    download_http      requests, redirects, the header policy, retries
    download_resolve   Hugging Face and CivitAI resolution
    download_item      the plan item (PlanItem): the one type, and what of it leaves the engine
    download_plan      plan, manifest, dry-run report, checks before any byte moves
    download_transfer  fetching one file: resume point, first answer, stream or segments
    download_source    asking the source: Range GET, pages refused, signed URL renewed
    download_partial   the partial file, its resume record, the size/sha256 check
    download_stream    the single-stream transfer
    download_ranged    the ranged (segmented) transfer
    download_execute   executing a plan under the Forge folder's lock
    download_progress  the progress file: writer, reader, dead-job verdict
    vocabulary         model families, kinds and their Forge folders

The flow for a catalog (entries from ``catalog.normalize_catalog``):

    plan = make_plan(entries, forge_dir, settings)   # resolve, compare with the manifest
    check_disk(plan, forge_dir)                        # fail before any byte moves
    results = execute(plan, forge_dir, settings)       # download / verify / repair

Guarantees: bytes go to ``<file>.partial`` and are hashed while they stream; a file reaches
its final name only after its size and sha256 match (atomic rename); an interrupted download
resumes with Range; credentials are sent only to the host they belong to, never follow a
redirect to another host, never appear in a URL, an error, the manifest or the progress file.
"""

from __future__ import annotations

from .download_execute import (
    LOCK,
    _execute,
    _execute_one,
    _record,
    execute,
    hold_lock,
)
from .download_http import (
    RETRY_STATUSES,
    USER_AGENT,
    DownloadError,
    Response,
    Settings,
    _bad_header,
    _connect,
    _get_json,
    _origin,
    _retry_delay,
    _Retryable,
    _with_retries,
    outgoing_headers,
    public_url,
    request,
    retry_after_seconds,
)
from .download_partial import STATE_SAVE_S, WRITEBACK_BYTES, _start_writeback
from .download_plan import (
    MANIFEST,
    _bytes_to_fetch,
    _stat,
    check_declared_families,
    check_disk,
    describe_changes,
    human_bytes,
    load_manifest,
    make_plan,
    save_manifest,
    settle_by_hashing,
    sha256_file,
)
from .download_ranged import _SegmentFetcher
from .download_resolve import (
    _civitai_resolve,
    _hf_resolve,
    _pick_civitai_file,
    entry_key,
    resolve,
)
from .download_source import (
    EXPIRED_STATUSES,
    MODEL_REFUSED_TYPES,
    NON_MODEL_STARTS,
    _AlreadyComplete,
    _range_total,
    _refuse_non_model,
    _status_error,
)
from .download_stream import PUMP_BUFFERS
from .download_transfer import _Fetch
from .vocabulary import KIND_DIRS

__all__ = [
    "EXPIRED_STATUSES",
    "KIND_DIRS",
    "LOCK",
    "MANIFEST",
    "MODEL_REFUSED_TYPES",
    "NON_MODEL_STARTS",
    "PUMP_BUFFERS",
    "RETRY_STATUSES",
    "STATE_SAVE_S",
    "USER_AGENT",
    "WRITEBACK_BYTES",
    "DownloadError",
    "Response",
    "Settings",
    "_AlreadyComplete",
    "_Fetch",
    "_Retryable",
    "_SegmentFetcher",
    "_bad_header",
    "_bytes_to_fetch",
    "_civitai_resolve",
    "_connect",
    "_execute",
    "_execute_one",
    "_get_json",
    "_hf_resolve",
    "_origin",
    "_pick_civitai_file",
    "_range_total",
    "_record",
    "_refuse_non_model",
    "_retry_delay",
    "_start_writeback",
    "_stat",
    "_status_error",
    "_with_retries",
    "check_declared_families",
    "check_disk",
    "describe_changes",
    "entry_key",
    "execute",
    "hold_lock",
    "human_bytes",
    "load_manifest",
    "make_plan",
    "outgoing_headers",
    "public_url",
    "request",
    "resolve",
    "retry_after_seconds",
    "save_manifest",
    "settle_by_hashing",
    "sha256_file",
]
