"""Forge's first image: prove a host can generate, as the class will use it.

Log in as the student (gradio's ``POST /login``), then, through Forge's API and its own
credentials, list the checkpoints (``GET /sdapi/v1/sd-models``; without a checkpoint asked
for, the one Forge has selected, ``GET /sdapi/v1/options``) and make one tiny image
(``POST /sdapi/v1/txt2img``) with nothing saved (``save_images: false``) and the settings put
back afterwards (``override_settings_restore_afterwards``). The image must be a PNG of the
requested size with more than one colour. Timed twice: the request itself, and from the start
of the service's main process (systemd's clock) to the image.

On failure, the message carries Forge's own error line: from the API's error answer (Forge's
exception handler: ``{"error": <type>, "detail", "body", "message": str(e)}``; older code
calls the last one ``errors``) and the last exception line Forge printed into the journal
of its current start (``_SYSTEMD_INVOCATION_ID``) during the request.

Standard library only (runs on the VMs, Python 3.8+). I/O goes through seams (``request``
for HTTP, ``run`` for commands, ``clock``) so the logic is unit-testable.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import struct
import time
import urllib.parse
import zlib
from typing import TYPE_CHECKING

from .webui_service import (
    WebuiFailed,
    journal,
    monotonic_now_usec,
    run_command,
    service_state,
)

if TYPE_CHECKING:  # annotations only: Python 3.8 on the VMs cannot subscript these
    from collections.abc import Callable

    Answer = tuple[int, bytes]
    Requester = Callable[..., Answer]
    Runner = Callable[[list[str]], tuple[int, str, str]]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROMPT = "a lighthouse on a cliff at dawn"
# A Python exception line as a traceback ends (Forge's errors.report indents it by 4).
EXCEPTION_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception))(?:: (.*))?$")
# What the operator can do about the errors a first image meets most.
HINTS = (
    (
        "OutOfMemoryError",
        "The GPU has too little free memory for this checkpoint at this size: choose a VM "
        "size with more GPU memory or a smaller checkpoint, or add --medvram/--lowvram to "
        "webui_extra_args.",
    ),
    (
        "Failed to recognize model type",
        "Forge cannot read this checkpoint (a truncated download, or a file that is not a "
        "Stable Diffusion model): check it with the models stage's inspection, replace it, or "
        "choose another with webui_smoke_checkpoint.",
    ),
)


class SmokeFailed(Exception):
    """No image: the message says which step failed and what Forge answered or printed."""


# -- the credential files (read on the host; never module options) ---------------------


def read_login(path: str) -> tuple[str, str]:
    """The first login of a --gradio-auth-path file: lines of ','-separated entries, each
    split at its first ':' after stripping spaces (Forge's get_gradio_auth_creds)."""
    text = _read(path, "the student login file")
    for line in text.splitlines():
        for item in line.strip().split(","):
            user, sep, password = item.strip().partition(":")
            if sep and user:
                return user, password
    raise SmokeFailed(f"the student login file {path} holds no user:password line")


def read_api_auth(path: str) -> tuple[str, str]:
    """The first entry of the API credentials file (Forge's --api-auth: user:password,
    split at the ':'; the role refuses ':' in API passwords)."""
    text = _read(path, "the API credentials file")
    for item in text.strip().split(","):
        user, sep, password = item.strip().partition(":")
        if sep and user:
            return user, password
    raise SmokeFailed(f"the API credentials file {path} holds no user:password entry")


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise SmokeFailed(f"cannot read {what} {path}: {error.strerror or error}") from None


# -- HTTP --------------------------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    """(status, body) of one request to Forge on 127.0.0.1:port; status 0 with the reason as
    body when nothing answers (or the answer does not come within ``timeout``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return 0, str(error or type(error).__name__).encode()
    finally:
        conn.close()


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _said(status: int, body: bytes, limit: int = 300) -> str:
    """What an answer was, for a message: the status and the start of the body."""
    if status == 0:
        return f"no answer ({body.decode('utf-8', 'replace')})"
    text = body.decode("utf-8", "replace").strip()
    text = text if len(text) <= limit else text[:limit] + " ..."
    return f"{status} {text}" if text else str(status)


def api_error(status: int, body: bytes) -> str:
    """Forge's error line from an API error answer ("OutOfMemoryError: CUDA out of ...")."""
    found = _json(body)
    if isinstance(found, dict) and found.get("error"):
        message = found.get("message") or found.get("errors") or found.get("detail") or ""
        return f"{found['error']}: {message}" if message else str(found["error"])
    if isinstance(found, dict) and found.get("detail"):
        detail = found["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    return _said(status, body)


def journal_error(lines: list[str]) -> str | None:
    """The last exception line in Forge's journal lines (a traceback's final line)."""
    for line in reversed(lines):
        match = EXCEPTION_LINE.match(line)
        if match:
            return line.strip()
    return None


def hint_for(*lines: str | None) -> str:
    text = " ".join(line for line in lines if line)
    for marker, hint in HINTS:
        if marker in text:
            return " " + hint
    return ""


# -- the steps ---------------------------------------------------------------------------


def check_login(status: int, body: bytes, user: str) -> None:
    """gradio's POST /login must answer 200 {"success": true}."""
    if status == 200 and _json(body) == {"success": True}:
        return
    raise SmokeFailed(
        f"the student login does not work: POST /login as {user} answered "
        f'{_said(status, body)} (expected 200 {{"success": true}}). The students cannot '
        "log in either: check the login file against the handed-out password (a re-run "
        "writes it again) and Forge's --gradio-auth-path."
    )


def _names(model: dict) -> list[str]:
    filename = str(model.get("filename") or "")
    base = re.split(r"[\\/]", filename)[-1]
    title = str(model.get("title") or "")
    return [
        name
        for name in (
            title,
            re.sub(r"\s*\[[^]]+]\s*$", "", title),  # the title without " [shorthash]"
            str(model.get("model_name") or ""),
            base,
            base.rsplit(".", 1)[0],
        )
        if name
    ]


def choose_checkpoint(models: object, wanted: str, selected: str = "") -> dict:
    """The checkpoint to make the image with: ``wanted`` (a title, model name or file name)
    or, when empty, the one Forge has selected (its sd_model_checkpoint option, what it loads
    anyway) when it lists it, else the first checkpoint it lists."""
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise SmokeFailed(f"GET /sdapi/v1/sd-models answered no list of checkpoints: {models!r}")
    if not models:
        raise SmokeFailed(
            "Forge lists no checkpoint (GET /sdapi/v1/sd-models is empty): there is nothing to "
            "make an image with. Add one to models_catalog (the models stage places it in "
            "Forge's models/Stable-diffusion) or set webui_smoke: never."
        )
    if not wanted:
        found = [model for model in models if selected and selected in _names(model)]
        return (found or models)[0]
    for model in models:
        if wanted in _names(model):
            return model
    listed = ", ".join(str(m.get("title")) for m in models)
    raise SmokeFailed(
        f"checkpoint {wanted} is not among the checkpoints Forge lists ({listed}): fix "
        "webui_smoke_checkpoint (a title, model name or file name) or place that checkpoint."
    )


def txt2img_request(title: str, width: int, height: int, steps: int, seed: int) -> dict:
    """One tiny image: nothing saved under outputs/, the settings restored afterwards."""
    return {
        "prompt": PROMPT,
        "negative_prompt": "",
        "seed": seed,
        "steps": steps,
        "width": width,
        "height": height,
        "batch_size": 1,
        "n_iter": 1,
        "save_images": False,
        "send_images": True,
        "override_settings": {"sd_model_checkpoint": title},
        "override_settings_restore_afterwards": True,
    }


# -- the image ---------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG (no PNG signature)")
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        payload = data[offset + 8 : offset + 8 + length]
        if len(payload) != length:
            raise ValueError(f"a truncated {kind.decode('latin-1')} chunk")
        chunks.append((kind, payload))
        offset += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("no IHDR chunk first")
    return chunks


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png_chunks(data)[0][1][:8])
    return width, height


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_pixels(data: bytes) -> set[bytes] | None:
    """The distinct pixels of an 8-bit non-interlaced PNG (what Forge sends), or None for
    another kind (then the colours are not checked)."""
    chunks = png_chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1][:13])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or interlace or channels is None:
        return None
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    stride = width * channels
    pixels: set[bytes] = set()
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            upleft = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[x] = (line[x] + _paeth(left, up, upleft)) & 0xFF
        pixels.update(bytes(line[x : x + channels]) for x in range(0, stride, channels))
        previous = line
    return pixels


