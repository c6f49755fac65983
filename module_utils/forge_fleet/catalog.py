"""The model catalog: what an operator declares in group_vars, checked before any byte moves.

An entry names one file and where it comes from::

    {"source": "huggingface", "repo": "comfyanonymous/flux_text_encoders",
     "file": "clip_l.safetensors", "kind": "text_encoder"}
    {"source": "civitai", "version_id": 128713, "precision": "fp16"}
    {"source": "url", "url": "https://example.org/x.safetensors", "kind": "lora",
     "sha256": "...", "filename": "x.safetensors"}

``normalize_catalog`` expands named bundles, checks every entry's keys and values, routes
each file to its Forge folder by kind, and reports every problem at once. Destinations that
depend on a remote answer (a CivitAI file name, a kind from CivitAI's model type) are
completed later by the download plan; ``find_duplicate_destinations`` runs again then.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from .download_http import public_url
from .vocabulary import FAMILIES, KIND_DIRS

# CivitAI `model.type` -> kind, for entries that do not declare one.
CIVITAI_TYPE_KINDS: dict[str, str] = {
    "Checkpoint": "checkpoint",
    "LORA": "lora",
    "LoCon": "lora",
    "DoRA": "lora",
    "TextualInversion": "embedding",
    "VAE": "vae",
    "Controlnet": "controlnet",
    "Upscaler": "upscaler",
}

COMMON_KEYS = {"source", "kind", "sha256", "filename", "name", "base_model"}
SOURCE_KEYS: dict[str, dict[str, set]] = {
    "huggingface": {"required": {"repo", "file"}, "optional": {"revision"}},
    "civitai": {
        "required": set(),
        "optional": {"model_id", "version_id", "type", "format", "precision", "size"},
    },
    "url": {"required": {"url"}, "optional": {"headers"}},
}
CIVITAI_FORMATS = ("SafeTensor", "PickleTensor", "GGUF", "Other")
CIVITAI_PRECISIONS = ("fp16", "fp8", "bf16", "fp32", "nf4")
CIVITAI_SIZES = ("full", "pruned")

# Bundles an instructor names in one line (models_bundles: [flux1_dev_fp8]).
BUNDLES: dict[str, list[dict[str, Any]]] = {
    "flux1_dev_fp8": [
        {
            "source": "huggingface",
            "repo": "Kijai/flux-fp8",
            "file": "flux1-dev-fp8.safetensors",
            "kind": "diffusion_model",
            "base_model": "flux_dev",
        },
        {
            "source": "huggingface",
            "repo": "black-forest-labs/FLUX.1-dev",
            "file": "ae.safetensors",
            "kind": "vae",
        },
        {
            "source": "huggingface",
            "repo": "comfyanonymous/flux_text_encoders",
            "file": "clip_l.safetensors",
            "kind": "text_encoder",
        },
        {
            "source": "huggingface",
            "repo": "comfyanonymous/flux_text_encoders",
            "file": "t5xxl_fp8_e4m3fn.safetensors",
            "kind": "text_encoder",
        },
    ],
    "sd15": [
        {
            "source": "huggingface",
            "repo": "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "file": "v1-5-pruned-emaonly.safetensors",
            "kind": "checkpoint",
            "base_model": "sd1",
        },
    ],
    "sdxl_base": [
        {
            "source": "huggingface",
            "repo": "stabilityai/stable-diffusion-xl-base-1.0",
            "file": "sd_xl_base_1.0.safetensors",
            "kind": "checkpoint",
            "base_model": "sdxl",
        },
    ],
}

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+ ()-]*$")


class CatalogError(ValueError):
    """The catalog cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# What an entry says about itself, in this order, when nothing shorter names it.
_TELLING_KEYS = ("source", "repo", "file", "url", "model_id", "version_id")


def describe(entry: dict[str, Any], index: int, where: str = "models_catalog") -> str:
    """How findings name an entry: its position, and its name or what it points at."""
    source = entry.get("source")
    if entry.get("name"):
        what = str(entry["name"])
    elif source == "huggingface" and entry.get("repo") and entry.get("file"):
        what = f"{entry['repo']}/{entry['file']}"
    elif source == "civitai" and entry.get("version_id"):
        what = f"civitai version {entry['version_id']}"
    elif source == "civitai" and entry.get("model_id"):
        what = f"civitai model {entry['model_id']}"
    elif source == "url" and entry.get("url"):
        what = public_url(str(entry["url"]))
    else:
        # Incomplete or of an unknown source: what it does say, so the operator finds it.
        said = [
            f"{key} {public_url(str(entry[key])) if key == 'url' else entry[key]!r}"
            for key in _TELLING_KEYS
            if entry.get(key) not in (None, "")
        ]
        keys = ", ".join(map(str, entry))
        what = ", ".join(said) or (f"keys {keys}" if keys else "an empty entry")
    return f"{where}[{index}] ({what})"


