"""The Forge stand-in's serving half answers like Forge's gradio 4.40 app on the paths we use.

Each test starts the real module in its own Python process (as launch.py does on the VM)
and talks HTTP to it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from forge_fleet import webui_smoke

ROOT = Path(__file__).resolve().parents[2]
FORGE_REPO = ROOT / "tests" / "doubles" / "forge" / "repo"
PASSWORD = "Sec:ret-pass_8f14e45fceea167a"  # a colon is allowed in gradio passwords
API_PASSWORD = "apiPass1679091c5a880faf6f"

# What launch.py hands over: an argparse Namespace with Forge's attribute names.
DRIVER = """
import argparse, json, sys
sys.path.insert(0, sys.argv[1])
from modules.standin_webui import serve
args = argparse.Namespace(**json.loads(sys.argv[2]))
sys.argv = json.loads(sys.argv[3])
serve(args)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    def __init__(self, proc: subprocess.Popen, port: int, lines: list[str]):
        self.proc, self.port, self.lines = proc, port, lines

    def ask(self, method: str, path: str, body: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def login(self, username: str, password: str):
        form = urlencode({"username": username, "password": password}).encode()
        return self.ask(
            "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )


def start(tmp_path: Path, scenario: str = "", argv=None, env=None, **options) -> Running:
    port = free_port()
    args = {
        "share": False,
        "listen": False,
        "port": port,
        "gradio_auth": None,
        "gradio_auth_path": None,
        "api": False,
        "api_auth": None,
        **options,
    }
    scenario_file = tmp_path / "webui-scenario"
    scenario_file.write_text(scenario)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            DRIVER,
            str(FORGE_REPO),
            json.dumps(args),
            json.dumps(argv or ["launch.py"]),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "FORGE_LAB_WEBUI_SCENARIO_FILE": str(scenario_file), **(env or {})},
    )
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Startup time:"):
            return Running(proc, port, lines)
    proc.wait(timeout=10)
    return Running(proc, port, lines)


@pytest.fixture
def served(tmp_path):
    running = []

    def factory(**kwargs) -> Running:
        r = start(tmp_path, **kwargs)
        running.append(r)
        return r

    yield factory
    for r in running:
        if r.proc.poll() is None:
            r.proc.kill()
        r.proc.wait(timeout=10)
        r.proc.stdout.close()


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "webui-auth"
    path.write_text(f"student:{PASSWORD}\n")
    return path


def test_prints_gradios_local_url_line(served):
    r = served()
    assert f"Running on local URL:  http://127.0.0.1:{r.port}" in r.lines
    assert not any("public URL" in line for line in r.lines)


def test_anonymous_config_and_login_check_answer_401(served, auth_file):
    r = served(gradio_auth_path=str(auth_file))
    for path in ("/config", "/login_check", "/info"):
        status, _, body = r.ask("GET", path)
        assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"}), path


def test_root_serves_the_login_page_when_auth_is_on(served, auth_file):
    r = served(gradio_auth_path=str(auth_file))
    status, _, body = r.ask("GET", "/")
    assert status == 200
    assert b'"auth_required": true' in body


