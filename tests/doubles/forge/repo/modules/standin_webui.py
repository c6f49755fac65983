"""The serving half of the Forge stand-in: what Forge's UI shows the network, without torch.

launch.py parses Forge's flags and, unless it only prepares (--exit), ends with
``serve(args)``. This module then behaves like Forge's gradio 4.40 app on the paths Forge
Fleet uses (tests/DOUBLES.md has the contract):

- gradio's login when users are given (--gradio-auth, --gradio-auth-path in Forge's syntax):
  anonymous GET /config, /info and /login_check answer 401 {"detail": "Not authenticated"};
  GET / is the login page; POST /login (form fields username, password) answers 200
  {"success": true} with cookies access-token-<id> and access-token-unsecure-<id>, or 400
  {"detail": "Incorrect credentials."};
- with --api, /sdapi/v1/... outside gradio's login, behind HTTP basic auth only when
  --api-auth is given (as Forge's modules/api/api.py does): GET sd-models in Forge's shape
  (title, model_name, hash, sha256, filename, config) for the checkpoints in
  models/Stable-diffusion and --ckpt-dir, and POST txt2img, which makes a real PNG of the
  requested size (deterministic from the seed, never one colour) with the checkpoint chosen
  by override_settings.sd_model_checkpoint (an unknown one is dropped, as Forge does), and
  answers {"images", "parameters", "info"}; its failures answer 500 with Forge's error JSON
  {"error", "detail", "body", "message"} and print uvicorn's traceback into the journal;
- /internal/sysinfo without login: argv with the --gradio-auth/--api-auth values replaced by
  "<hidden>", and the COMMANDLINE_ARGS environment variable verbatim (modules/sysinfo.py);
- gradio's log lines: the local URL, then with --share a made-up
  https://<id>.gradio.live link and "This share link expires in 72 hours", or gradio's
  "Could not create share link" message in a scenario.

Scenarios: the file named by FORGE_LAB_WEBUI_SCENARIO_FILE (default
/etc/forge-lab/webui-scenario), one per line, '#' starts a comment:
  crash                  fail at start like Forge without a usable GPU (exit 1)
  slow SECONDS           wait that long before serving (a large checkpoint loading)
  share-fail             gradio could not reach its share server
  share-missing-binary   gradio's tunnel binary could not be downloaded (blocked)
  frpc-cdn-blocked       gradio's CDN is blocked: the share link works only when the tunnel
                         binary is already in gradio's folder of the env (frpc_path())
and, read at each txt2img request (no restart needed):
  oom                    torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate ...
  nan                    the model computes NaNs: a black image, no error (Forge at the pin
                         never raises its NansException; --disable-nan-check is moot)
  checkpoint-broken      the checkpoint does not load: ValueError: Failed to recognize model
                         type! (Forge's loader, after the safetensors error)

Standard library only: it runs in the VM's conda env (Python 3.8+).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import platform
import random
import secrets
import signal
import socketserver
import struct
import sys
import sysconfig
import threading
import time
import urllib.parse
import zlib

SCENARIO_FILE = "/etc/forge-lab/webui-scenario"
NOT_AUTHENTICATED = {"detail": "Not authenticated"}
NOT_FOUND = {"detail": "Not Found"}
# modules/sysinfo.py: the environment variables Forge's sysinfo page shows verbatim.
ENVIRONMENT_WHITELIST = (
    "GIT",
    "INDEX_URL",
    "WEBUI_LAUNCH_LIVE_OUTPUT",
    "GRADIO_ANALYTICS_ENABLED",
    "PYTHONPATH",
    "TORCH_INDEX_URL",
    "TORCH_COMMAND",
    "REQS_FILE",
    "COMMANDLINE_ARGS",
    "IGNORE_CMD_ARGS_ERRORS",
)
# gradio/strings.py (4.40.0)
SHARE_FAILED = (
    "\nCould not create share link. Please check your internet connection or our status "
    "page: https://status.gradio.app."
)
SHARE_MISSING_BINARY = (
    "\nCould not create share link. Missing file: {path}. \n\nPlease check your internet "
    "connection. This can happen if your antivirus software blocks the download of this "
    "file. You can install manually by following these steps: \n\n1. Download this file: "
    "https://cdn-media.huggingface.co/frpc-gradio-0.2/frpc_linux_amd64\n2. Rename the "
    "downloaded file to: frpc_linux_amd64_v0.2\n3. Move the file to this location: {folder}"
)


def read_scenario(path: str | None = None) -> dict[str, str]:
    """The scenario lines as {name: argument}; no file means no scenario."""
    path = path or os.environ.get("FORGE_LAB_WEBUI_SCENARIO_FILE", SCENARIO_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    found = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            found[words[0]] = " ".join(words[1:])
    return found


def credential_lines(text: str) -> list[tuple[str, ...]]:
    """Forge's modules/initialize_util.get_gradio_auth_creds for one source of lines."""
    creds = []
    for line in text.splitlines():
        for item in line.strip().split(","):
            cred = item.strip()
            if cred:
                creds.append(tuple(cred.split(":", 1)))
    return creds


