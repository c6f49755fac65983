"""The header reader: integrity checks and every kind of bad input, never a traceback."""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_fleet.model_inspect import inspect_file, inspect_paths
from forge_fleet.safetensors_header import HeaderError, integrity, parse_header, read_header
from tests.fixtures import models as m

SMALL = {"a": ([2, 3], "F32"), "b": ([4], "F16")}


def write_raw(path, header: bytes | str, data_size: int = 0, length: int | None = None) -> str:
    raw = header.encode() if isinstance(header, str) else header
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw) if length is None else length) + raw)
        handle.write(b"\0" * data_size)
    return str(path)


def integrity_of(path) -> str:
    return inspect_file(str(path))["integrity"]


def test_sound_file_is_ok(tmp_path):
    path = m.write_model(tmp_path / "x.safetensors", SMALL, {"k": "v"})
    header = read_header(str(path))
    assert integrity(header) == "ok"
    assert header.metadata == {"k": "v"}
    assert header.shape("a") == [2, 3]


def test_truncated_download_is_caught_with_the_missing_bytes(tmp_path):
    path = m.write_model(tmp_path / "x.safetensors", m.sd_vae(), missing_bytes=4096)
    assert integrity_of(path).endswith("4096 bytes missing (truncated download)")


def test_trailing_bytes_are_caught(tmp_path):
    path = m.write_model(tmp_path / "x.safetensors", SMALL)
    with open(path, "ab") as handle:
        handle.write(b"junk")
    assert "4 unexpected trailing bytes" in integrity_of(path)


def test_huge_sparse_checkpoint_reads_only_its_header(tmp_path):
    path = m.write_model(tmp_path / "big.safetensors", m.sdxl_checkpoint(), pad_to=20 * 10**9)
    assert os.path.getsize(path) == 20 * 10**9
    result = inspect_file(str(path))
    assert (result["role"], result["integrity"]) == ("checkpoint", "ok")


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize(
    ("tensors", "data_size", "reason"),
    [
        ({"a": entry(offsets=(0, 8)), "b": entry(offsets=(4, 12))}, 12, "overlaps"),
        ({"a": entry(offsets=(0, 8)), "b": entry(offsets=(12, 20))}, 20, "gap in the data"),
        ({"a": entry(dtype="F33")}, 8, "unknown dtype 'F33'"),
        ({"a": entry(shape=(3,))}, 8, "8 bytes stored, 12 expected"),
        ({"a": entry(offsets=(8, 0))}, 8, "end before they start"),
    ],
)
def test_inconsistent_offsets_and_dtypes_are_findings(tmp_path, tensors, data_size, reason):
    path = write_raw(tmp_path / "x.safetensors", json.dumps(tensors), data_size)
    assert reason in integrity_of(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "0 bytes, too short"),
        (b"abc", "3 bytes, too short"),
        (struct.pack("<Q", 500) + b"{}", "runs past the end"),
        (struct.pack("<Q", 200_000_000) + b"{" + b" " * 100, "exceeds the 100000000-byte limit"),
        (struct.pack("<Q", 5) + b"{abc}", "not valid JSON"),
        (struct.pack("<Q", 4) + b"[{}]", "does not start with '{'"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "does not start with '{'"),
        (struct.pack("<Q", 3) + b"{\xff}", "not valid UTF-8"),
        (struct.pack("<Q", 8) + b'{"a": 1}', "entry is not an object"),
        (struct.pack("<Q", 22) + b'{"__metadata__": [1]} ', "__metadata__ must map"),
    ],
)
def test_bad_input_is_a_clear_per_file_finding(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert reason in integrity_of(path)


def test_header_json_that_is_not_an_object_is_refused():
    raw = b"  {" + b"}"
    with pytest.raises(HeaderError):
        parse_header(struct.pack("<Q", 2) + b"[]", 10)
    assert parse_header(struct.pack("<Q", len(raw)) + raw, 8 + len(raw)).tensors == {}


def test_unreadable_directory_is_a_finding_and_the_rest_is_still_checked(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    m.write_model(tmp_path / "ok.safetensors", SMALL)
    real_scandir = os.scandir

    def scandir(path="."):  # root reads every directory: refuse this one as the OS would
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    results = inspect_paths([str(locked), str(tmp_path / "ok.safetensors")])
    assert results[0]["path"] == str(locked)
    assert results[0]["integrity"] == "cannot read folder: Permission denied"
    assert results[1]["integrity"] == "ok"


def test_symlink_loop_is_a_finding_and_the_rest_is_still_checked(tmp_path):
    (tmp_path / "loop.safetensors").symlink_to(tmp_path / "loop.safetensors")
    m.write_model(tmp_path / "ok.safetensors", SMALL)
    results = {os.path.basename(r["path"]): r["integrity"] for r in inspect_paths([str(tmp_path)])}
    assert results == {"loop.safetensors": "broken or looping symlink", "ok.safetensors": "ok"}


def test_directory_symlink_loop_is_a_finding_and_does_not_hang(tmp_path):
    (tmp_path / "Lora").mkdir()
    (tmp_path / "Lora" / "again").symlink_to(tmp_path)
    m.write_model(tmp_path / "Lora" / "a.safetensors", SMALL)
    results = {r["path"]: r["integrity"] for r in inspect_paths([str(tmp_path)])}
    assert results == {
        str(tmp_path / "Lora" / "a.safetensors"): "ok",
        str(tmp_path / "Lora" / "again"): "symlink loop: this folder contains itself",
    }


def test_symlinked_model_folder_is_followed(tmp_path):
    disk = tmp_path / "data-disk"
    disk.mkdir()
    m.write_model(disk / "a.safetensors", SMALL)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "Lora").symlink_to(disk)
    results = inspect_paths([str(tmp_path / "models")])
    assert [(r["path"], r["integrity"]) for r in results] == [
        (str(tmp_path / "models" / "Lora" / "a.safetensors"), "ok")
    ]


def test_deeply_nested_header_json_is_a_finding():
    raw = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(HeaderError, match="nested too deeply"):
        parse_header(struct.pack("<Q", len(raw)) + raw, 8 + len(raw))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=0, max_value=2**20))
def test_fuzzed_bytes_never_raise_anything_but_header_error(data, file_size):
    try:
        header = parse_header(data, file_size)
    except HeaderError:
        return
    assert isinstance(integrity(header), str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "__metadata__", "c"]),
        json_values
        | st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(["F32", "F16", "X"]),
                "shape": st.lists(st.integers(-1, 4), max_size=3),
                "data_offsets": st.lists(st.integers(-1, 64), max_size=3),
            }
        ),
        max_size=4,
    ),
    st.integers(min_value=0, max_value=400),
)
def test_fuzzed_json_headers_never_raise_anything_but_header_error(document, extra):
    raw = json.dumps(document).encode()
    try:
        header = parse_header(struct.pack("<Q", len(raw)) + raw, 8 + len(raw) + extra)
    except HeaderError:
        return
    assert isinstance(integrity(header), str)