def test_right_password_logs_in_and_the_cookie_opens_config(served, auth_file):
    r = served(gradio_auth_path=str(auth_file))
    status, headers, body = r.login("student", PASSWORD)
    assert (status, json.loads(body)) == (200, {"success": True})
    cookies = headers.get_all("set-cookie")
    names = [c.split("=", 1)[0] for c in cookies]
    cookie_id = names[0].removeprefix("access-token-")
    assert re.fullmatch(r"[\w-]{40,}", cookie_id)
    assert names == [f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"]
    cookie = cookies[1].split(";", 1)[0]
    status, _, body = r.ask("GET", "/config", headers={"Cookie": cookie})
    assert status == 200 and json.loads(body)["username"] == "student"
    assert r.ask("GET", "/login_check", headers={"Cookie": cookie})[0] == 200


@pytest.mark.parametrize(
    ("user", "password"), [("student", "wrong"), ("nobody", PASSWORD), ("student", "")]
)
def test_wrong_credentials_answer_400(served, auth_file, user, password):
    r = served(gradio_auth_path=str(auth_file))
    status, headers, body = r.login(user, password)
    assert (status, json.loads(body)) == (400, {"detail": "Incorrect credentials."})
    assert headers.get("set-cookie") is None


def test_auth_file_in_forges_syntax_several_users_per_line(served, tmp_path):
    path = tmp_path / "auth"
    path.write_text(" alice:a1 , bob:b:2\n\ncarol:c3\n")
    r = served(gradio_auth_path=str(path))
    assert r.login("alice", "a1")[0] == 200
    assert r.login("bob", "b:2")[0] == 200
    assert r.login("carol", "c3")[0] == 200
    assert r.login("bob", "b")[0] == 400


def test_login_form_without_fields_is_a_validation_error(served, auth_file):
    r = served(gradio_auth_path=str(auth_file))
    status, _, _ = r.ask(
        "POST", "/login", b"username=student", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 422


def test_without_auth_everything_is_open(served):
    r = served()
    assert r.ask("GET", "/config")[0] == 200
    assert r.ask("GET", "/login_check")[0] == 200


def test_api_is_absent_without_the_api_flag(served):
    r = served()
    assert r.ask("GET", "/sdapi/v1/options")[0] == 404


def test_api_without_api_auth_is_open_even_behind_gradio_login(served, auth_file):
    r = served(gradio_auth_path=str(auth_file), api=True)
    assert r.ask("GET", "/sdapi/v1/options")[0] == 200


def test_api_auth_refuses_anonymous_and_wrong_and_lets_the_right_one_in(served, auth_file):
    r = served(gradio_auth_path=str(auth_file), api=True, api_auth=f"api:{API_PASSWORD}")
    status, headers, body = r.ask("GET", "/sdapi/v1/sd-models")
    assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"})
    assert headers["www-authenticate"] == "Basic"

    def basic(user, password):
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    status, _, body = r.ask("GET", "/sdapi/v1/sd-models", headers=basic("api", "nope"))
    assert (status, json.loads(body)) == (401, {"detail": "Incorrect username or password"})
    assert r.ask("GET", "/sdapi/v1/sd-models", headers=basic("api", API_PASSWORD))[0] == 200


def test_sysinfo_needs_no_login_hides_argv_secrets_and_shows_commandline_args(served, auth_file):
    r = served(
        gradio_auth_path=str(auth_file),
        gradio_auth="x:inline-secret",
        api=True,
        api_auth=f"api:{API_PASSWORD}",
        argv=["launch.py", "--gradio-auth", "x:inline-secret", "--api-auth", f"api:{API_PASSWORD}"],
        env={"COMMANDLINE_ARGS": "--api-auth leaked:visible", "UNLISTED": "nope"},
    )
    status, headers, body = r.ask("GET", "/internal/sysinfo")
    assert status == 200
    assert headers["content-disposition"].startswith("inline;")
    info = json.loads(body)
    assert info["Commandline"] == [
        "launch.py",
        "--gradio-auth",
        "<hidden>",
        "--api-auth",
        "<hidden>",
    ]
    assert info["Environment"]["COMMANDLINE_ARGS"] == "--api-auth leaked:visible"
    assert "UNLISTED" not in info["Environment"]
    assert API_PASSWORD.encode() not in body
    assert r.ask("GET", "/internal/sysinfo-download")[1]["content-disposition"].startswith(
        "attachment;"
    )


def test_share_prints_a_made_up_gradio_live_link_that_expires_in_72_hours(served):
    r = served(share=True)
    public = [line for line in r.lines if line.startswith("Running on public URL: ")]
    assert len(public) == 1
    assert re.fullmatch(r"Running on public URL: https://[0-9a-f]{18}\.gradio\.live", public[0])
    assert any("This share link expires in 72 hours" in line for line in r.lines)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("share-fail", "Could not create share link. Please check your internet connection"),
        ("share-missing-binary", "Could not create share link. Missing file:"),
    ],
)
def test_share_failure_scenarios_print_gradios_message_and_keep_serving(served, scenario, message):
    r = served(share=True, scenario=scenario)
    text = "\n".join(r.lines)
    assert message in text
    assert "public URL" not in text
    assert r.ask("GET", "/login_check")[0] == 200


def test_crash_scenario_exits_1_with_forges_gpu_error(served):
    r = served(scenario="crash\n")
    assert r.proc.wait(timeout=10) == 1
    assert any("Torch is not able to use GPU" in line for line in r.lines)


def test_slow_scenario_delays_serving(served):
    began = time.monotonic()
    r = served(scenario="slow 2  # a big checkpoint\n")
    assert time.monotonic() - began >= 2
    assert r.ask("GET", "/login_check")[0] == 200


def test_port_in_use_exits_1_with_gradios_message(served):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        r = served(port=sock.getsockname()[1])
        assert r.proc.wait(timeout=10) == 1
    assert any("Cannot find empty port in range" in line for line in r.lines)


def test_a_credential_line_without_colon_fails_at_start(served, tmp_path):
    path = tmp_path / "auth"
    path.write_text("justaname\n")
    r = served(gradio_auth_path=str(path))
    assert r.proc.wait(timeout=10) == 1


