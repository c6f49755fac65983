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
  --api-auth is given (as Forge's modules/api/api.py does);
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

Standard library only: it runs in the VM's conda env (Python 3.8+).
"""

from __future__ import annotations

import base64
import hmac
import http.server
import json
import os
import platform
import secrets
import signal
import socketserver
import sys
import sysconfig
import threading
import time
import urllib.parse

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
            self._api("POST", path)
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

    def _api(self, method: str, path: str):
        webui = self.webui
        routes = {
            ("GET", "/sdapi/v1/options"): lambda: {"sd_model_checkpoint": None},
            ("GET", "/sdapi/v1/sd-models"): _models,
            ("GET", "/sdapi/v1/progress"): lambda: {"progress": 0.0, "eta_relative": 0.0},
            ("GET", "/sdapi/v1/cmd-flags"): lambda: vars(webui.args),
        }
        route = routes.get((method, path))
        if not webui.args.api or route is None:
            self._send(404, NOT_FOUND)
            return
        allowed, error = webui.api_allowed(self.headers.get("Authorization"))
        if not allowed:
            self._send(401, error, headers=[("www-authenticate", "Basic")])
            return
        self._send(200, route())


def _models() -> list[dict]:
    folder = os.path.join(os.getcwd(), "models", "Stable-diffusion")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith((".safetensors", ".ckpt")))
    except FileNotFoundError:
        names = []
    return [
        {"title": n, "model_name": n.rsplit(".", 1)[0], "filename": os.path.join(folder, n)}
        for n in names
    ]


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
