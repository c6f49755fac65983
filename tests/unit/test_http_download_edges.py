"""Edge cases of the download engine: a scheduling race between ranged workers, credentials
inside a URL, an untrusted certificate, an HTML page sent as binary, a partial file that is
already complete when the run stopped."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from forge_fleet import (
    download_partial,
    download_progress,
    download_ranged,
    download_stream,
    http_download,
)
from forge_fleet.download_item import PlanItem
from forge_fleet.http_download import (
    DownloadError,
    Settings,
    execute,
    make_plan,
    public_url,
)
from tests.doubles.model_hub import ModelHub
from tests.fixtures.models import real_model, sha

LABEL = "models_catalog[0] (edge)"
TARGET = "models/Stable-diffusion/m.safetensors"


@pytest.fixture
def hub():
    with ModelHub() as server:
        yield server


@pytest.fixture
def forge(tmp_path):
    path = tmp_path / "forge"
    path.mkdir()
    return path


def url_entry(url: str, **extra) -> dict:
    return {
        "source": "url",
        "url": url,
        "kind": "checkpoint",
        "label": LABEL,
        "filename": "m.safetensors",
        **extra,
    }


def fast(**extra) -> Settings:
    return Settings(**{"retries": 2, "backoff": 0.01, "timeout": 10, **extra})


def run(entries, forge, options):
    return execute(make_plan(entries, str(forge), options), str(forge), options)


class _FirstTakerStalls(queue.Queue):
    """A task queue whose taker of segment 0 is held up right after taking it, as a thread
    preempted on a loaded machine would be."""

    def get_nowait(self):
        item = super().get_nowait()
        if isinstance(item, tuple) and item[0] == 0:
            time.sleep(0.6)
        return item


def test_a_stalled_first_segment_does_not_deadlock_the_ranged_download(
    hub, tmp_path, forge, monkeypatch
):
    source = real_model(tmp_path / "big", 2_000_000)
    url = hub.cdn_url(hub.add_blob(source))
    monkeypatch.setattr(download_ranged.queue, "Queue", _FirstTakerStalls)
    options = fast(connections=2, segment_bytes=64 * 1024, min_split_bytes=1)
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(run([url_entry(url)], forge, options)), daemon=True
    )
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the ranged download deadlocked"
    assert outcome["errors"] == []
    assert sha(forge / TARGET) == sha(source)


def test_credentials_inside_a_url_are_left_out_of_what_is_shown():
    shown = public_url("https://alice:s3cret-pass@mirror.example:8443/m.safetensors?sig=abc")
    assert shown == "https://mirror.example:8443/m.safetensors"


def test_an_error_message_never_shows_credentials_from_the_url(hub, forge):
    url = hub.cdn_url("0" * 16).replace("http://", "http://alice:s3cret-pass@")
    result = run([url_entry(url)], forge, fast())
    assert "HTTP 403" in result["errors"][0]
    assert "s3cret-pass" not in repr(result)


def test_an_untrusted_certificate_fails_at_once_and_names_the_ca_setting(tmp_path, forge):
    tls = pytest.importorskip("lab.tls")
    cert, key = tls.issue_server_cert(["127.0.0.1"], tmp_path)
    with ModelHub(tls=(str(cert), str(key))) as server:
        url = server.cdn_url(server.add_blob(real_model(tmp_path / "a", 10_000)))
        started = time.monotonic()
        result = run([url_entry(url)], forge, fast(retries=5, backoff=1.0))
        elapsed = time.monotonic() - started
    [error] = result["errors"]
    assert "certificate" in error
    assert "ca_file" in error
    assert elapsed < 5, "a certificate problem is not retried with back-off"


def test_an_html_page_labelled_as_binary_is_refused_and_not_saved(hub, tmp_path, forge):
    page = tmp_path / "login.bin"
    page.write_bytes(b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n" * 50)
    url = hub.cdn_url(hub.add_blob(page))
    [error] = run([url_entry(url)], forge, fast())["errors"]
    assert "instead of the model" in error
    folder = forge / "models/Stable-diffusion"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_complete_partial_file_is_finished_without_fetching_it_again(
    hub, tmp_path, forge, monkeypatch
):
    source = real_model(tmp_path / "a", 600_000)
    url = hub.cdn_url(hub.add_blob(source))
    options = fast(connections=2, segment_bytes=64 * 1024, min_split_bytes=1)
    real_replace = os.replace

    def killed_before_rename(src, dst):
        if str(src).endswith(".partial"):
            raise OSError("killed before the rename")
        real_replace(src, dst)

    monkeypatch.setattr(download_partial.os, "replace", killed_before_rename)
    assert run([url_entry(url)], forge, options)["errors"]
    monkeypatch.setattr(download_partial.os, "replace", real_replace)
    hub.state.log.clear()
    again = run([url_entry(url)], forge, options)
    assert again["errors"] == []
    assert sha(forge / TARGET) == sha(source)
    assert [r["range"] for r in hub.cdn_requests()] == [f"bytes={os.path.getsize(source)}-"]


def civitai_options(hub, **extra) -> Settings:
    return fast(
        civitai_endpoint=hub.api_url,
        connections=3,
        segment_bytes=64 * 1024,
        min_split_bytes=1,
        **extra,
    )


def test_a_ranged_civitai_download_asks_the_api_once_not_once_per_segment(hub, tmp_path, forge):
    source = real_model(tmp_path / "lora.safetensors", 2_000_000)
    hub.add_civitai_version(7, 70, source, name="lora.safetensors")
    entry = {"source": "civitai", "version_id": 7, "label": LABEL}
    result = run([entry], forge, civitai_options(hub))
    assert result["errors"] == []
    assert sha(forge / "models/Lora/lora.safetensors") == sha(source)
    downloads = [r for r in hub.api_requests() if r["path"].startswith("/api/download/")]
    segments = [r for r in hub.cdn_requests() if r["range"]]
    assert len(downloads) == 1
    assert len(segments) >= 30
    assert not any(r["authorization"] for r in hub.cdn_requests())


def test_an_expired_storage_url_is_renewed_through_the_api(hub, tmp_path, forge, monkeypatch):
    source = real_model(tmp_path / "lora.safetensors", 2_000_000)
    hub.add_civitai_version(7, 70, source, name="lora.safetensors")
    original = http_download._SegmentFetcher.__init__

    def expired(self, fetch, url):
        original(self, fetch, url.split("?")[0] + "?se=1970-01-01")  # signature no longer valid

    monkeypatch.setattr(http_download._SegmentFetcher, "__init__", expired)
    entry = {"source": "civitai", "version_id": 7, "label": LABEL}
    result = run([entry], forge, civitai_options(hub))
    assert result["errors"] == []
    assert sha(forge / "models/Lora/lora.safetensors") == sha(source)
    downloads = [r for r in hub.api_requests() if r["path"].startswith("/api/download/")]
    segments = [r for r in hub.cdn_requests() if r["range"]]
    # Renewed a few times (workers may notice at once), not asked once per segment.
    assert 2 <= len(downloads) <= 1 + 2 * 3 < len(segments)


def test_ranged_download_memory_is_a_fixed_set_of_segment_buffers(
    hub, tmp_path, forge, monkeypatch
):
    source = real_model(tmp_path / "big", 3_000_000)
    url = hub.cdn_url(hub.add_blob(source))
    allocated: list[int] = []
    real_bytearray = bytearray

    class Counting(real_bytearray):
        def __init__(self, *args):
            super().__init__(*args)
            allocated.append(len(self))

    monkeypatch.setattr(download_ranged, "bytearray", Counting, raising=False)
    options = fast(connections=3, segment_bytes=64 * 1024, min_split_bytes=1)
    assert run([url_entry(url)], forge, options)["errors"] == []
    assert sha(forge / TARGET) == sha(source)
    assert allocated == [64 * 1024] * (3 + 2)


def hf_entry(repo: str = "org/flux", file: str = "ae.safetensors") -> dict:
    return {
        "source": "huggingface",
        "repo": repo,
        "file": file,
        "revision": "main",
        "kind": "vae",
        "label": LABEL,
    }


def test_a_refused_hugging_face_token_is_called_invalid_not_missing(hub, tmp_path):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    options = fast(hf_endpoint=hub.api_url, hf_token="hf_revoked_token_0000")
    with pytest.raises(DownloadError) as refused:
        make_plan([hf_entry()], str(tmp_path), options)
    message = str(refused.value)
    assert "refused the token for org/flux" in message
    assert "invalid, expired or revoked" in message
    assert "hf_revoked_token_0000" not in message


class _HiddenRepoHub(BaseHTTPRequestHandler):
    """The Hub's answer for a repository it will not show: 401 with RepoNotFound."""

    def do_HEAD(self) -> None:
        self.send_response(401)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_repository_the_hub_will_not_show_is_named_with_what_to_check(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HiddenRepoHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options = fast(hf_endpoint=f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(DownloadError) as hidden:
            make_plan([hf_entry(repo="org/typo")], str(tmp_path), options)
    finally:
        server.shutdown()
        server.server_close()
    message = str(hidden.value)
    assert "no repository org/typo to a request without a token" in message
    assert "check the name" in message


def test_a_second_run_at_the_same_time_fails_at_once_naming_the_first(hub, tmp_path, forge):
    source = real_model(tmp_path / "a", 100_000)
    url = hub.cdn_url(hub.add_blob(source))
    first = http_download.hold_lock(str(forge))  # a run still going, e.g. an async job
    try:
        with pytest.raises(DownloadError) as busy:
            run([url_entry(url)], forge, fast())
    finally:
        first.close()
    assert f"another model download is running in {forge} (process {os.getpid()})" in str(
        busy.value
    )
    assert hub.cdn_requests() == []
    assert run([url_entry(url)], forge, fast())["errors"] == []
    assert sha(forge / TARGET) == sha(source)


@pytest.mark.parametrize("connections", [1, 3])
def test_writeback_is_started_for_each_written_stretch_in_order(
    hub, tmp_path, forge, monkeypatch, connections
):
    source = real_model(tmp_path / "a", 1_000_000)
    url = hub.cdn_url(hub.add_blob(source))
    hints: list[tuple[int, int]] = []
    for transfer in (download_stream, download_ranged):  # one stream, or segments
        monkeypatch.setattr(transfer, "WRITEBACK_BYTES", 128 * 1024)
        monkeypatch.setattr(
            transfer,
            "_start_writeback",
            lambda fd, start, length: hints.append((start, length)),
        )
    options = fast(connections=connections, segment_bytes=64 * 1024, min_split_bytes=1)
    options.buffer_bytes = 64 * 1024
    assert run([url_entry(url)], forge, options)["errors"] == []
    assert sha(forge / TARGET) == sha(source)
    assert hints[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(hints, hints[1:]))
    assert all(n >= 128 * 1024 for _, n in hints)
    assert hints[-1][0] + hints[-1][1] <= os.path.getsize(source)
    assert len(hints) >= 6


def test_a_token_read_with_a_trailing_newline_still_works(hub, tmp_path, forge):
    source = real_model(tmp_path / "ae.safetensors", 50_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source, gated=True)
    hub.state.tokens.add("hf_from_a_file_0123")
    hub.state.granted.add("hf_from_a_file_0123")
    options = fast(hf_endpoint=hub.api_url, hf_token="hf_from_a_file_0123\n")
    result = run([hf_entry()], forge, options)
    assert result["errors"] == []
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)


def test_a_line_break_inside_a_token_fails_without_showing_it(hub, tmp_path):
    hub.add_hf_file("org/flux", "ae.safetensors", real_model(tmp_path / "a", 1000))
    options = fast(hf_endpoint=hub.api_url, hf_token="hf_first_half\nhf_second_half")
    with pytest.raises(DownloadError) as refused:
        make_plan([hf_entry()], str(tmp_path), options)
    message = str(refused.value)
    assert "header value holds a line break" in message
    assert "hf_first_half" not in message
    assert "hf_second_half" not in message
    assert hub.api_requests() == []


def test_a_line_break_inside_a_catalog_header_fails_without_showing_it(hub, tmp_path, forge):
    url = hub.cdn_url(hub.add_blob(real_model(tmp_path / "a", 1000)))
    entry = url_entry(url, headers={"X-Mirror-Key": "mirror-secret\nsecond-line"})
    result = run([entry], forge, fast())
    [error] = result["errors"]
    assert "header value holds a line break" in error
    assert "mirror-secret" not in repr(result)


class _DiskFillsUp:
    """A partial file on a disk that fills up after ``room`` bytes."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


@pytest.mark.parametrize("connections", [1, 3])
def test_a_full_disk_is_reported_as_such_at_once_not_retried_as_a_network_fault(
    hub, tmp_path, forge, monkeypatch, connections
):
    url = hub.cdn_url(hub.add_blob(real_model(tmp_path / "a", 1_000_000)))
    real_open, real_pwrite = open, os.pwrite

    def small_disk_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(".partial") and mode == "r+b":
            return _DiskFillsUp(handle, 300_000)
        return handle

    def small_disk_pwrite(fd, data, offset):
        if offset + len(data) > 300_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(download_stream, "open", small_disk_open, raising=False)
    monkeypatch.setattr(download_ranged.os, "pwrite", small_disk_pwrite)
    options = fast(
        connections=connections,
        segment_bytes=64 * 1024,
        min_split_bytes=1,
        retries=5,
        backoff=1.0,
    )
    options.buffer_bytes = 64 * 1024
    started = time.monotonic()
    [error] = run([url_entry(url)], forge, options)["errors"]
    assert time.monotonic() - started < 3, "a full disk is not retried with back-off"
    assert "cannot write" in error
    assert "No space left on device" in error
    assert not (forge / TARGET).exists()


def expire(url: str) -> str:
    """The same CDN URL past its expiry: the stand-in refuses it (403) without a signature."""
    return url.split("?", maxsplit=1)[0] + "?se=1970-01-01"


@pytest.mark.parametrize("connections", [1, 3])
def test_an_expired_hugging_face_cdn_url_is_renewed_from_the_hub(hub, tmp_path, forge, connections):
    source = real_model(tmp_path / "ae.safetensors", 1_000_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source, gated=True)
    hub.state.tokens.add("hf_granted_0123")
    hub.state.granted.add("hf_granted_0123")
    options = fast(
        hf_endpoint=hub.api_url,
        hf_token="hf_granted_0123",
        connections=connections,
        segment_bytes=64 * 1024,
        min_split_bytes=1,
    )
    plan = make_plan([hf_entry()], str(forge), options)
    plan[0].url = expire(plan[0].url)  # a long queue: the URL expired before its turn
    result = execute(plan, str(forge), options)
    assert result["errors"] == []
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)
    heads = [r for r in hub.api_requests() if r["method"] == "HEAD"]
    assert len(heads) == 2
    assert all(r["authorization"] for r in heads)
    assert not any(r["authorization"] for r in hub.cdn_requests())


def test_an_expired_segment_url_is_renewed_from_the_hub_mid_download(
    hub, tmp_path, forge, monkeypatch
):
    source = real_model(tmp_path / "ae.safetensors", 1_000_000)
    hub.add_hf_file("org/flux", "ae.safetensors", source)
    options = fast(
        hf_endpoint=hub.api_url, connections=3, segment_bytes=64 * 1024, min_split_bytes=1
    )
    plan = make_plan([hf_entry()], str(forge), options)
    original = http_download._SegmentFetcher.__init__

    def expires_after_the_first_answer(self, fetch, url):
        fetch.item.url = expire(url)
        original(self, fetch, fetch.item.url)

    monkeypatch.setattr(http_download._SegmentFetcher, "__init__", expires_after_the_first_answer)
    result = execute(plan, str(forge), options)
    assert result["errors"] == []
    assert sha(forge / "models/VAE/ae.safetensors") == sha(source)
    assert 2 <= len([r for r in hub.api_requests() if r["method"] == "HEAD"]) <= 1 + 3


def test_ranged_workers_keep_their_connections_alive_between_segments(hub, tmp_path, forge):
    source = real_model(tmp_path / "big", 2_000_000)
    url = hub.cdn_url(hub.add_blob(source))
    accepted = []
    accept = hub.cdn_server.get_request

    def counting_accept():
        accepted.append(1)
        return accept()

    hub.cdn_server.get_request = counting_accept
    options = fast(connections=3, segment_bytes=64 * 1024, min_split_bytes=1)
    assert run([url_entry(url)], forge, options)["errors"] == []
    assert sha(forge / TARGET) == sha(source)
    segments = [r for r in hub.cdn_requests() if r["range"]]
    assert len(segments) >= 30
    assert len(accepted) <= 1 + 3  # the first answer's connection, then one per worker


class _StallsOnceMidBody(BaseHTTPRequestHandler):
    """Serves ``data`` with Range; the first answer stalls after half the body (a connection
    that hangs until the client's timeout, unlike a clean close)."""

    protocol_version = "HTTP/1.1"
    data = b""
    stalled: ClassVar[list] = []
    ranges: ClassVar[list] = []

    def do_GET(self) -> None:
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.split("=")[1].split("-")[0])
        self.ranges.append(rng)
        body = self.data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self.stalled:
            self.stalled.append(True)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(1.5)  # the client gives up first
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_connection_that_hangs_mid_body_resumes_where_the_written_bytes_end(tmp_path, forge):
    data = real_model(tmp_path / "a", 3_000_000).read_bytes()
    handler = type("Stalls", (_StallsOnceMidBody,), {"data": data, "stalled": [], "ranges": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/m.safetensors"
        options = fast(timeout=0.5, connections=1)
        options.buffer_bytes = 64 * 1024
        result = run([url_entry(url)], forge, options)
    finally:
        server.shutdown()
        server.server_close()
    assert result["errors"] == []
    assert sha(forge / TARGET) == hashlib.sha256(data).hexdigest()
    [resumed_at] = [int(r.split("=")[1].rstrip("-")) for r in handler.ranges if r]
    assert 0 < resumed_at <= len(data) // 2


class _StallsBeforeTheFirstByte(_StallsOnceMidBody):
    def do_GET(self) -> None:
        if not self.stalled:
            self.stalled.append(True)
            self.ranges.append(self.headers.get("Range"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(self.data)))
            self.end_headers()
            self.wfile.flush()
            time.sleep(1.5)  # headers, then nothing until the client gives up
            self.close_connection = True
            return
        self.stalled.append(True)
        super().do_GET()


def test_a_connection_that_hangs_before_the_first_byte_starts_again_from_zero(tmp_path, forge):
    data = real_model(tmp_path / "a", 500_000).read_bytes()
    handler = type(
        "StallsEarly", (_StallsBeforeTheFirstByte,), {"data": data, "stalled": [], "ranges": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/m.safetensors"
        result = run([url_entry(url)], forge, fast(timeout=0.5, connections=1))
    finally:
        server.shutdown()
        server.server_close()
    assert result["errors"] == []
    assert sha(forge / TARGET) == hashlib.sha256(data).hexdigest()
    assert handler.ranges == [None, None]


def test_a_redirect_from_https_to_plain_http_is_refused(hub, tmp_path, forge):
    tls = pytest.importorskip("lab.tls")
    plain = hub.cdn_url(hub.add_blob(real_model(tmp_path / "a", 10_000)))
    cert, key = tls.issue_server_cert(["127.0.0.1"], tmp_path)

    class Downgrade(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", plain)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Downgrade)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/m.safetensors"
        result = run([url_entry(url)], forge, fast(ca_file=str(tls.CA_CERT)))
    finally:
        server.shutdown()
        server.server_close()
    [error] = result["errors"]
    assert "redirects to plain HTTP" in error
    assert hub.cdn_requests() == []


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def time(self) -> float:
        return self.now


def test_progress_rate_and_eta_show_a_stall_instead_of_the_average_so_far(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(download_progress, "time", clock)
    progress = download_progress.Progress(None, 2.0)
    mib = 1024 * 1024
    progress.start("models/Stable-diffusion/flux.safetensors", 1000 * mib)
    for _ in range(10):  # 10 MiB/s for 10 s, the watcher reading every 2 s
        clock.now += 1
        progress.add("models/Stable-diffusion/flux.safetensors", 10 * mib)
        if int(clock.now) % 2 == 0:
            progress.snapshot()
    [moving] = progress.snapshot()["files"]
    assert abs(moving["rate_bytes_per_s"] - 10 * mib) < mib
    assert 85 <= moving["eta_s"] <= 95
    for _ in range(10):  # then nothing for 20 s
        clock.now += 2
        progress.snapshot()
    [stalled] = progress.snapshot()["files"]
    assert stalled["rate_bytes_per_s"] == 0
    assert stalled["eta_s"] is None
    for _ in range(12):  # and 5 MiB/s again
        clock.now += 1
        progress.add("models/Stable-diffusion/flux.safetensors", 5 * mib)
        progress.snapshot()
    [again] = progress.snapshot()["files"]
    assert abs(again["rate_bytes_per_s"] - 5 * mib) < mib


KILLABLE_ENGINE = """
import json, sys
from forge_fleet.http_download import Settings, execute, make_plan
entry = {"source": "url", "url": sys.argv[1], "kind": "checkpoint", "label": "killed",
         "filename": "m.safetensors"}
options = Settings(connections=1)
print(json.dumps(execute(make_plan([entry], sys.argv[2], options), sys.argv[2], options)))
"""


def test_a_resume_record_save_cut_short_keeps_the_last_whole_record(tmp_path, monkeypatch):
    """The record is written beside its final name and renamed: a save that dies halfway
    (kill -9, full disk) leaves the previous resume point readable, never an empty file."""
    item = PlanItem(
        label=LABEL,
        destination="m.safetensors",
        kind="checkpoint",
        entry_key="k",
        sha256="a" * 64,
        url="https://example.invalid/m.safetensors",
    )
    partial = download_partial._Partial(item, str(tmp_path / "m.safetensors"))
    partial.save_state(1000)
    real_dump = json.dump

    def dump_then_die(obj, handle, **kwargs):
        handle.write(json.dumps(obj)[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_partial.json, "dump", dump_then_die)
    with pytest.raises(OSError):
        partial.save_state(2000)
    monkeypatch.setattr(download_partial.json, "dump", real_dump)
    with open(partial.state_path) as handle:
        assert json.load(handle)["prefix"] == 1000
    (tmp_path / "m.safetensors.partial").write_bytes(b"x" * 1500)
    assert partial.resume_point(hashlib.sha256(), 4096) == 1000
    partial.save_state(1500)  # the next save replaces the half-written one too
    with open(partial.state_path) as handle:
        assert json.load(handle)["prefix"] == 1500


def test_a_single_stream_killed_outright_resumes_from_its_saved_prefix(hub, tmp_path, forge):
    """kill -9 runs no cleanup: the resume point must already be on disk (saved every
    STATE_SAVE_S while the bytes stream), so the next run asks only for the rest."""
    source = real_model(tmp_path / "a", 3_000_000)
    url = hub.cdn_url(hub.add_blob(source))
    hub.state.bytes_per_second = 400_000
    module_utils = Path(http_download.__file__).resolve().parents[1]
    job = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_ENGINE, url, str(forge)],
        env={**os.environ, "PYTHONPATH": str(module_utils)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = forge / (TARGET + ".partial.json")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            saved = json.loads(state.read_text()).get("prefix", 0) if state.exists() else 0
            if saved > 0:
                break
            time.sleep(0.1)
    finally:
        job.kill()  # SIGKILL: no finally blocks, no state saved on the way out
        job.wait()
    assert saved > 0
    hub.state.bytes_per_second = None
    hub.state.log.clear()
    result = run([url_entry(url)], forge, fast())
    assert result["errors"] == []
    [request] = hub.cdn_requests()
    resumed_at = int(request["range"].split("=")[1].rstrip("-"))
    assert resumed_at >= saved
    assert sha(forge / TARGET) == sha(source)