def check_image(images: object, width: int, height: int) -> bytes:
    """The first image of the answer, decoded: a PNG of the requested size, not one colour."""
    if not isinstance(images, list) or not images or not isinstance(images[0], str):
        raise SmokeFailed(f"Forge answered txt2img without an image (images: {images!r:.200})")
    try:
        data = base64.b64decode(images[0].split(",", 1)[-1], validate=False)
        size = png_size(data)
        pixels = png_pixels(data)
    except (ValueError, struct.error, zlib.error, IndexError) as error:
        raise SmokeFailed(f"Forge's image is not a readable PNG: {error}") from None
    if size != (width, height):
        raise SmokeFailed(
            f"Forge made a {size[0]}x{size[1]} image instead of the {width}x{height} asked for"
        )
    if pixels is not None and len(pixels) == 1:
        raise SmokeFailed(
            f"Forge made an image of one colour (every pixel {tuple(next(iter(pixels)))}): the "
            "model produced no picture, as when it computes NaNs (Forge at the pinned commit "
            "does not check for them and returns a black image). Try --no-half or --no-half-vae "
            "in webui_extra_args, or another checkpoint."
        )
    return data


# -- the whole check ---------------------------------------------------------------------


# Seconds a 404 from Forge's API is taken for routes not mounted yet (after a start).
API_MOUNT_WAIT = 60.0


