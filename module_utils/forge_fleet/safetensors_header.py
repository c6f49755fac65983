"""Read and check a safetensors header without touching the tensor data.

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data. The
JSON maps tensor names to ``{dtype, shape, data_offsets: [start, end]}`` (offsets relative to
the first byte after the header) and may hold ``__metadata__`` (string -> string).

``read_header`` reads at most 8 + N bytes, whatever the file size; every malformed input
becomes a ``HeaderError`` whose message is fit for an operator, never a traceback.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

MAX_HEADER_BYTES = 100_000_000  # the reference reader's limit

DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


class HeaderError(ValueError):
    """The file is not a readable safetensors file; the message says why."""


class Tensor:
    __slots__ = ("dtype", "end", "name", "shape", "start")

    def __init__(self, name: str, dtype: str, shape: list[int], start: int, end: int) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.start = start
        self.end = end


class Header:
    """A parsed header: tensors by name, metadata, and the sizes needed to check integrity."""

    def __init__(
        self,
        tensors: dict[str, Tensor],
        metadata: dict[str, str],
        header_length: int,
        file_size: int,
    ) -> None:
        self.tensors = tensors
        self.metadata = metadata
        self.header_length = header_length
        self.file_size = file_size

    def shape(self, name: str) -> list[int] | None:
        tensor = self.tensors.get(name)
        return tensor.shape if tensor else None


def looks_like_safetensors(prefix: bytes) -> bool:
    """True when the first 9 bytes are a plausible length followed by '{'."""
    if len(prefix) < 9:
        return False
    (length,) = struct.unpack("<Q", prefix[:8])
    return 2 <= length <= MAX_HEADER_BYTES and prefix[8:9] == b"{"


def read_header(path: str) -> Header:
    """Parse the header of the safetensors file at ``path`` (reads only the header)."""
    with open(path, "rb") as handle:
        file_size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise HeaderError(
                f"file is {file_size} bytes, too short for a safetensors header "
                "(an empty or truncated download)"
            )
        (length,) = struct.unpack("<Q", prefix)
        _check_length(length, file_size)
        raw = handle.read(length)
    return parse_header(prefix + raw, file_size)


def _check_length(length: int, file_size: int) -> None:
    if length > MAX_HEADER_BYTES:
        raise HeaderError(
            f"header length {length} bytes exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(not a safetensors file, or corrupted)"
        )
    if 8 + length > file_size:
        raise HeaderError(
            f"header length {length} runs past the end of the {file_size}-byte file "
            "(truncated download or not a safetensors file)"
        )


def parse_header(data: bytes, file_size: int) -> Header:
    """Parse ``data`` (the 8-byte length plus the JSON header) of a file of ``file_size`` bytes."""
    if len(data) < 8:
        raise HeaderError(f"file is {file_size} bytes, too short for a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    _check_length(length, file_size)
    raw = data[8 : 8 + length]
    if len(raw) < length:
        raise HeaderError(f"header is cut short: {len(raw)} of {length} bytes")
    if not raw.lstrip(b" ").startswith(b"{"):
        raise HeaderError("header does not start with '{' (not a safetensors file)")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise HeaderError("header is not valid UTF-8") from None
    except ValueError as error:
        raise HeaderError(f"header is not valid JSON ({error})") from None
    except RecursionError:
        raise HeaderError("header JSON is nested too deeply (not a safetensors header)") from None
    if not isinstance(document, dict):
        raise HeaderError(f"header JSON is a {type(document).__name__}, not an object")
    metadata = _metadata(document.pop("__metadata__", {}))
    tensors = {name: _tensor(name, entry) for name, entry in document.items()}
    return Header(tensors, metadata, length, file_size)


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise HeaderError("__metadata__ must map strings to strings")
    return value


def _tensor(name: str, entry: Any) -> Tensor:
    if not isinstance(entry, dict):
        raise HeaderError(f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise HeaderError(f"tensor {name!r}: dtype missing or not a string")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise HeaderError(f"tensor {name!r}: shape must be a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise HeaderError(f"tensor {name!r}: data_offsets must be two non-negative integers")
    return Tensor(name, dtype, shape, offsets[0], offsets[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def integrity(header: Header) -> str:
    """ "ok", or the first reason the data section is inconsistent with the header."""
    spans = []
    for tensor in header.tensors.values():
        size = DTYPE_SIZES.get(tensor.dtype)
        if size is None:
            return f"tensor {tensor.name!r}: unknown dtype {tensor.dtype!r}"
        expected = size
        for dim in tensor.shape:
            expected *= dim
        if tensor.end < tensor.start:
            return f"tensor {tensor.name!r}: data_offsets end before they start"
        if tensor.end - tensor.start != expected:
            return (
                f"tensor {tensor.name!r}: {tensor.end - tensor.start} bytes stored, "
                f"{expected} expected for shape {tensor.shape} {tensor.dtype}"
            )
        spans.append((tensor.start, tensor.end, tensor.name))
    spans.sort()
    position = 0
    for start, end, name in spans:
        if start < position:
            return f"tensor {name!r}: data overlaps the previous tensor (offset {start})"
        if start > position:
            return f"tensor {name!r}: gap in the data before offset {start}"
        position = end
    expected_size = 8 + header.header_length + position
    if header.file_size < expected_size:
        missing = expected_size - header.file_size
        return (
            f"file is {header.file_size} bytes, {expected_size} expected: "
            f"{missing} bytes missing (truncated download)"
        )
    if header.file_size > expected_size:
        return (
            f"file is {header.file_size} bytes, {expected_size} expected: "
            f"{header.file_size - expected_size} unexpected trailing bytes"
        )
    return "ok"