def _standin_module():
    """The serving half itself, loaded from its file (it imports only the standard library)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location(
        "standin_webui_under_test", FORGE_REPO / "modules" / "standin_webui.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frpc_binary_is_named_and_placed_as_gradio_4_40_does(monkeypatch):
    standin = _standin_module()
    monkeypatch.setattr(standin.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(standin.sysconfig, "get_paths", lambda: {"purelib": "/env/site"})
    assert standin.frpc_path() == "/env/site/gradio/frpc_linux_amd64_v0.2"
    monkeypatch.setattr(standin.platform, "machine", lambda: "aarch64")
    assert standin.frpc_path() == "/env/site/gradio/frpc_linux_aarch64_v0.2"


def test_blocked_cdn_shares_only_once_the_binary_is_in_gradios_folder(tmp_path, monkeypatch):
    standin = _standin_module()
    binary = tmp_path / "gradio" / "frpc_linux_amd64_v0.2"
    monkeypatch.setattr(standin, "frpc_path", lambda: str(binary))
    missing = "\n".join(standin.share_lines({"frpc-cdn-blocked": ""}, 7860, []))
    assert f"Could not create share link. Missing file: {binary}." in missing
    assert f"Move the file to this location: {binary.parent}" in missing
    binary.parent.mkdir()
    binary.write_bytes(b"frpc")
    shared = standin.share_lines({"frpc-cdn-blocked": ""}, 7860, [])
    assert shared[0].startswith("Running on public URL: https://")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/internal/ping"),
        ("GET", "/internal/pending-tasks"),
        ("POST", "/internal/progress"),
        ("GET", "/sdapi/v1/loras"),
        ("GET", "/robots.txt"),
    ],
)
def test_forges_open_routes_answer_without_the_login(served, auth_file, method, path):
    r = served(gradio_auth_path=str(auth_file), api=True, api_auth=f"api:{API_PASSWORD}")
    status, _, body = r.ask(method, path, body=b"{}" if method == "POST" else None)
    assert status == 200
    assert PASSWORD.encode() not in body and API_PASSWORD.encode() not in body
    assert r.ask("GET", "/config")[0] == 401  # the UI itself stays behind the login


# -- Forge's API: checkpoints and txt2img (modules/api/api.py, processing.py at the pin) ----


def basic(user: str = "api", password: str = API_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def checkpoints(tmp_path) -> dict[str, Path]:
    """Two checkpoints where Forge lists them (the stand-in runs in tmp_path), and a VAE."""
    folder = tmp_path / "models" / "Stable-diffusion"
    (folder / "xl").mkdir(parents=True)
    paths = {"b-sd15": folder / "b-sd15.safetensors", "a-xl": folder / "xl" / "A-xl.safetensors"}
    for name, path in paths.items():
        path.write_bytes(name.encode() * 100)
    (folder / "b-sd15.vae.safetensors").write_bytes(b"vae")
    return paths


def api_served(served, **options) -> Running:
    return served(api=True, api_auth=f"api:{API_PASSWORD}", **options)


def txt2img(r: Running, **request):
    body = json.dumps({"prompt": "a lighthouse", "steps": 1, "width": 64, "height": 64, **request})
    status, _, answer = r.ask(
        "POST",
        "/sdapi/v1/txt2img",
        body.encode(),
        {"Content-Type": "application/json", **basic()},
    )
    return status, json.loads(answer)


def printed_since_start(r: Running) -> str:
    """What the stand-in printed after its start line (its journal), once stopped."""
    r.proc.kill()
    return r.proc.stdout.read()


def test_sd_models_answers_in_forges_shape_hashes_known_once_loaded(served, checkpoints):
    r = api_served(served)
    status, _, body = r.ask("GET", "/sdapi/v1/sd-models", headers=basic())
    assert status == 200
    assert json.loads(body) == [
        {
            "title": "b-sd15.safetensors",
            "model_name": "b-sd15",
            "hash": None,
            "sha256": None,
            "filename": str(checkpoints["b-sd15"]),
            "config": None,
        },
        {
            "title": "xl/A-xl.safetensors",
            "model_name": "xl_A-xl",
            "hash": None,
            "sha256": None,
            "filename": str(checkpoints["a-xl"]),
            "config": None,
        },
    ]
    assert txt2img(r)[0] == 200  # loads the first one: Forge hashes it then
    sha256 = hashlib.sha256(checkpoints["b-sd15"].read_bytes()).hexdigest()
    first = json.loads(r.ask("GET", "/sdapi/v1/sd-models", headers=basic())[2])[0]
    assert (first["title"], first["hash"], first["sha256"]) == (
        f"b-sd15.safetensors [{sha256[:10]}]",
        sha256[:10],
        sha256,
    )


def test_txt2img_needs_the_api_credentials(served, checkpoints):
    r = api_served(served)
    status, _, body = r.ask("POST", "/sdapi/v1/txt2img", b"{}", basic(password="wrong"))
    assert (status, json.loads(body)) == (401, {"detail": "Incorrect username or password"})


def test_txt2img_makes_a_png_of_the_size_asked_for_the_same_for_a_seed(
    served, checkpoints, tmp_path
):
    r = api_served(served)
    status, answer = txt2img(r, width=64, height=96, seed=7, save_images=False)
    assert status == 200
    data = base64.b64decode(answer["images"][0])
    assert webui_smoke.png_size(data) == (64, 96)
    assert len(webui_smoke.png_pixels(data)) > 100  # a picture, not one colour
    assert txt2img(r, width=64, height=96, seed=7)[1]["images"] == answer["images"]
    assert txt2img(r, width=64, height=96, seed=8)[1]["images"] != answer["images"]
    info = json.loads(answer["info"])
    assert (info["seed"], info["width"], info["height"], info["steps"]) == (7, 64, 96, 1)
    assert info["sd_model_name"] == "b-sd15"
    assert answer["parameters"]["prompt"] == "a lighthouse"
    assert not (tmp_path / "outputs").exists()


def test_txt2img_uses_the_checkpoint_of_override_settings_and_drops_an_unknown_one(
    served, checkpoints
):
    r = api_served(served)
    chosen = txt2img(r, override_settings={"sd_model_checkpoint": "xl/A-xl.safetensors"})[1]
    assert json.loads(chosen["info"])["sd_model_name"] == "A-xl"
    # restored afterwards, and an unknown name is dropped (processing.py): the first one
    for override in ({}, {"sd_model_checkpoint": "nope.safetensors"}):
        answer = txt2img(r, override_settings=override)[1]
        assert json.loads(answer["info"])["sd_model_name"] == "b-sd15"


@pytest.mark.parametrize(
    "case",
    [
        ("oom", "torch.cuda.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.50 GiB."),
        ("checkpoint-broken", "ValueError", "Failed to recognize model type!"),
    ],
    ids=["oom", "checkpoint-broken"],
)
def test_failure_scenarios_answer_forges_error_json_and_print_the_traceback(
    served, checkpoints, tmp_path, case
):
    scenario, qualified, message = case
    r = api_served(served)
    (tmp_path / "webui-scenario").write_text(f"{scenario}\n")  # read at each request
    status, answer = txt2img(r)
    assert status == 500
    assert answer["error"] == qualified.rsplit(".", 1)[-1]
    assert (answer["detail"], answer["body"]) == ("", "")
    assert answer["message"].startswith(message)
    printed = printed_since_start(r)
    assert "ERROR:    Exception in ASGI application" in printed
    assert f"{qualified}: {answer['message']}\n" in printed
    assert webui_smoke.journal_error(printed.splitlines()) == f"{qualified}: {answer['message']}"


def test_nan_scenario_answers_a_black_image_as_forge_at_the_pin(served, checkpoints, tmp_path):
    r = api_served(served)
    (tmp_path / "webui-scenario").write_text("nan\n")
    status, answer = txt2img(r)
    assert status == 200
    assert webui_smoke.png_pixels(base64.b64decode(answer["images"][0])) == {b"\0\0\0"}


def test_txt2img_without_any_checkpoint_fails_as_forges_loader(served):
    r = api_served(served)
    assert json.loads(r.ask("GET", "/sdapi/v1/sd-models", headers=basic())[2]) == []
    status, answer = txt2img(r)
    assert (status, answer["error"]) == (500, "ValueError")
    assert answer["message"].startswith("You do not have any model!")


def test_the_first_image_module_passes_against_the_stand_in(served, checkpoints, auth_file):
    r = api_served(served, gradio_auth_path=str(auth_file))

    def run(argv):
        return 0, "ActiveState=active\nExecMainStartTimestampMonotonic=1\n", ""

    result = webui_smoke.smoke(
        r.port,
        "forge-webui.service",
        login=("student", PASSWORD),
        api_auth=("api", API_PASSWORD),
        run=run,
    )
    assert (result["checkpoint"], result["model_used"]) == ("b-sd15.safetensors", "b-sd15")
    assert (result["width"], result["height"]) == (64, 64)
    assert result["image_bytes"] > 100