def smoke(
    port: int,
    unit: str,
    *,
    login: tuple[str, str] | None,
    api_auth: tuple[str, str],
    checkpoint: str = "",
    width: int = 64,
    height: int = 64,
    steps: int = 1,
    seed: int = 1,
    timeout: float = 600.0,
    request: Requester = http_request,
    run: Runner = run_command,
    clock: Callable[[], float] = time.monotonic,
    now_usec: Callable[[], int] = monotonic_now_usec,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, object]:
    """Log in, list the checkpoints, make one image; the numbers, or SmokeFailed."""
    if login is not None:
        user, password = login
        form = urllib.parse.urlencode({"username": user, "password": password}).encode()
        status, body = request(
            port,
            "POST",
            "/login",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=60,
        )
        check_login(status, body, user)
    auth = basic_auth(*api_auth)
    # Forge mounts its API on the app only after gradio serves the login (webui.py: launch,
    # then the API routes): right after a start the API may answer 404 for a moment.
    deadline = None
    while True:
        status, body = request(port, "GET", "/sdapi/v1/sd-models", headers=auth, timeout=60)
        if status != 404:
            break
        now = clock()
        deadline = now + API_MOUNT_WAIT if deadline is None else deadline
        if now >= deadline:
            break
        sleep(1.0)
    if status != 200:
        raise SmokeFailed(
            f"Forge's API answered GET /sdapi/v1/sd-models with {_said(status, body)}"
            + (
                ": the API credentials file does not match what Forge was started with "
                "(a re-run writes it and restarts Forge)"
                if status == 401
                else ""
            )
        )
    models = _json(body)
    selected = ""
    if not checkpoint:  # what Forge has selected: no checkpoint switch, before or after
        status, body = request(port, "GET", "/sdapi/v1/options", headers=auth, timeout=60)
        options = _json(body) if status == 200 else None
        if isinstance(options, dict) and isinstance(options.get("sd_model_checkpoint"), str):
            selected = options["sd_model_checkpoint"]
    chosen = choose_checkpoint(models, checkpoint, selected)
    title = str(chosen.get("title"))
    state = _state(unit, run)
    before = len(journal(unit, state.get("InvocationID", ""), run=run))
    payload = json.dumps(txt2img_request(title, width, height, steps, seed)).encode()
    began = clock()
    status, body = request(
        port,
        "POST",
        "/sdapi/v1/txt2img",
        body=payload,
        headers={"Content-Type": "application/json", **auth},
        timeout=timeout,
    )
    took = clock() - began
    if status != 200:
        raise SmokeFailed(
            _txt2img_failure(
                status=status,
                body=body,
                unit=unit,
                state=state,
                before=before,
                took=took,
                timeout=timeout,
                run=run,
                sleep=sleep,
            )
        )
    answer = _json(body)
    if not isinstance(answer, dict):
        raise SmokeFailed(f"Forge answered txt2img with 200 but no JSON object: {_said(200, body)}")
    data = check_image(answer.get("images"), width, height)
    made = _state(unit, run)
    started = int(made.get("ExecMainStartTimestampMonotonic") or 0)
    info = _json(str(answer.get("info") or "").encode())
    used = info.get("sd_model_name") if isinstance(info, dict) else None
    return {
        "checkpoint": title,
        "model_used": used,
        "width": width,
        "height": height,
        "steps": steps,
        "seed": seed,
        "generation_seconds": round(took, 3),
        "first_image_seconds": (
            round((now_usec() - started) / 1_000_000, 1)
            if started and made.get("ActiveState") == "active"
            else None
        ),
        "image_bytes": len(data),
        "invocation_id": made.get("InvocationID", ""),
    }


def _state(unit: str, run: Runner) -> dict[str, str]:
    try:
        return service_state(unit, run)
    except WebuiFailed as error:
        raise SmokeFailed(str(error)) from None


def _txt2img_failure(
    *,
    status: int,
    body: bytes,
    unit: str,
    state: dict[str, str],
    before: int,
    took: float,
    timeout: float,
    run: Runner,
    sleep: Callable[[float], None],
) -> str:
    """Why txt2img made no image: the API's error line and Forge's own journal line."""
    if status == 0 and took >= timeout:
        said = (
            f"no image within {timeout:g} s (a first image loads the checkpoint: raise "
            "webui_smoke_timeout if it is a large one)"
        )
    else:
        said = _said(status, body) if status == 0 else f"{status}: {api_error(status, body)}"
    printed = None
    for _ in range(4):  # journald may take a moment to have Forge's last lines
        printed = journal_error(journal(unit, state.get("InvocationID", ""), run=run)[before:])
        if printed:
            break
        sleep(0.5)
    message = f"Forge made no image: POST /sdapi/v1/txt2img answered {said}"
    message += "" if message.endswith((".", "!", "?")) else "."
    if printed:
        message += f" Forge's journal ({unit}): {printed}"
    return message + hint_for(said, printed)
