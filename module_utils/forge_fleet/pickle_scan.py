"""Scan legacy pickle checkpoints (.ckpt, .pt, .bin) opcode by opcode, never unpickling.

Loading a pickle runs whatever callables it names; scanning only reads the opcodes and
collects the globals it would import (``GLOBAL``/``INST`` arguments and ``STACK_GLOBAL``
targets resolved from the preceding string pushes or memo reads). Zip-format torch files
(``PK\\x03\\x04``) are scanned member by member; legacy torch files hold several pickles in
a row before the raw data.
"""

from __future__ import annotations

import pickletools
import zipfile
from typing import BinaryIO

DANGEROUS_MODULES = {
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "socket",
    "shutil",
    "runpy",
    "pickle",
    "_pickle",
    "pdb",
    "pty",
    "ctypes",
    "asyncio",
    "webbrowser",
    "urllib.request",
    "requests.api",
    "pip",
    "importlib",
    "code",
    "commands",
}
DANGEROUS_BUILTINS = {
    "eval",
    "exec",
    "execfile",
    "compile",
    "getattr",
    "setattr",
    "delattr",
    "open",
    "apply",
    "breakpoint",
    "__import__",
    "input",
    "globals",
    "locals",
    "vars",
}
DANGEROUS_NAMES = {
    "functools.partial",
    "operator.attrgetter",
    "operator.methodcaller",
    "operator.itemgetter",
    "types.CodeType",
    "types.FunctionType",
    "torch.serialization.load",
    "torch.load",
}
SAFE_NAMES = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy.dtype",
    "numpy.ndarray",
    "_codecs.encode",
    "builtins.set",
    "builtins.slice",
    "torch.Size",
    "torch.device",
    "torch.float16",
    "torch.float32",
    "torch.bfloat16",
}
STORAGE_SUFFIX = "Storage"
_STRING_OPS = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}
MAX_PICKLE_BYTES = 256 * 1024 * 1024  # a pickle that describes tensors is far smaller
# A legacy torch file holds 5 pickles (magic number, protocol, system info, the state, the
# storage keys) and then raw storage bytes, which torch never unpickles.
MAX_PICKLES = 5
_MARK = object()  # a MARK on the simulated stack
_OTHER = object()  # any value the scanner does not track


class ScanResult:
    """What a scan found: every global, the dangerous and the unknown ones, or an error."""

    def __init__(self) -> None:
        self.globals: list[str] = []
        self.dangerous: list[str] = []
        self.unknown: list[str] = []
        self.error: str | None = None

    def add(self, name: str, allowed: frozenset[str]) -> None:
        if name in self.globals:
            return
        self.globals.append(name)
        verdict = classify(name)
        if verdict == "dangerous":
            self.dangerous.append(name)
        elif verdict == "unknown" and name not in allowed:
            self.unknown.append(name)

    @property
    def integrity(self) -> str:
        if self.error:
            return self.error
        if self.dangerous:
            return "dangerous import: " + ", ".join(self.dangerous)
        if self.unknown:
            return "unknown import (refused unless allowed): " + ", ".join(self.unknown)
        return "ok"


def classify(name: str) -> str:
    """ "safe", "dangerous" or "unknown" for a global ``module.name``."""
    module, _, attr = name.rpartition(".")
    if name in SAFE_NAMES or (module == "torch" and attr.endswith(STORAGE_SUFFIX)):
        return "safe"
    if module in ("builtins", "__builtin__", "__builtins__") and attr in DANGEROUS_BUILTINS:
        return "dangerous"
    if name in DANGEROUS_NAMES or name.startswith("<unresolved"):
        return "dangerous"
    root = module.split(".")[0]
    if module in DANGEROUS_MODULES or root in DANGEROUS_MODULES:
        return "dangerous"
    return "unknown"


def scan_file(path: str, allowed_globals: frozenset[str] = frozenset()) -> ScanResult:
    """Scan the pickle file at ``path``; never raises for bad content, never unpickles.

    Memory stays bounded whatever the file size: opcodes are read as a stream, and no
    opcode may claim more than ``MAX_PICKLE_BYTES``.
    """
    result = ScanResult()
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
            handle.seek(0)
            if magic == b"PK\x03\x04":
                _scan_zip(handle, result, allowed_globals)
            else:
                _scan_stream(handle, result, allowed_globals)
    except OSError as error:
        result.error = f"cannot read: {error.strerror or error}"
    return result


def _scan_zip(handle: BinaryIO, result: ScanResult, allowed: frozenset[str]) -> None:
    try:
        archive = zipfile.ZipFile(handle)
        members = [
            info
            for info in archive.infolist()
            if info.filename.endswith(".pkl") or _starts_like_pickle(archive, info)
        ]
        if not members:
            result.error = "zip file holds no pickle (not a torch checkpoint)"
            return
        for info in members:
            with archive.open(info) as member:
                _scan_stream(member, result, allowed)
    # zipfile raises many kinds for damaged archives; every one is a finding.
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as error:
        result.error = f"damaged zip checkpoint: {error}"


