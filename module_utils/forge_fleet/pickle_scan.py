"""Scan legacy pickle checkpoints (.ckpt, .pt, .bin) opcode by opcode, never unpickling.

Loading a pickle runs whatever callables it names; scanning only reads the opcodes and
collects the globals it would import (``GLOBAL``/``INST`` arguments and ``STACK_GLOBAL``
targets resolved from the preceding string pushes or memo reads). Zip-format torch files
(``PK\\x03\\x04``) are scanned member by member; legacy torch files hold several pickles in
a row before the raw data.
"""

from __future__ import annotations

import io
import pickletools
import zipfile

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
MAX_SCAN_BYTES = 512 * 1024 * 1024  # pickles that describe tensors are small


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
    """Scan the pickle file at ``path``; never raises for bad content."""
    result = ScanResult()
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
            handle.seek(0)
            if magic == b"PK\x03\x04":
                _scan_zip(handle, result, allowed_globals)
            else:
                _scan_stream(handle.read(MAX_SCAN_BYTES), result, allowed_globals)
    except OSError as error:
        result.error = f"cannot read: {error.strerror or error}"
    return result


def _scan_zip(handle: io.BufferedReader, result: ScanResult, allowed: frozenset[str]) -> None:
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
            _scan_stream(archive.read(info)[:MAX_SCAN_BYTES], result, allowed)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as error:
        result.error = f"damaged zip checkpoint: {error}"


def _starts_like_pickle(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    if info.file_size < 2 or info.filename.endswith("/"):
        return False
    with archive.open(info) as member:
        head = member.read(2)
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def _scan_stream(data: bytes, result: ScanResult, allowed: frozenset[str]) -> None:
    """Scan the pickles at the start of ``data`` one after another (legacy torch: several)."""
    stream = io.BytesIO(data)
    scanned = 0
    while stream.tell() < len(data):
        start = stream.tell()
        try:
            _scan_one(stream, result, allowed)
        # Any parse failure is a finding, never a crash.
        except Exception as error:
            if scanned == 0:
                result.error = f"not a readable pickle: {error}"
            # After the first pickles a legacy torch file holds raw tensor bytes: stop there.
            return
        scanned += 1
        if stream.tell() == start:
            return


def _scan_one(stream: io.BytesIO, result: ScanResult, allowed: frozenset[str]) -> None:
    strings: list[object] = []  # values pushed by string opcodes and memo reads, in order
    memo: dict[int, object] = {}
    last: object = None
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            result.add(f"{module}.{attr}", allowed)
            last = None
        elif name == "STACK_GLOBAL":
            if len(strings) >= 2 and all(isinstance(s, str) for s in strings[-2:]):
                module, attr = strings[-2], strings[-1]
                result.add(f"{module}.{attr}", allowed)
            else:
                result.add("<unresolved STACK_GLOBAL>", allowed)
            last = None
        elif name in _STRING_OPS:
            value = arg.decode("latin-1") if isinstance(arg, bytes) else arg
            strings.append(value)
            last = value
        elif name == "MEMOIZE":
            memo[len(memo)] = last
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = last
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            last = memo.get(int(arg))
            strings.append(last)
        elif name == "STOP":
            return
        else:
            last = None