def gradio_users(args) -> dict[str, str]:
    """The login table gradio gets from --gradio-auth and --gradio-auth-path."""
    creds = []
    if getattr(args, "gradio_auth", None):
        creds += credential_lines(args.gradio_auth.replace(",", "\n"))
    path = getattr(args, "gradio_auth_path", None)
    if path:
        with open(path, encoding="utf8") as handle:
            creds += credential_lines(handle.read())
    # gradio: {account[0]: account[1] for account in auth}; a line without ':' breaks it.
    return {cred[0]: cred[1] for cred in creds}


def api_users(args) -> dict[str, str] | None:
    """modules/api/api.py: user:password pairs split at every ':' (a colon breaks it)."""
    if not getattr(args, "api_auth", None):
        return None
    users = {}
    for auth in args.api_auth.split(","):
        user, password = auth.split(":")
        users[user] = password
    return users


def redacted_argv(args, argv: list[str]) -> list[str]:
    """modules/sysinfo.get_argv: an argv item equal to a credential flag's value is hidden."""
    hidden = [v for v in (getattr(args, "gradio_auth", None), getattr(args, "api_auth", None)) if v]
    return ["<hidden>" if item in hidden else item for item in argv]


def sysinfo(args, argv: list[str]) -> dict:
    return {
        "Platform": platform.platform(),
        "Python": platform.python_version(),
        "Version": "f2.0.1v1.10.1-lab-standin",
        "Script path": os.getcwd(),
        "Commandline": redacted_argv(args, argv),
        "Environment": {k: os.environ[k] for k in sorted(os.environ) if k in ENVIRONMENT_WHITELIST},
        "Startup": {"total": 0.0},
    }


class Webui:
    """The state one Forge process serves: users, sessions, API credentials."""

    def __init__(self, args, argv: list[str]):
        self.args = args
        self.argv = list(argv)
        self.users = gradio_users(args)
        self.api_users = api_users(args)
        self.checkpoints = Checkpoints(args)
        self.cookie_id = secrets.token_urlsafe(32)
        self.tokens: dict[str, str] = {}

    @property
    def auth_required(self) -> bool:
        return bool(self.users)

    def user_for(self, cookies: dict[str, str]) -> str | None:
        token = cookies.get(f"access-token-{self.cookie_id}") or cookies.get(
            f"access-token-unsecure-{self.cookie_id}"
        )
        return self.tokens.get(token) if token else None

    def login(self, username: str, password: str) -> str | None:
        expected = self.users.get(username.strip())
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return None
        token = secrets.token_urlsafe(16)
        self.tokens[token] = username.strip()
        return token

    def api_allowed(self, header: str | None) -> tuple[bool, dict]:
        """Forge's Api.auth behind fastapi's HTTPBasic: (allowed, error body)."""
        if self.api_users is None:
            return True, {}
        if not header or not header.lower().startswith("basic "):
            return False, NOT_AUTHENTICATED
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, {"detail": "Invalid authentication credentials"}
        expected = self.api_users.get(user)
        if expected is not None and hmac.compare_digest(password.encode(), expected.encode()):
            return True, {}
        return False, {"detail": "Incorrect username or password"}