def _starts_like_pickle(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    if info.file_size < 2 or info.filename.endswith("/"):
        return False
    with archive.open(info) as member:
        head = member.read(2)
    return _is_pickle_start(head)


def _is_pickle_start(head: bytes) -> bool:
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


class _Bounded:
    """A read-only view of a stream that refuses to read more than ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._left = limit
        self.consumed = 0

    def _take(self, wanted: int) -> None:
        if wanted > self._left:
            raise ValueError(f"pickle claims more than {MAX_PICKLE_BYTES} bytes")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._left
        self._take(size)
        data = self._stream.read(size)
        self._left -= len(data)
        self.consumed += len(data)
        return data

    def readline(self) -> bytes:
        line = self._stream.readline(min(self._left, 1 << 20) + 1)
        self._take(len(line))
        self._left -= len(line)
        self.consumed += len(line)
        return line


def _scan_stream(stream: BinaryIO, result: ScanResult, allowed: frozenset[str]) -> None:
    """Scan the pickles at the start of ``stream`` one after another (legacy torch: several)."""
    for index in range(MAX_PICKLES):
        if index and not _is_pickle_start(_peek(stream, 2)):
            return  # what follows the pickles is raw tensor data, or nothing
        bounded = _Bounded(stream, MAX_PICKLE_BYTES)
        try:
            _scan_one(bounded, result, allowed)
        # Any parse failure is a finding, never a crash.
        except Exception as error:
            if index == 0:
                result.error = f"not a readable pickle: {error}"
            # A later "pickle" may be raw storage bytes that happen to start like one; the
            # globals met before the failure are recorded either way.
            return
        if bounded.consumed == 0:
            return


def _peek(stream: BinaryIO, size: int) -> bytes:
    """The next ``size`` bytes without consuming them."""
    position = stream.tell()
    head = stream.read(size)
    stream.seek(position)
    return head


def _scan_one(stream: _Bounded, result: ScanResult, allowed: frozenset[str]) -> None:
    """Walk one pickle's opcodes, simulating just enough of the stack to name its globals.

    Strings and memo entries are tracked so ``STACK_GLOBAL`` is resolved from the two values
    really on top of the stack; anything else there counts as unresolvable (dangerous).
    """
    stack: list[object] = []
    memo: dict[int, object] = {}
    for opcode, arg, _pos in pickletools.genops(stream):
        if opcode.name == "STOP":
            return
        _record_global(opcode.name, arg, stack, result, allowed)
        _simulate(opcode, arg, stack, memo)


def _record_global(
    name: str, arg: object, stack: list[object], result: ScanResult, allowed: frozenset[str]
) -> None:
    """Add the global an import opcode names (before the opcode changes the stack)."""
    if name in ("GLOBAL", "INST"):
        module, _, attr = str(arg).partition(" ")
        result.add(f"{module}.{attr}", allowed)
    elif name == "STACK_GLOBAL":
        module, attr = (stack[-2], stack[-1]) if len(stack) >= 2 else (_OTHER, _OTHER)
        if isinstance(module, str) and isinstance(attr, str):
            result.add(f"{module}.{attr}", allowed)
        else:
            result.add("<unresolved STACK_GLOBAL>", allowed)
    elif name in ("EXT1", "EXT2", "EXT4"):
        result.add(f"<unresolved extension code {arg}>", allowed)


def _simulate(
    opcode: pickletools.OpcodeInfo, arg: object, stack: list[object], memo: dict[int, object]
) -> None:
    """Track strings through the stack and the memo; everything else is an opaque value."""
    name = opcode.name
    if name in _STRING_OPS:
        stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1] if stack else _OTHER
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[int(arg)] = stack[-1] if stack else _OTHER  # type: ignore[call-overload]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(int(arg), _OTHER))  # type: ignore[call-overload]
    elif name == "DUP":
        stack.append(stack[-1] if stack else _OTHER)
    else:
        _apply_stack_effect(opcode, stack)


def _pop(stack: list[object]) -> object:
    return stack.pop() if stack else _OTHER


def _apply_stack_effect(opcode: pickletools.OpcodeInfo, stack: list[object]) -> None:
    """Pop and push what ``opcode`` does, per pickletools' own description of it."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        while stack and stack[-1] is not _MARK:
            stack.pop()
        if stack:
            stack.pop()
        for _ in before[: before.index(pickletools.markobject)]:
            _pop(stack)
    else:
        for _ in before:
            _pop(stack)
    for item in opcode.stack_after:
        stack.append(_MARK if item is pickletools.markobject else _OTHER)
