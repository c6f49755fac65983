"""Pickle checkpoints are scanned opcode by opcode and never executed."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile

import pytest

from forge_fleet.model_inspect import inspect_file
from forge_fleet.pickle_scan import scan_file


class RunsCommand:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def write(tmp_path, name, payload: bytes):
    path = tmp_path / name
    path.write_bytes(payload)
    return str(path)


def torch_zip(tmp_path, name, data_pkl: bytes):
    """The zip layout of torch.save: archive/data.pkl, archive/version, archive/data/0."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", b"\0" * 64)
    return write(tmp_path, name, buffer.getvalue())


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_os_system_is_named_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = write(tmp_path, "evil.ckpt", pickle.dumps(RunsCommand(marker), protocol=protocol))
    result = inspect_file(path)
    assert result["format"] == "pickle"
    assert result["integrity"] == "dangerous import: posix.system"
    assert not marker.exists()


def test_stack_global_with_memoized_strings_is_resolved(tmp_path):
    # protocol 4 pushes module and name as strings, memoizes them, then STACK_GLOBAL
    payload = pickle.dumps(RunsCommand(tmp_path / "m"), protocol=4)
    assert b"\x93" in payload  # STACK_GLOBAL opcode
    assert "posix.system" in scan_file(write(tmp_path, "a.pt", payload)).dangerous


@pytest.mark.parametrize(("protocol", "spelled"), [(2, "__builtin__.eval"), (4, "builtins.eval")])
def test_builtins_eval_is_dangerous(tmp_path, protocol, spelled):
    marker = tmp_path / "evaluated"
    payload = pickle.dumps(EvalsCode(marker), protocol=protocol)
    result = inspect_file(write(tmp_path, "e.bin", payload))
    assert result["integrity"] == f"dangerous import: {spelled}"
    assert not marker.exists()


def test_payload_inside_a_zip_checkpoint_is_found(tmp_path):
    marker = tmp_path / "zipped"
    path = torch_zip(tmp_path, "model.ckpt", pickle.dumps(RunsCommand(marker), protocol=2))
    assert inspect_file(path)["integrity"] == "dangerous import: posix.system"
    assert not marker.exists()


def test_unresolvable_stack_global_counts_as_dangerous(tmp_path):
    # STACK_GLOBAL whose arguments come from a computed value, not string pushes
    payload = b"\x80\x04" + b"K\x01" + b"K\x02" + b"\x93" + b"."
    result = scan_file(write(tmp_path, "odd.pt", payload))
    assert result.dangerous == ["<unresolved STACK_GLOBAL>"]


def test_benign_state_dict_is_clean_but_still_reported_as_pickle(tmp_path):
    state = collections.OrderedDict(weight=[1.0, 2.0])
    path = torch_zip(tmp_path, "benign.ckpt", pickle.dumps(state, protocol=2))
    result = inspect_file(path)
    assert result["format"] == "pickle"
    assert result["integrity"] == "ok"
    assert result["details"]["pickle_globals"] == ["collections.OrderedDict"]


def test_unknown_global_is_refused_unless_allowed(tmp_path):
    payload = pickle.dumps(collections.Counter(a=1), protocol=2)
    path = write(tmp_path, "counter.pt", payload)
    assert (
        inspect_file(path)["integrity"]
        == "unknown import (refused unless allowed): collections.Counter"
    )
    allowed = frozenset({"collections.Counter"})
    assert inspect_file(path, allowed_globals=allowed)["integrity"] == "ok"


def test_legacy_torch_format_scans_every_leading_pickle(tmp_path):
    marker = tmp_path / "legacy"
    payload = (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)  # magic number
        + pickle.dumps(1001, protocol=2)  # protocol version
        + pickle.dumps({"little_endian": True}, protocol=2)  # sys info
        + pickle.dumps(RunsCommand(marker), protocol=2)  # the object
        + b"\x00\x01\x02raw tensor bytes"
    )
    assert inspect_file(write(tmp_path, "legacy.pt", payload))["integrity"].startswith(
        "dangerous import: posix.system"
    )
    assert not marker.exists()


def test_garbage_with_a_pickle_extension_is_a_finding(tmp_path):
    result = inspect_file(write(tmp_path, "junk.ckpt", b"<html>login</html>"))
    assert result["integrity"].startswith("not a readable pickle")


def test_damaged_zip_is_a_finding(tmp_path):
    result = inspect_file(write(tmp_path, "bad.ckpt", b"PK\x03\x04" + b"\0" * 20))
    assert result["integrity"].startswith("damaged zip checkpoint")


def test_stack_global_is_resolved_from_the_real_stack_not_the_last_strings(tmp_path):
    # push "os", "system", then "decoy" and POP it: STACK_GLOBAL imports os.system
    payload = (
        b"\x80\x04"
        + b"\x8c\x02os"
        + b"\x8c\x06system"
        + b"\x8c\x05decoy"
        + b"0"  # POP
        + b"\x93"  # STACK_GLOBAL
        + b"."
    )
    assert scan_file(write(tmp_path, "decoy.pt", payload)).dangerous == ["os.system"]


def test_extension_registry_import_counts_as_dangerous(tmp_path):
    payload = b"\x80\x02" + b"\x82\x01" + b"."  # EXT1 code 1: a global from copyreg's registry
    result = inspect_file(write(tmp_path, "ext.pt", payload))
    assert result["integrity"] == "dangerous import: <unresolved extension code 1>"


def test_pickle_claiming_gigabytes_is_refused_without_reading_them(tmp_path):
    payload = b"\x80\x04" + b"\x8e" + (8 * 2**30).to_bytes(8, "little") + b"tiny"  # BINBYTES8
    result = inspect_file(write(tmp_path, "claims.pt", payload))
    assert result["integrity"] == ("not a readable pickle: pickle claims more than 268435456 bytes")


def test_raw_storage_bytes_after_the_legacy_pickles_are_not_scanned(tmp_path):
    leading = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"little_endian": True}, protocol=2),
        pickle.dumps(collections.OrderedDict(w=1), protocol=2),
        pickle.dumps(["0"], protocol=2),
    ]
    # a storage of 640 elements starts with its size, 0x280 little-endian: b"\x80\x02..."
    raw = (640).to_bytes(8, "little") + b"cjunk\nglobal\n" + b"\0" * 64
    result = inspect_file(write(tmp_path, "legacy-ok.pt", b"".join(leading) + raw))
    assert result["integrity"] == "ok"
    assert result["details"]["pickle_globals"] == ["collections.OrderedDict"]