def expand_bundles(bundles: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    for bundle in bundles:
        if bundle not in BUNDLES:
            problems.append(
                f"unknown bundle {bundle!r} in models_bundles; known bundles: "
                + ", ".join(sorted(BUNDLES))
            )
            continue
        entries.extend(dict(e, name=f"bundle {bundle}: {e['file']}") for e in BUNDLES[bundle])
    return entries, problems


# One entry as a catalog writes it (flow YAML, to fit in a one-line message).
ENTRY_EXAMPLE = (
    "{source: huggingface, repo: black-forest-labs/FLUX.1-dev, file: ae.safetensors, kind: vae}"
)


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def check_shape(catalog: Any, where: str = "models_catalog") -> list[str]:
    """What is wrong with the catalog's shape, before any entry is looked at: it must be a
    list of entries, one per file (empty when it is)."""
    if catalog is None or isinstance(catalog, list):
        return []
    if isinstance(catalog, dict):
        keys = ", ".join(map(str, list(catalog)[:5])) + (", ..." if len(catalog) > 5 else "")
        how = (
            f"a mapping (keys {keys}); write each entry as a list item, a line starting with "
            "'-' (a key that named an entry becomes its 'name')"
        )
    else:
        how = f"{_type_name(catalog)}; write each entry as a list item, a line starting with '-'"
    return [
        f"{where} must be a list of entries, one per file, got {how}; "
        f"for example: {where}: [{ENTRY_EXAMPLE}]"
    ]


def check_entry(entry: Any, index: int, where_list: str = "models_catalog") -> list[str]:
    """Every problem with one entry's keys and values (empty when it is usable)."""
    if not isinstance(entry, dict):
        return [
            f"{where_list}[{index}] ({entry!r}) must be a mapping of keys (source, repo, file, "
            f"kind, ...), got {_type_name(entry)}; for example: {ENTRY_EXAMPLE}"
        ]
    where = describe(entry, index, where_list)
    source = entry.get("source")
    if source is None:
        sources = ", ".join(SOURCE_KEYS)
        return [f"{where}: add 'source' ({sources}): where the file comes from"]
    if source not in SOURCE_KEYS:
        return [f"{where}: source must be one of {', '.join(SOURCE_KEYS)}, got {source!r}"]
    spec = SOURCE_KEYS[source]
    problems = []
    allowed = COMMON_KEYS | spec["required"] | spec["optional"]
    for key in sorted(set(entry) - allowed):
        problems.append(
            f"{where}: unknown key {key!r} for source {source}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    for key in sorted(spec["required"] - set(entry)):
        problems.append(f"{where}: missing {key!r} (required for source {source})")
    problems += _check_values(entry, where)
    return problems


def _check_values(entry: dict[str, Any], where: str) -> list[str]:
    problems = []
    source = entry["source"]
    kind = entry.get("kind")
    if kind is not None and kind not in KIND_DIRS:
        problems.append(f"{where}: kind must be one of {', '.join(KIND_DIRS)}, got {kind!r}")
    if kind is None and source != "civitai":
        problems.append(
            f"{where}: add 'kind' ({', '.join(KIND_DIRS)}) so the file lands in the right "
            "Forge folder (only CivitAI entries can take it from the model's type)"
        )
    if entry.get("sha256") is not None and not _SHA256.match(str(entry["sha256"])):
        problems.append(f"{where}: sha256 must be 64 hexadecimal digits")
    filename = entry.get("filename")
    if filename is not None and (not _SAFE_NAME.match(str(filename)) or ".." in str(filename)):
        problems.append(
            f"{where}: filename {filename!r} must be a plain file name "
            "(letters, digits, . _ - + space, no folders)"
        )
    if entry.get("base_model") is not None and entry["base_model"] not in FAMILIES:
        problems.append(
            f"{where}: base_model must be one of {', '.join(FAMILIES)}, got {entry['base_model']!r}"
        )
    if source == "civitai":
        problems += _check_civitai(entry, where)
    elif source == "url":
        url = str(entry.get("url", ""))
        if not url.startswith("https://"):
            problems.append(
                f"{where}: url must start with https:// (downloads are never plain HTTP)"
            )
        if "headers" in entry and not isinstance(entry["headers"], dict):
            problems.append(f"{where}: headers must be a mapping of header name to value")
        problems += _check_url_path(url, where)
    elif source == "huggingface":
        if str(entry.get("repo", "")).count("/") != 1:
            problems.append(f"{where}: repo must look like 'owner/name'")
        if "file" in entry:
            problems += _check_repo_file(entry["file"], where)
    return problems


def path_problem(path: str) -> str | None:
    """Why a '/'-separated path could lead elsewhere than where it says: an absolute path,
    or an empty, '.' or '..' segment (read as written and with %-escapes decoded)."""
    if path.startswith("/"):
        return "it is absolute (starts with '/')"
    return _segments_problem(path.split("/"))


def _segments_problem(segments: list[str]) -> str | None:
    for segment in segments:
        plain = urllib.parse.unquote(segment)
        if plain in (".", ".."):
            return f"it has a {plain!r} segment"
        if not segment:
            return "it has an empty segment ('//' or a '/' at either end)"
    return None


def _check_repo_file(path: Any, where: str) -> list[str]:
    problem = path_problem(str(path)) if path not in (None, "") else "it is empty"
    if problem is None:
        return []
    return [
        f"{where}: file {path!r} must be a path inside the repository, as the Hub lists it "
        f"(for example 'vae/diffusion_pytorch_model.safetensors'), but {problem}; "
        "give the file's path from the repository's 'Files' tab"
    ]


def _check_url_path(url: str, where: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    # the path after the host's '/': its segments, the first one included
    problem = _segments_problem(parts.path.split("/")[1:]) if parts.path not in ("", "/") else None
    if problem is None:
        return []
    return [
        f"{where}: the URL's path {parts.path!r} must name the file directly, but {problem}; "
        "give the address of the file itself"
    ]


def _check_civitai(entry: dict[str, Any], where: str) -> list[str]:
    problems = []
    ids = [k for k in ("model_id", "version_id") if entry.get(k) is not None]
    if len(ids) != 1:
        problems.append(f"{where}: give exactly one of model_id or version_id")
    for key in ids:
        if not str(entry[key]).isdigit():
            problems.append(f"{where}: {key} must be a number, got {entry[key]!r}")
    for key, choices in (
        ("format", CIVITAI_FORMATS),
        ("precision", CIVITAI_PRECISIONS),
        ("size", CIVITAI_SIZES),
    ):
        if entry.get(key) is not None and entry[key] not in choices:
            problems.append(f"{where}: {key} must be one of {', '.join(choices)}")
    return problems


def destination(entry: dict[str, Any]) -> str | None:
    """The file's path relative to the Forge checkout, when it is known without asking upstream."""
    kind = entry.get("kind")
    name = entry.get("filename")
    if name is None and entry["source"] == "huggingface":
        name = str(entry["file"]).rsplit("/", 1)[-1]
    if name is None and entry["source"] == "url":
        name = str(entry["url"]).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None
    if kind is None or name is None:
        return None
    return f"{KIND_DIRS[kind]}/{name}"


def find_duplicate_destinations(
    destinations: list[tuple[str, str | None]],
) -> list[str]:
    """Problems for two entries that would write the same file; input: (label, dest) pairs."""
    seen: dict[str, str] = {}
    problems = []
    for label, dest in destinations:
        if dest is None:
            continue
        if dest in seen:
            problems.append(
                f"{label} and {seen[dest]} both write {dest}; "
                "give one of them a different 'filename'"
            )
        else:
            seen[dest] = label
    return problems


def header_values(entries: Any) -> set[str]:
    """The values of every entry's ``headers`` (credentials for a private mirror, as often as
    not): what a module must mask. Takes the catalog as given, checked or not."""
    values = set()
    if isinstance(entries, dict):  # a catalog written as a mapping: refused, and still masked
        entries = list(entries.values())
    for entry in entries if isinstance(entries, list) else []:
        headers = entry.get("headers") if isinstance(entry, dict) else None
        for value in (headers or {}).values() if isinstance(headers, dict) else []:
            if value not in (None, ""):
                values.add(str(value))
    return values


def normalize_catalog(entries: Any, bundles: list[str] | None = None) -> list[dict[str, Any]]:
    """Bundles first, then the entries; each with ``label`` and ``destination`` (or None).

    ``entries`` is the catalog as given (a mapping or a string is refused with what the
    catalog must look like). Raises CatalogError listing every problem when anything is wrong.
    """
    expanded, problems = expand_bundles(list(bundles or []))
    shape = check_shape(entries)
    if shape:
        raise CatalogError(problems + shape)
    numbered = [(e, i, "models_bundles") for i, e in enumerate(expanded)]
    numbered += [(e, i, "models_catalog") for i, e in enumerate(entries or [])]
    normalized = []
    for entry, index, where_list in numbered:
        entry_problems = check_entry(entry, index, where_list)
        problems += entry_problems
        if entry_problems:
            continue
        item = dict(entry)
        if item["source"] == "huggingface":
            item.setdefault("revision", "main")
        item["label"] = describe(entry, index, where_list)
        item["destination"] = destination(item)
        normalized.append(item)
    problems += find_duplicate_destinations([(e["label"], e["destination"]) for e in normalized])
    if problems:
        raise CatalogError(problems)
    return normalized