def _page(title: str, config: dict) -> bytes:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<script>window.gradio_config = {json.dumps(config)};</script></head>"
        f"<body><gradio-app>{title}</gradio-app></body></html>"
    ).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "uvicorn"
    sys_version = ""
    webui: Webui  # set on the subclass by make_server

    def log_message(self, format, *args):
        pass  # uvicorn at Forge's log level prints no access lines

    def _send(self, status: int, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _cookies(self) -> dict[str, str]:
        cookies = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                cookies[name] = value
        return cookies

    def _user(self) -> str | None:
        return self.webui.user_for(self._cookies())

    def _logged_in(self) -> bool:
        return not self.webui.auth_required or self._user() is not None

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        webui = self.webui
        if path in ("/internal/sysinfo", "/internal/sysinfo-download"):
            disposition = "attachment" if path.endswith("download") else "inline"
            name = time.strftime("sysinfo-%Y-%m-%d-%H-%M.json", time.gmtime())
            text = json.dumps(sysinfo(webui.args, webui.argv), indent=4).encode()
            self._send(
                200,
                text,
                "text/plain; charset=utf-8",
                [("content-disposition", f'{disposition}; filename="{name}"')],
            )
        elif ("GET", path) in OPEN_ROUTES:
            self._send(200, *OPEN_ROUTES["GET", path](webui))
        elif path.startswith("/sdapi/"):
            self._api("GET", path)
        elif path == "/login_check":
            self._send(200, None) if self._logged_in() else self._send(401, NOT_AUTHENTICATED)
        elif path in ("/config", "/info"):
            if not self._logged_in():
                self._send(401, NOT_AUTHENTICATED)
            else:
                self._send(200, {"version": "4.40.0", "mode": "blocks", "username": self._user()})
        elif path == "/":
            if self._logged_in():
                body = _page("Stable Diffusion", {"version": "4.40.0", "username": self._user()})
            else:
                body = _page(
                    "Gradio", {"auth_required": True, "auth_message": None, "space_id": None}
                )
            self._send(200, body, "text/html; charset=utf-8")
        elif path == "/logout":
            self._send(
                302,
                b"",
                headers=[
                    ("location", "/"),
                    ("set-cookie", f'access-token-{webui.cookie_id}=""; Max-Age=0; Path=/'),
                ],
            )
        else:
            self._send(404, NOT_FOUND)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if ("POST", path) in OPEN_ROUTES:
            self._send(200, *OPEN_ROUTES["POST", path](self.webui))
        elif path.startswith("/sdapi/"):
            self._api("POST", path, body)
        elif path == "/login":
            self._login(body)
        else:
            self._send(404, NOT_FOUND)

    def _login(self, body: bytes):
        if not self.webui.auth_required:
            self._send(302, b"", headers=[("location", "/")])
            return
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        missing = [f for f in ("username", "password") if f not in form]
        if missing:
            detail = [
                {"type": "missing", "loc": ["body", f], "msg": "Field required", "input": None}
                for f in missing
            ]
            self._send(422, {"detail": detail})
            return
        token = self.webui.login(form["username"][0], form["password"][0])
        if token is None:
            self._send(400, {"detail": "Incorrect credentials."})
            return
        cid = self.webui.cookie_id
        self._send(
            200,
            {"success": True},
            headers=[
                (
                    "set-cookie",
                    f"access-token-{cid}={token}; HttpOnly; Path=/; SameSite=none; Secure",
                ),
                ("set-cookie", f"access-token-unsecure-{cid}={token}; HttpOnly; Path=/"),
            ],
        )

    def _api(self, method: str, path: str, body: bytes = b""):
        webui = self.webui
        routes = {
            ("GET", "/sdapi/v1/options"): lambda: {"sd_model_checkpoint": None},
            ("GET", "/sdapi/v1/sd-models"): webui.checkpoints.listed,
            ("GET", "/sdapi/v1/progress"): lambda: {"progress": 0.0, "eta_relative": 0.0},
            ("GET", "/sdapi/v1/cmd-flags"): lambda: vars(webui.args),
            ("POST", "/sdapi/v1/txt2img"): lambda: webui.checkpoints.txt2img(body),
        }
        route = routes.get((method, path))
        if not webui.args.api or route is None:
            self._send(404, NOT_FOUND)
            return
        allowed, error = webui.api_allowed(self.headers.get("Authorization"))
        if not allowed:
            self._send(401, error, headers=[("www-authenticate", "Basic")])
            return
        try:
            answer = route()
        except Unprocessable as invalid:
            self._send(422, {"detail": invalid.detail})
            return
        except ApiError as failed:
            failed.log()
            self._send(500, failed.answer())
            return
        self._send(200, answer)


# -- Forge's API: its checkpoints and txt2img -------------------------------------------

CHECKPOINT_EXTENSIONS = (".ckpt", ".safetensors", ".gguf")
NOT_CHECKPOINTS = (".vae.ckpt", ".vae.safetensors")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# torch 2.3's CUDA caching allocator, as torch.cuda.OutOfMemoryError says it (made-up sizes)
CUDA_OUT_OF_MEMORY = (
    "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 14.58 GiB "
    "of which 1.12 GiB is free. Including non-PyTorch memory, this process has 13.45 GiB "
    "memory in use. Of the allocated memory 12.91 GiB is allocated by PyTorch, and 415.21 MiB "
    "is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
    "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
    "documentation for Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)
# webui.py's default checkpoint error, raised by Forge's model loader (forge_model_reload)
NO_MODEL = (
    "You do not have any model! Please download at least one model in [models/Stable-diffusion]."
)


class Unprocessable(Exception):
    """FastAPI's 422: the request body is not what the route takes."""

    def __init__(self, detail: list[dict]):
        super().__init__("unprocessable")
        self.detail = detail


class ApiError(Exception):
    """An exception in an API route. Forge's handler (webui.py, _handle_exception, given to
    gradio's app as its Exception handler) answers 500 {"error": type name, "detail": "",
    "body": "", "message": str(e)}; starlette then re-raises it, and uvicorn prints
    "Exception in ASGI application" with the traceback into the journal."""

    def __init__(self, qualified: str, message: str, frames: list[str], cause: str = ""):
        super().__init__(message)
        self.qualified, self.message, self.frames, self.cause = qualified, message, frames, cause

    def answer(self) -> dict:
        name = self.qualified.rsplit(".", 1)[-1]
        return {"error": name, "detail": "", "body": "", "message": self.message}

    def log(self) -> None:
        def frame(where: str) -> str:
            return f'  File "{os.getcwd()}/{where}'

        lines = ["ERROR:    Exception in ASGI application"]
        if self.cause:  # the loader's own error first, then the one it raised from it
            lines += ["Traceback (most recent call last):", *map(frame, CAUSE_FRAMES)]
            lines += [self.cause, "", CHAINED, ""]
        lines += ["Traceback (most recent call last):", *map(frame, API_FRAMES + self.frames)]
        lines += [f"{self.qualified}: {self.message}"]
        print("\n".join(lines), file=sys.stderr, flush=True)


CHAINED = "During handling of the above exception, another exception occurred:"
# Where in Forge the route's exception came from (file, line, function), for the traceback.
API_FRAMES = [
    'modules/api/api.py", line 495, in text2imgapi',
    'modules/processing.py", line 836, in process_images',
]
LOAD_FRAMES = [
    'modules/processing.py", line 804, in manage_model_and_prompt_cache',
    'modules/sd_models.py", line 504, in forge_model_reload',
    'backend/loader.py", line 502, in forge_loader',
]
CAUSE_FRAMES = [
    'backend/loader.py", line 500, in forge_loader',
    'backend/utils.py", line 31, in load_torch_file',
]
SAMPLE_FRAMES = [
    'modules/processing.py", line 842, in process_images_inner',
    'backend/sampling/sampling_function.py", line 390, in sampling_function',
    'backend/attention.py", line 314, in attention_pytorch',
]


def checkpoint_files(args) -> list[tuple[str, str]]:
    """(name, path) of the checkpoints Forge lists (sd_models.list_models): under
    models/Stable-diffusion and --ckpt-dir, the name relative to that folder, sorted."""
    found: dict[str, str] = {}
    folders = [os.path.join(os.getcwd(), "models", "Stable-diffusion")]
    folders += [getattr(args, "ckpt_dir", None) or ""]
    for folder in folders:
        if not folder or not os.path.isdir(folder):
            continue
        for root, _, files in os.walk(folder):
            for name in files:
                if name.endswith(CHECKPOINT_EXTENSIONS) and not name.endswith(NOT_CHECKPOINTS):
                    path = os.path.join(root, name)
                    found.setdefault(os.path.relpath(path, folder), path)
    return sorted(found.items(), key=lambda item: item[0].lower())


def png_image(width: int, height: int, seed: int, black: bool = False) -> bytes:
    """An RGB PNG: gradients and noise from the seed (never one colour), or all black."""
    rng = random.Random(seed)
    red, green, blue = (rng.randrange(256) for _ in range(3))
    rows = []
    for y in range(height):
        row = bytearray(b"\0")  # filter type None
        for x in range(width):
            if black:
                row += b"\0\0\0"
            else:
                noise = rng.randrange(24)
                row += bytes(
                    (
                        (red + 4 * x + noise) & 255,
                        (green + 4 * y + noise) & 255,
                        (blue + 2 * (x + y)) & 255,
                    )
                )
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


class Checkpoints:
    """Forge's checkpoints and the model it has loaded (modules/sd_models.py): a checkpoint's
    sha256 is known once it was loaded, so until then its title is its name and its hash
    null. One generation at a time (Forge's queue lock); the model loads at the first."""

    def __init__(self, args):
        self.args = args
        self.sha256: dict[str, str] = {}
        self.selected: str | None = None  # the sd_model_checkpoint option (a file path)
        self.loaded: str | None = None
        self.lock = threading.Lock()

    def listed(self) -> list[dict]:
        models = []
        for name, path in checkpoint_files(self.args):
            sha256 = self.sha256.get(path)
            short = sha256[:10] if sha256 else None
            models.append(
                {
                    "title": f"{name} [{short}]" if short else name,
                    "model_name": os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0],
                    "hash": short,
                    "sha256": sha256,
                    "filename": path,
                    "config": None,
                }
            )
        return models

    def find(self, alias) -> dict | None:
        """sd_models.checkpoint_aliases: a title, name, model name, file stem or hash."""
        for model in self.listed():
            name = model["title"].split(" [")[0]
            stem = os.path.splitext(os.path.basename(model["filename"]))[0]
            ids = {model["title"], name, model["model_name"], stem}
            if model["hash"]:
                ids |= {model["hash"], model["sha256"], f"{stem} [{model['hash']}]"}
            if alias in ids:
                return model
        return None

    def txt2img(self, body: bytes) -> dict:
        try:
            request = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError) as error:
            detail = {"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}
            raise Unprocessable([{**detail, "input": {}, "ctx": {"error": str(error)}}]) from None
        if not isinstance(request, dict):
            raise Unprocessable(
                [
                    {
                        "type": "model_attributes_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid dictionary",
                        "input": request,
                    }
                ]
            )
        scenario = read_scenario()
        override = (request.get("override_settings") or {}).get("sd_model_checkpoint")
        chosen = self.find(override) if override else None  # unknown: dropped, as Forge does
        with self.lock:
            previous = self.selected
            if chosen:
                self.selected = chosen["filename"]
            try:
                model = self._load(scenario)
                return self._generate(request, model, scenario)
            finally:
                if request.get("override_settings_restore_afterwards", True):
                    self.selected = previous

    def _load(self, scenario: dict[str, str]) -> dict:
        listed = self.listed()
        path = self.selected or (listed[0]["filename"] if listed else None)
        if path is None:
            raise ApiError("ValueError", NO_MODEL, LOAD_FRAMES[:2])
        model = next(m for m in listed if m["filename"] == path)
        if self.loaded == path and "checkpoint-broken" not in scenario:
            return model
        info = {"filename": path, "hash": model["hash"]}
        print(
            f"Loading Model: {{'checkpoint_info': {info}, 'additional_modules': [], "
            "'unet_storage_dtype': None}",
            flush=True,
        )
        if "checkpoint-broken" in scenario:
            self.loaded = None
            raise ApiError(
                "ValueError",
                "Failed to recognize model type!",
                LOAD_FRAMES,
                cause="safetensors_rust.SafetensorError: Error while deserializing header: "
                "MetadataIncompleteBuffer",
            )
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.sha256[path] = digest.hexdigest()
        self.loaded = path
        print("Model loaded in 0.1s (lab stand-in).", flush=True)
        return next(m for m in self.listed() if m["filename"] == path)

    def _generate(self, request: dict, model: dict, scenario: dict[str, str]) -> dict:
        if "oom" in scenario:
            raise ApiError("torch.cuda.OutOfMemoryError", CUDA_OUT_OF_MEMORY, SAMPLE_FRAMES)
        width, height = int(request.get("width") or 512), int(request.get("height") or 512)
        steps = int(request.get("steps") or 50)
        seed = int(request.get("seed", -1))
        seed = random.randrange(4294967294) if seed == -1 else seed
        image = png_image(min(width, 4096), min(height, 4096), seed, black="nan" in scenario)
        prompt = str(request.get("prompt") or "")
        stem = os.path.splitext(os.path.basename(model["filename"]))[0]
        infotext = (
            f"{prompt}\nSteps: {steps}, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
            f"Seed: {seed}, Size: {width}x{height}, Model hash: {model['hash']}, Model: {stem}, "
            "Version: f2.0.1v1.10.1-lab-standin"
        )
        info = {
            "prompt": prompt,
            "all_prompts": [prompt],
            "negative_prompt": str(request.get("negative_prompt") or ""),
            "seed": seed,
            "all_seeds": [seed],
            "width": width,
            "height": height,
            "sampler_name": "Euler",
            "cfg_scale": 7.0,
            "steps": steps,
            "batch_size": 1,
            "sd_model_name": stem,
            "sd_model_hash": model["hash"],
            "infotexts": [infotext],
            "version": "f2.0.1v1.10.1-lab-standin",
        }
        send = request.get("send_images", True)
        return {
            "images": [base64.b64encode(image).decode()] if send else [],
            "parameters": {**request, "seed": request.get("seed", -1)},
            "info": json.dumps(info),
        }


def _openapi(webui) -> tuple:
    """FastAPI's schema of the app: every route, the login-protected ones included."""
    answered_in_do_get = {"/", "/login", "/login_check", "/logout", "/config", "/info"}
    sysinfo_pair = {"/internal/sysinfo", "/internal/sysinfo-download"}
    paths = sorted({path for _, path in OPEN_ROUTES} | answered_in_do_get | sysinfo_pair)
    schema = {"openapi": "3.1.0", "info": {"title": "FastAPI", "version": "0.1.0"}}
    return ({**schema, "paths": {p: {} for p in paths}},)


def _swagger(title: str) -> tuple:
    page = (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
        "<div id='swagger-ui'></div><script>const ui = SwaggerUIBundle("
        "{url: '/openapi.json', dom_id: '#swagger-ui'})</script></body></html>"
    )
    return (page.encode(), "text/html; charset=utf-8")


# Routes Forge's app (gradio 4.40 routes.py, Forge's webui.py, modules/ui.py,
# modules/progress.py, the built-in extensions) serves without gradio's login, as cheap
# stand-ins: method, path -> function(webui) giving (body[, content type]). The sysinfo pair,
# the login routes and "/" are answered in do_GET itself.
OPEN_ROUTES = {
    ("GET", "/docs"): lambda webui: _swagger("FastAPI - Swagger UI"),
    ("GET", "/redoc"): lambda webui: _swagger("FastAPI - ReDoc"),
    ("GET", "/openapi.json"): _openapi,
    ("GET", "/internal/ping"): lambda webui: ({},),
    ("GET", "/internal/profile-startup"): lambda webui: ({"total": 0.0, "records": {}},),
    ("GET", "/internal/quicksettings-hint"): lambda webui: (
        [{"name": "sd_model_checkpoint", "label": "Stable Diffusion checkpoint"}],
    ),
    ("GET", "/internal/pending-tasks"): lambda webui: ({"size": 0, "tasks": []},),
    ("POST", "/internal/progress"): lambda webui: (
        {
            "active": False,
            "queued": False,
            "completed": False,
            "progress": None,
            "eta": None,
            "live_preview": None,
            "id_live_preview": -1,
            "textinfo": "Waiting...",
        },
    ),
    ("GET", "/user"): lambda webui: (None,),
    ("GET", "/token"): lambda webui: ({"token": None, "user": None},),
    ("GET", "/app_id"): lambda webui: ({"app_id": webui.cookie_id[:16]},),
    ("GET", "/theme.css"): lambda webui: (b":root { --name: default; }", "text/css"),
    ("GET", "/robots.txt"): lambda webui: (
        b"User-agent: *\nDisallow: " + (b"/" if webui.args.share else b""),
        "text/plain; charset=utf-8",
    ),
    ("GET", "/favicon.ico"): lambda webui: (
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "image/svg+xml",
    ),
    ("GET", "/startup-events"): lambda webui: (False,),
    ("POST", "/reset"): lambda webui: ({"success": True},),
    # extensions-builtin: registered on app start, outside --api and --api-auth
    ("GET", "/sdapi/v1/loras"): lambda webui: ([],),
    ("GET", "/controlnet/model_list"): lambda webui: ({"model_list": []},),
    ("GET", "/controlnet/module_list"): lambda webui: ({"module_list": [], "module_detail": {}},),
}


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(args, argv: list[str]) -> tuple[_Server, str]:
    """Bind like gradio (0.0.0.0 with --listen, else 127.0.0.1); returns (server, host)."""
    host = getattr(args, "server_name", None) or ("0.0.0.0" if args.listen else "127.0.0.1")
    port = args.port or 7860
    handler = type("WebuiHandler", (Handler,), {"webui": Webui(args, argv)})
    try:
        server = _Server((host, port), handler)
    except OSError:
        raise OSError(
            f"Cannot find empty port in range: {port}-{port}. You can specify a different "
            "port by setting the GRADIO_SERVER_PORT environment variable or passing the "
            "`server_port` parameter to `launch()`."
        ) from None
    return server, host


def frpc_path() -> str:
    """gradio/tunneling.py: BINARY_PATH, in the gradio package folder of this env."""
    machine = platform.machine()
    machine = "amd64" if machine == "x86_64" else machine
    folder = os.path.join(sysconfig.get_paths()["purelib"], "gradio")
    return os.path.join(folder, f"frpc_{platform.system().lower()}_{machine.lower()}_v0.2")


def share_lines(scenario: dict[str, str], port: int, tunnels: list) -> list[str]:
    """What gradio prints after the local URL when --share is on. With gradio's
    GRADIO_SHARE_SERVER_ADDRESS (the lab's share server) the link is a real tunnel, appended
    to ``tunnels``; without it a made-up gradio.live link that leads nowhere."""
    if "share-fail" in scenario:
        return [SHARE_FAILED]
    if "frpc-cdn-blocked" in scenario and not os.path.isfile(frpc_path()):
        path = frpc_path()
        return [SHARE_MISSING_BINARY.format(path=path, folder=os.path.dirname(path))]
    if "share-missing-binary" in scenario:
        folder = os.path.join(sys.prefix, "lib", "python3", "site-packages", "gradio")
        return [SHARE_MISSING_BINARY.format(path=folder + "/frpc_linux_amd64_v0.2", folder=folder)]
    server = os.environ.get("GRADIO_SHARE_SERVER_ADDRESS")
    if server:
        from modules import standin_share  # noqa: PLC0415 - the checkout is on sys.path only then

        tunnel = standin_share.Tunnel(server, port)
        try:
            link = tunnel.open()
        except standin_share.TunnelError:
            return [SHARE_FAILED]
        tunnels.append(tunnel)
    else:
        link = f"https://{secrets.token_hex(9)}.gradio.live"
    return [
        f"Running on public URL: {link}",
        "\nThis share link expires in 72 hours. For free permanent hosting and GPU upgrades, "
        "run `gradio deploy` from Terminal to deploy to Spaces (https://huggingface.co/spaces)",
    ]


def announce(host: str, port: int, args, scenario: dict[str, str], tunnels: list) -> None:
    """gradio's launch lines: the local URL, then the share link or why there is none."""
    print(f"Running on local URL:  http://{host}:{port}", flush=True)
    if args.share:
        for line in share_lines(scenario, port, tunnels):
            print(line, flush=True)
    else:
        print("\nTo create a public link, set `share=True` in `launch()`.", flush=True)


def reload_ui(host: str, port: int, args, tunnels: list) -> None:
    """Forge's "Reload UI": gradio launches again in the same process, with a new link."""
    while tunnels:
        tunnels.pop().close()
    print("Reloading UI (lab stand-in)", flush=True)
    announce(host, port, args, read_scenario(), tunnels)


def serve(args, argv: list[str] | None = None) -> None:
    """Serve until killed, printing gradio's start lines on stdout."""
    argv = sys.argv if argv is None else argv
    scenario = read_scenario()
    started = time.monotonic()
    if "crash" in scenario:
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "launch.py", line 51, in <module>', file=sys.stderr)
        print(
            "RuntimeError: Torch is not able to use GPU; add --skip-torch-cuda-test to "
            "COMMANDLINE_ARGS variable to disable this check",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
    if "slow" in scenario:
        seconds = float(scenario["slow"] or 30)
        print(f"Loading weights (lab stand-in: {seconds:g} s) ...", flush=True)
        time.sleep(seconds)
    try:
        users_server = make_server(args, argv)
    except (OSError, ValueError, IndexError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    server, host = users_server
    port = server.server_address[1]
    tunnels: list = []
    announce(host, port, args, scenario, tunnels)
    # the lab's stand-in for the UI's "Reload UI" button: SIGUSR1 (a thread: not in the handler)
    signal.signal(
        signal.SIGUSR1,
        lambda *_: threading.Thread(
            target=reload_ui, args=(host, port, args, tunnels), daemon=True
        ).start(),
    )
    print(f"Startup time: {time.monotonic() - started:.1f}s (lab stand-in)", flush=True)
    server.serve_forever()
