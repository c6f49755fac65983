"""The Hugging Face / CivitAI stand-in honours the contracts the download engine relies on."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.doubles.model_hub import ModelHub

TOKEN = "hf_stand_in_token"
OTHER_TOKEN = "hf_token_without_access"
KEY = "civitai_stand_in_key"
ROOT = Path(__file__).resolve().parents[2]


def blob(path: Path, size: int = 300_000) -> Path:
    data = hashlib.sha256(path.name.encode()).digest() * (size // 32 + 1)
    path.write_bytes(data[:size])
    return path


def ask(url: str, method: str = "GET", headers: dict | None = None, context=None):
    """One request, no redirect following: (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        try:
            body = resp.read()
        except http.client.IncompleteRead as cut:
            body = cut.partial
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


@pytest.fixture
def hub(tmp_path):
    with ModelHub() as server:
        server.state.tokens.update({TOKEN, OTHER_TOKEN})
        server.state.granted.add(TOKEN)
        server.state.civitai_keys.add(KEY)
        server.add_hf_file("org/open", "ae.safetensors", blob(tmp_path / "ae.safetensors"))
        server.add_hf_file(
            "org/gated", "flux.safetensors", blob(tmp_path / "flux.safetensors"), gated=True
        )
        server.add_civitai_version(
            202, 20, blob(tmp_path / "lora.safetensors"), name="lora.safetensors"
        )
        server.add_civitai_version(
            303, 30, blob(tmp_path / "paid.safetensors"), name="paid.safetensors", restricted=True
        )
        server.add_civitai_version(
            404,
            40,
            blob(tmp_path / "early.safetensors"),
            name="early.safetensors",
            restricted=True,
            login_page=True,
        )
        yield server


def resolve(hub: ModelHub, repo="org/open", file="ae.safetensors", token=TOKEN, rev="main"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return ask(f"{hub.api_url}/{repo}/resolve/{rev}/{file}", "HEAD", headers)


def test_resolve_head_gives_sha256_size_commit_and_a_redirect_to_the_cdn(hub, tmp_path):
    status, headers, body = resolve(hub)
    expected = hashlib.sha256((tmp_path / "ae.safetensors").read_bytes()).hexdigest()
    assert status == 302
    assert headers["x-linked-etag"] == f'"{expected}"'
    assert headers["x-linked-size"] == "300000"
    assert headers["x-repo-commit"]
    assert headers["location"].startswith(hub.cdn_base + "/blob/")
    assert body == b""


def test_cdn_serves_the_file_without_credentials(hub, tmp_path):
    location = resolve(hub)[1]["location"]
    status, _, body = ask(location)
    assert status == 200
    assert body == (tmp_path / "ae.safetensors").read_bytes()


def test_storage_host_rejects_a_request_carrying_authorization(hub):
    location = resolve(hub)[1]["location"]
    status, _, body = ask(location, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 400
    assert b"Only one auth mechanism allowed" in body


def test_cdn_honours_range_with_206_and_content_range(hub, tmp_path):
    location = resolve(hub)[1]["location"]
    status, headers, body = ask(location, headers={"Range": "bytes=1000-1999"})
    assert status == 206
    assert headers["content-range"] == "bytes 1000-1999/300000"
    assert headers["accept-ranges"] == "bytes"
    assert body == (tmp_path / "ae.safetensors").read_bytes()[1000:2000]


def test_gated_repo_answers_401_without_a_token(hub):
    status, headers, _ = ask(f"{hub.api_url}/org/gated/resolve/main/flux.safetensors", "GET")
    assert status == 401
    assert headers["x-error-code"] == "GatedRepo"


def test_gated_repo_answers_403_naming_the_repo_for_a_token_not_granted(hub):
    status, headers, body = ask(
        f"{hub.api_url}/org/gated/resolve/main/flux.safetensors",
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
    )
    assert status == 403
    assert headers["x-error-code"] == "GatedRepo"
    assert "org/gated" in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("repo", "file", "code"),
    [("org/nothing", "ae.safetensors", "RepoNotFound"), ("org/open", "x.bin", "EntryNotFound")],
)
def test_missing_repo_or_file_answers_404_with_its_error_code(hub, repo, file, code):
    status, headers, _ = resolve(hub, repo=repo, file=file)
    assert status == 404
    assert headers["x-error-code"] == code


def test_busy_cdn_answers_429_with_retry_after_then_serves(hub):
    hub.state.fail_statuses = [429]
    hub.state.retry_after = "3"
    location = resolve(hub)[1]["location"]
    first = ask(location)
    second = ask(location)
    assert (first[0], first[1]["retry-after"]) == (429, "3")
    assert second[0] == 200


def test_api_failure_knob_answers_500_once(hub):
    hub.state.api_fail_statuses = [500]
    assert resolve(hub)[0] == 500
    assert resolve(hub)[0] == 302


def test_civitai_version_lists_files_with_uppercase_sha256_and_size(hub, tmp_path):
    status, _, body = ask(f"{hub.api_url}/api/v1/model-versions/202")
    version = json.loads(body)
    (file,) = version["files"]
    expected = hashlib.sha256((tmp_path / "lora.safetensors").read_bytes()).hexdigest()
    assert status == 200
    assert file["hashes"]["SHA256"] == expected.upper()
    assert file["sizeKB"] == pytest.approx(300_000 / 1024)
    assert version["model"]["type"] == "LORA"
    assert not any(key.startswith("_") for key in version)


def test_civitai_model_lists_versions_newest_first(hub, tmp_path):
    hub.add_civitai_version(203, 20, blob(tmp_path / "newer.safetensors"), name="n.safetensors")
    _, _, body = ask(f"{hub.api_url}/api/v1/models/20")
    assert [v["id"] for v in json.loads(body)["modelVersions"]] == [203, 202]


def test_civitai_download_redirects_to_storage_with_the_file_name(hub):
    status, headers, _ = ask(
        f"{hub.api_url}/api/download/models/303", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert status == 307
    assert headers["location"].startswith(hub.cdn_base)
    assert headers["content-disposition"] == 'attachment; filename="paid.safetensors"'


def test_civitai_restricted_download_without_a_key_answers_401_json(hub):
    status, headers, body = ask(f"{hub.api_url}/api/download/models/303")
    assert status == 401
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "Unauthorized"}


def test_civitai_login_page_is_html(hub):
    status, headers, _ = ask(f"{hub.api_url}/api/download/models/404")
    page = ask(urllib.parse.urljoin(hub.api_url, headers["location"]))
    assert status == 302
    assert page[0] == 200
    assert page[1]["content-type"].startswith("text/html")
    assert b"<html>" in page[2]


def test_connection_is_dropped_mid_body(hub):
    hub.state.drop_after_bytes = 100_000
    location = resolve(hub)[1]["location"]
    status, headers, body = ask(location)
    assert status == 200
    assert headers["content-length"] == "300000"
    assert len(body) == 100_000


def test_bandwidth_cap_slows_each_connection(hub):
    hub.state.bytes_per_second = 1_000_000
    location = resolve(hub)[1]["location"]
    began = time.monotonic()
    status, _, body = ask(location)
    assert status == 200
    assert len(body) == 300_000
    assert time.monotonic() - began >= 0.25


def test_request_log_records_method_path_header_names_and_range(hub):
    location = resolve(hub)[1]["location"]
    ask(location, headers={"Range": "bytes=5-"})
    api, cdn = hub.api_requests()[-1], hub.cdn_requests()[-1]
    assert (api["method"], api["path"]) == ("HEAD", "/org/open/resolve/main/ae.safetensors")
    assert api["authorization"] is True
    assert "authorization" in api["headers"]
    assert TOKEN not in json.dumps(hub.state.log)
    assert (cdn["method"], cdn["range"], cdn["authorization"]) == ("GET", "bytes=5-", False)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", ""])
def test_refuses_to_listen_on_a_wildcard_address(address):
    with pytest.raises(ValueError, match="refusing to listen"):
        ModelHub(address)


def test_serve_takes_a_mapping_of_real_files(tmp_path):
    with ModelHub().serve(
        hf={("org/sd", "v1.safetensors"): blob(tmp_path / "v1.safetensors")},
        civitai={4711: blob(tmp_path / "ckpt.safetensors")},
    ) as server:
        assert resolve(server, repo="org/sd", file="v1.safetensors", token=None)[0] == 302
        _, _, body = ask(f"{server.api_url}/api/v1/model-versions/4711")
        assert json.loads(body)["model"]["type"] == "Checkpoint"


def test_serves_https_with_a_lab_certificate(tmp_path):
    tls = pytest.importorskip("lab.tls")
    cert, key = tls.issue_server_cert(["127.0.0.1"], tmp_path)
    context = ssl.create_default_context(cafile=str(tls.CA_CERT))
    with ModelHub(tls=(str(cert), str(key))) as server:
        server.add_hf_file("org/open", "ae.safetensors", blob(tmp_path / "ae.safetensors"))
        status, headers, _ = ask(
            f"{server.api_url}/org/open/resolve/main/ae.safetensors", "HEAD", context=context
        )
        assert server.api_url.startswith("https://127.0.0.1:")
        assert status == 302
        assert headers["location"].startswith("https://")
        assert ask(headers["location"], context=context)[0] == 200


def test_runs_standalone_and_prints_its_addresses(tmp_path):
    model = blob(tmp_path / "ae.safetensors")
    command = [sys.executable, "-m", "tests.doubles.model_hub", "--api-port", "0"]
    command += ["--cdn-port", "0", "--hf", "org/open", "ae.safetensors", str(model)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline().split()
            api = line[line.index("api") + 1]
            status, _, _ = ask(f"{api}/org/open/resolve/main/ae.safetensors", "HEAD")
        finally:
            proc.terminate()
    assert api.startswith("http://127.0.0.1:")
    assert status == 302
