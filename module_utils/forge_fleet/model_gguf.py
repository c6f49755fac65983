"""Read the tensor listing of a GGUF file (quantised Flux/SDXL models Forge loads) from its header.

Layout (version 2 and 3): ``GGUF``, u32 version, u64 tensor count, u64 metadata count, the
metadata (key, type, value), then per tensor: name, u32 dims, u64 dims (innermost first),
u32 ggml type, u64 offset into the data section, which starts at the next multiple of
``general.alignment`` (32 by default). Only the header is read. The result is a
``safetensors_header.Header`` (shapes in torch order), so the same detection applies.
"""

from __future__ import annotations

import os
import struct
from typing import Any, BinaryIO

from .safetensors_header import Header, HeaderError, Tensor

MAX_ENTRIES = 1_000_000
MAX_HEADER_BYTES = 100_000_000
# ggml type -> (elements per block, bytes per block), for the types model files use
GGML_BLOCKS = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    30: (1, 2),  # BF16
}
GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0"}
GGML_NAMES.update({10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"})
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})


class _Reader:
    """Reads little-endian values, refusing to run past the file or the header limit."""

    def __init__(self, handle: BinaryIO, file_size: int) -> None:
        self.handle = handle
        self.left = min(file_size, MAX_HEADER_BYTES)

    def take(self, size: int) -> bytes:
        if size > self.left:
            raise HeaderError("GGUF header runs past the end of the file (truncated or damaged)")
        data = self.handle.read(size)
        if len(data) < size:
            raise HeaderError("GGUF header is cut short (truncated download)")
        self.left -= size
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.scalar("<Q")).decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item_kind, count = self.scalar("<I"), self.scalar("<Q")
            if count > MAX_ENTRIES * 10:
                raise HeaderError(f"GGUF metadata array of {count} items (damaged header)")
            return [self.value(item_kind) for _ in range(count)]
        raise HeaderError(f"GGUF metadata has unknown value type {kind} (damaged header)")


def read_gguf(path: str) -> tuple[Header, dict[str, Any], str]:
    """(header in torch shape order, GGUF metadata, integrity) of the GGUF file at ``path``.

    Raises HeaderError (with an operator-ready message) when the header is unreadable.
    """
    with open(path, "rb") as handle:
        file_size = os.fstat(handle.fileno()).st_size
        reader = _Reader(handle, file_size)
        if reader.take(4) != b"GGUF":
            raise HeaderError("no GGUF magic")
        version = reader.scalar("<I")
        if version not in (2, 3):
            raise HeaderError(f"GGUF version {version} is not supported (2 and 3 are)")
        tensor_count, kv_count = reader.scalar("<Q"), reader.scalar("<Q")
        if tensor_count > MAX_ENTRIES or kv_count > MAX_ENTRIES:
            raise HeaderError(f"GGUF header claims {tensor_count} tensors (damaged header)")
        metadata = {}
        for _ in range(kv_count):
            key = reader.string()
            metadata[key] = reader.value(reader.scalar("<I"))
        tensors, end = {}, 0
        for _ in range(tensor_count):
            name = reader.string()
            n_dims = reader.scalar("<I")
            if n_dims > 8:
                raise HeaderError(f"GGUF tensor {name!r} has {n_dims} dimensions (damaged header)")
            dims = [reader.scalar("<Q") for _ in range(n_dims)]
            kind, offset = reader.scalar("<I"), reader.scalar("<Q")
            shape = list(reversed(dims))
            size = _nbytes(dims, kind)
            tensors[name] = Tensor(name, GGML_NAMES.get(kind, f"ggml{kind}"), shape, offset, 0)
            end = max(end, offset + (size or 0))
        header_end = handle.tell()
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = 32
    data_start = -(-header_end // alignment) * alignment
    header = Header(tensors, {}, header_end, file_size)
    integrity = "ok"
    if data_start + end > file_size:
        missing = data_start + end - file_size
        integrity = (
            f"file is {file_size} bytes, at least {data_start + end} expected: "
            f"{missing} bytes missing (truncated download)"
        )
    return header, metadata, integrity


def _nbytes(dims: list[int], kind: int) -> int | None:
    block = GGML_BLOCKS.get(kind)
    if block is None:
        return None
    elements = 1
    for dim in dims:
        elements *= dim
    per_block, block_bytes = block
    return -(-elements // per_block) * block_bytes
