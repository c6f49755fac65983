"""The fleet model cache's logic without AzCopy: SAS handling, AzCopy's answers, what the
stager uploads (the lab test, tests/integration/test_model_cache.py, runs it for real)."""

from __future__ import annotations

import hashlib

import pytest

from forge_fleet.model_cache import Cache, _why, redact, split_sas_url, stage

SAS = "https://acct.blob.core.windows.net/models?sv=2024-01-01&sp=rl&sr=c&sig=SECRETSIG%3D"
A, B = "a" * 64, "b" * 64


def test_split_sas_url_keeps_the_container_and_the_token_apart():
    assert split_sas_url(SAS) == (
        "https://acct.blob.core.windows.net/models",
        "sv=2024-01-01&sp=rl&sr=c&sig=SECRETSIG%3D",
    )


@pytest.mark.parametrize(
    "url", ["https://acct.blob.core.windows.net/models", "http://x/y?sig=1", "https://acct?sig=1"]
)
def test_a_url_that_is_no_container_sas_is_refused_with_the_expected_form(url):
    with pytest.raises(
        ValueError, match=r"https://<account>\.blob\.core\.windows\.net/<container>"
    ):
        split_sas_url(url)


def test_the_cache_never_shows_its_token():
    cache = Cache(SAS, "azcopy")
    assert "SECRETSIG" not in repr(cache)
    assert redact(f"error for {cache.url(A)} (403)") == (
        f"error for https://acct.blob.core.windows.net/models/{A}"
        "?sv=<hidden>&sp=<hidden>&sr=<hidden>&sig=<hidden> (403)"
    )


@pytest.mark.parametrize(
    ("output", "why"),
    [
        ("Cannot perform copy due to error: The specified file was not found.", "not in the cache"),
        ("RESPONSE 404: BlobNotFound", "not in the cache"),
        ("AuthorizationPermissionMismatch", "the cache refused the SAS (403)"),
        ("line one\nsomething else broke\n", "AzCopy exit 1: something else broke"),
    ],
)
def test_azcopy_answers_are_named_for_the_operator(output, why):
    assert _why(1, output) == why


class FakeCache:
    """The listing and the uploads of a stager, without AzCopy."""

    def __init__(self, present):
        self.present, self.pushed = present, []

    def listing(self):
        return dict(self.present)

    def push(self, path, sha):
        self.pushed.append((path, sha))


def files(tmp_path):
    out = []
    for name, data in (("a", b"a" * 10), ("b", b"b" * 20)):
        path = tmp_path / name
        path.write_bytes(data)
        out.append(
            {"label": name, "path": str(path), "sha256": hashlib.sha256(data).hexdigest(),
             "size": len(data)}
        )  # fmt: skip
    return out


def test_the_stager_uploads_only_missing_or_wrong_size_objects(tmp_path):
    a, b = files(tmp_path)
    cache = FakeCache({a["sha256"]: 10, b["sha256"]: 7})
    result = stage(cache, [a, b], [], check_mode=False)
    assert cache.pushed == [(b["path"], b["sha256"])]
    assert result["changed"] and result["cached"] == [a["sha256"]]
    assert [u["sha256"] for u in result["uploaded"]] == [b["sha256"]]


def test_a_damaged_object_is_replaced_even_when_its_size_is_right(tmp_path):
    a, b = files(tmp_path)
    cache = FakeCache({a["sha256"]: 10, b["sha256"]: 20})
    result = stage(cache, [a, b], [a["sha256"]], check_mode=False)
    assert cache.pushed == [(a["path"], a["sha256"])]
    assert [r["sha256"] for r in result["replaced"]] == [a["sha256"]]


def test_check_mode_lists_and_uploads_nothing(tmp_path):
    a, b = files(tmp_path)
    cache = FakeCache({})
    result = stage(cache, [a, b], [], check_mode=True)
    assert cache.pushed == []
    assert result["changed"] and len(result["uploaded"]) == 2


def test_a_file_without_a_known_sha256_is_skipped_and_said(tmp_path):
    a, _ = files(tmp_path)
    result = stage(FakeCache({}), [{**a, "sha256": None}], [], check_mode=False)
    assert result["skipped"] == ["a: no sha256 known in advance, not cacheable"]
    assert not result["changed"]


def test_the_real_push_refuses_a_local_copy_whose_bytes_changed(tmp_path):
    a, _ = files(tmp_path)
    cache = Cache(SAS, "/nonexistent/azcopy")
    with pytest.raises(RuntimeError, match="no longer has sha256"):
        cache.push(a["path"], B)
