"""site.yml against the REAL Stable Diffusion WebUI Forge on one lab VM, on CPU.

Forge at the project's pin and what its preparation clones and installs (assets,
huggingface_guess, BLIP, CLIP, open_clip) come from the upstream sources served from this
machine (git daemon and HTTPS on the lab network's gateway, tests/harness/real_forge.py);
torch, gradio and the rest of Forge's requirements from PyPI, through a pip cache kept on this
machine between runs. The models stage places a full-shape SD 1.5 checkpoint (random weights)
from the lab's Hugging Face stand-in. The only doubles left are the GPU (nvidia-smi, so Forge
runs with --always-cpu) and conda (a real Python 3.10).

One converge shared by the module; the tests that only read come first, then the re-run, the
kill -9 and the broken mirror, which leave the VM changed. Skipped, saying why, without the
upstream sources (FORGE_UPSTREAM names a folder or URL base; default <repo>/../shared/upstream).
"""

from __future__ import annotations

import base64
import csv
import json
import re
import secrets
import time
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT
from lab.tls import issue_server_cert
from tests.doubles.model_hub import ModelHub
from tests.harness import real_forge
from tests.harness.lab import free_port_block, lab_vms
from tests.harness.playbook import run_playbook
from tests.integration.test_webui import OPEN_ROUTES

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.real_forge,
    pytest.mark.skipif(real_forge.upstream() is None, reason=real_forge.upstream_missing_reason()),
    # a cold pip cache downloads about 3 GB and the preparation installs it on 2 cores
    pytest.mark.timeout(3600),
]

FORGE = "/home/azureuser/stable-diffusion-webui-forge"
ENV_PYTHON = "/anaconda/envs/forge/bin/python"
RECORD = "/var/lib/forge-fleet/forge.json"
UNIT = "forge-webui.service"
CHECKPOINT_REPO = "forge-lab/random-sd15"
CHECKPOINT = "random-sd15.safetensors"
PREPARE_WAIT = "Wait for the preparation, showing progress"
COLLECT = "Collect the preparation result"
READY = "Wait until Forge answers behind its login"
SMOKE = "Make one tiny image as the class would"  # the webui stage's first image
# Wheels forge_legacy_preprocessors' install.py fetches from GitHub releases; no mirror of
# them here (HANDREFINER_WHEEL, DEPTH_ANYTHING_WHEEL, DEPTH_ANYTHING_V2_WHEEL)
PREPROCESSOR_WHEELS = (
    "https://github.com/huchenlei/HandRefinerPortable/releases/download/",
    "https://github.com/huchenlei/Depth-Anything/releases/download/",
    "https://github.com/MackinationsAi/UDAV2-ControlNet/releases/download/",
)
TIMES: dict[str, float] = {}  # measured durations, printed at the end of the module

# One request from inside the VM (Forge listens on 127.0.0.1 there): prints status and body.
HTTP = r"""
import base64, json, sys, time, urllib.error, urllib.parse, urllib.request
method, path, form, body, basic = sys.argv[1:6]
data, headers = None, {}
if form:
    data = urllib.parse.urlencode(json.loads(form)).encode()
elif body:
    data, headers = body.encode(), {"Content-Type": "application/json"}
req = urllib.request.Request("http://127.0.0.1:7860" + path, data=data, method=method,
                             headers=headers)
if basic:
    req.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
began = time.monotonic()
try:
    resp = urllib.request.urlopen(req, timeout=600)
except urllib.error.HTTPError as err:
    resp = err
except urllib.error.URLError as err:
    print(json.dumps({"status": 0, "body": str(err.reason), "seconds": 0}))
    sys.exit(0)
text = resp.read().decode()
print(json.dumps({"status": resp.status, "body": text, "seconds": time.monotonic() - began}))
"""


def ask(vm, path, *, method="GET", form=None, body=None, basic=""):
    raw = vm.exec(
        vm.hosts[0],
        "python3",
        "-c",
        HTTP,
        method,
        path,
        json.dumps(form) if form else "",
        json.dumps(body) if body else "",
        basic,
    )
    return json.loads(raw)


def show(vm, prop: str) -> str:
    return vm.exec(vm.hosts[0], "systemctl", "show", UNIT, "-p", prop, "--value").strip()


def as_user(vm, command: str) -> str:
    return vm.exec(vm.hosts[0], "runuser", "-u", "azureuser", "--", "sh", "-c", command)


def pip_freeze(vm) -> str:
    return as_user(vm, f"{ENV_PYTHON} -m pip list --format=freeze")


# -- the module's VM, mirrors, checkpoint and converge -----------------------------------


@pytest.fixture(scope="module")
def vm():
    volumes = [real_forge.pip_cache_volume()]
    with lab_vms("t-real-forge", 1, free_port_block(1), volumes=volumes) as handle:
        real_forge.prepare_vm(handle.hosts[0])
        yield handle


@pytest.fixture(scope="module")
def upstream(vm, tmp_path_factory):
    source = real_forge.upstream()
    assert source is not None
    folder = tmp_path_factory.mktemp("upstream")
    with real_forge.serving_upstream(vm.lab.gateway, source, folder) as served:
        yield served


@pytest.fixture(scope="module")
def hub(vm, tmp_path_factory):
    """The lab's Hugging Face stand-in serving the checkpoint (made once per recipe)."""
    began = time.monotonic()
    path, sha256 = real_forge.random_sd15_checkpoint()
    TIMES["checkpoint ready on this machine (s)"] = time.monotonic() - began
    cert, key = issue_server_cert([vm.lab.gateway], tmp_path_factory.mktemp("hub") / "tls")
    with ModelHub(vm.lab.gateway, tls=(str(cert), str(key))) as served:
        token = f"hf_{secrets.token_hex(16)}"
        served.state.tokens.add(token)
        assert served.add_hf_file(CHECKPOINT_REPO, CHECKPOINT, path) == sha256
        yield served, token, sha256


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("site")


@pytest.fixture(scope="module")
def settings(vm, upstream, hub, folder):
    served, token, _ = hub
    return {
        "forge_repo_url": upstream.forge_url,
        "forge_environment": upstream.environment(),
        "forge_torch_command": "pip install torch==2.3.1 torchvision==0.18.1",
        "forge_pip_index_url": real_forge.pip_index_url(),
        "forge_pip_cert": real_forge.VM_CA_BUNDLE,
        # the nvidia-smi double plays a GPU that torch (PyPI's build, on CPU) cannot see; site
        # hands these to the preparation too (forge_prepare_args)
        "webui_extra_args": ["--always-cpu", "--skip-torch-cuda-test"],
        "webui_share": False,  # no gradio.live from here; the login stays on
        "webui_api": True,
        "models_catalog": [
            {
                "source": "huggingface",
                "repo": CHECKPOINT_REPO,
                "file": CHECKPOINT,
                "kind": "checkpoint",
                "base_model": "sd1",
            }
        ],
        "models_huggingface_endpoint": served.api_url,
        "models_huggingface_token": token,
        "report_dir": str(folder / "reports"),
        "webui_credentials_dir": str(folder / "credentials"),
    }


def site(vm, settings, **options):
    return run_playbook(
        "site.yml",
        vm.inventory,
        extravars={**settings, **options.pop("extravars", {})},
        envvars={"FORGE_RUN_RECORD": str(Path(settings["report_dir"]) / ".run-record.json")},
        **options,
    )


@pytest.fixture(scope="module")
def converged(vm, settings):
    result = site(vm, settings)
    host = vm.hosts[0]
    TIMES["converge, site.yml (s)"] = result.duration_s
    try:
        TIMES["preparation (s)"] = result.task(PREPARE_WAIT, host).duration
        TIMES["Forge start until it answers (s)"] = result.task(READY, host).duration
        smoke = result.task(SMOKE, host).res
        TIMES["first image in the converge: txt2img, 64x64, 1 step (s)"] = smoke[
            "generation_seconds"
        ]
        TIMES["first image in the converge: from Forge's start (s)"] = smoke["first_image_seconds"]
    except KeyError:
        pass
    journal = vm.exec(host, "journalctl", "--no-pager", "-u", UNIT, "-o", "cat", check=False)
    started = re.findall(r"^Startup time: ([0-9.]+)s", journal, re.M)
    if started:
        TIMES["Forge's own startup time, first start (s)"] = float(started[0])
    # what the preparation installed, kept for the next run's (even when it failed later on)
    began = time.monotonic()
    if real_forge.keep_wheels(host, ENV_PYTHON):
        TIMES["wheels kept on this machine for the next run (s)"] = time.monotonic() - began
    assert result.ok, result.explain()
    return result


@pytest.fixture(scope="module")
def credentials(converged, settings) -> dict[str, str]:
    path = Path(settings["webui_credentials_dir"]) / "webui-access.csv"
    with path.open(encoding="utf-8") as handle:
        return next(iter(csv.DictReader(handle)))


@pytest.fixture(scope="module", autouse=True)
def report_times():
    yield
    if TIMES:
        lines = "\n".join(f"  {name}: {value:.1f}" for name, value in TIMES.items())
        print(f"\nreal Forge tier, measured:\n{lines}")
        (REPO_ROOT / ".lab").mkdir(exist_ok=True)
        (REPO_ROOT / ".lab" / "real-forge-times.json").write_text(json.dumps(TIMES, indent=1))


# -- the preparation, from the mirrors ----------------------------------------------------


def test_forge_is_the_pinned_commit_cloned_from_the_mirror(vm, upstream, converged):
    head = as_user(vm, f"git -C {FORGE} rev-parse HEAD").strip()
    assert head == "dfdcbab685e57677014f05a3309b48cc87383167"
    assert as_user(vm, f"git -C {FORGE} remote get-url origin").strip() == upstream.forge_url


@pytest.mark.parametrize(
    "repository",
    [
        ("stable-diffusion-webui-assets", real_forge.ASSETS_REPO, real_forge.ASSETS_COMMIT),
        (
            "huggingface_guess",
            real_forge.HUGGINGFACE_GUESS_REPO,
            real_forge.HUGGINGFACE_GUESS_COMMIT,
        ),
        ("BLIP", real_forge.BLIP_REPO, real_forge.BLIP_COMMIT),
    ],
    ids=["assets", "huggingface_guess", "BLIP"],
)
def test_preparation_cloned_each_repository_from_the_mirror(vm, upstream, converged, repository):
    folder, repo, commit = repository
    path = f"{FORGE}/repositories/{folder}"
    assert as_user(vm, f"git -C {path} rev-parse HEAD").strip() == commit
    assert as_user(vm, f"git -C {path} remote get-url origin").strip() == (
        f"{upstream.git_base}/{repo}"
    )


def test_preparation_installed_clip_open_clip_torch_and_gradio_into_the_env(
    vm, upstream, converged
):
    frozen = pip_freeze(vm).lower().replace("_", "-")
    for package in ("clip==1.0", "open-clip-torch==", "torch==2.3.1", "gradio==4.40.0"):
        assert re.search(rf"^{re.escape(package)}", frozen, re.M), package
    # nothing cloned or downloaded from elsewhere, but for the preprocessor wheels no mirror
    # here serves (Forge warns and goes on)
    log = vm.exec(vm.hosts[0], "cat", "/home/azureuser/.cache/forge-fleet/prepare.log")
    index = real_forge.pip_index_url().split("/simple")[0]
    ours = (upstream.git_base, upstream.file_base, index, "https://files.pythonhosted.org/")
    urls = set(re.findall(r"(?:https?|git)://[^\s'\"()]+", log))
    elsewhere = {url for url in urls if not url.startswith(ours)}
    assert {url for url in elsewhere if not url.startswith(PREPROCESSOR_WHEELS)} == set()
    assert f"Cloning BLIP into {FORGE}/repositories/BLIP" in log  # it did prepare, logged
    if upstream.requests is not None:  # served from this machine (not a FORGE_UPSTREAM URL)
        for archive in (real_forge.CLIP_ZIP, real_forge.OPENCLIP_ZIP):
            assert any(f"GET /{archive} " in line for line in upstream.requests), archive


# -- Forge behind its login ---------------------------------------------------------------


def test_forge_on_cpu_refuses_anonymous_requests(vm, converged):
    for path in ("/config", "/login_check"):
        answer = ask(vm, path)
        assert (answer["status"], json.loads(answer["body"])) == (
            401,
            {"detail": "Not authenticated"},
        )


def test_right_password_logs_in_and_a_wrong_one_is_refused(vm, credentials):
    ok = ask(
        vm,
        "/login",
        method="POST",
        form={"username": credentials["user"], "password": credentials["password"]},
    )
    assert (ok["status"], json.loads(ok["body"])) == (200, {"success": True})
    wrong = ask(
        vm, "/login", method="POST", form={"username": credentials["user"], "password": "guess"}
    )
    assert (wrong["status"], json.loads(wrong["body"])) == (
        400,
        {"detail": "Incorrect credentials."},
    )


# -- one image ----------------------------------------------------------------------------


def test_models_stage_placed_the_checkpoint_forge_lists(vm, hub, credentials):
    path = f"{FORGE}/models/Stable-diffusion/{CHECKPOINT}"
    assert vm.exec(vm.hosts[0], "sha256sum", path).split()[0] == hub[2]
    api = f"{credentials['api_user']}:{credentials['api_password']}"
    models = ask(vm, "/sdapi/v1/sd-models", basic=api)
    assert models["status"] == 200, models["body"][:500]
    assert CHECKPOINT in [Path(m["filename"]).name for m in json.loads(models["body"])]


def test_the_converge_proved_forge_makes_an_image(vm, converged):
    smoke = converged.task(SMOKE, vm.hosts[0])
    assert smoke.status == "ok" and not smoke.changed, smoke.res
    image = smoke.res
    # Forge's title: the file name, with " [<sha256[:10]>]" once it hashed the checkpoint
    assert image["checkpoint"].split(" [")[0] == CHECKPOINT
    assert image["model_used"] == CHECKPOINT.rsplit(".", 1)[0]
    assert (image["width"], image["height"], image["steps"]) == (64, 64, 1)
    # the load of the checkpoint and one step on 2 CPU cores; Forge started before it
    assert 0 < image["generation_seconds"] < image["first_image_seconds"] < 900
    assert image["image_bytes"] > 1000
    # nothing saved where Forge keeps images (save_images: false)
    found = vm.exec(vm.hosts[0], "sh", "-c", f"find {FORGE}/outputs -name '*.png' 2>/dev/null; :")
    assert found.strip() == ""


def test_txt2img_returns_a_64x64_png_that_is_not_blank(vm, credentials):
    api = f"{credentials['api_user']}:{credentials['api_password']}"
    request = {"prompt": "a lighthouse", "steps": 1, "width": 64, "height": 64, "seed": 1}
    answer = ask(vm, "/sdapi/v1/txt2img", method="POST", body=request, basic=api)
    # the converge's first image loaded the checkpoint already
    TIMES["txt2img after the first image, 64x64, 1 step (s)"] = answer["seconds"]
    assert answer["status"] == 200, answer["body"][:2000]
    png = base64.b64decode(json.loads(answer["body"])["images"][0])
    width, height, rows = real_forge.png_pixels(png)
    assert (width, height) == (64, 64)
    pixels = {row[x : x + 3] for row in rows for x in range(0, len(row), len(row) // 64)}
    values = [value for row in rows for value in row]
    # random weights give a dim, low-contrast image: what counts is that it is not one colour
    assert len(pixels) > 1 and max(values) - min(values) >= 2, f"one colour: {pixels}"


def test_the_api_refuses_a_wrong_password(vm, credentials):
    answer = ask(vm, "/sdapi/v1/sd-models", basic=f"{credentials['api_user']}:wrong")
    assert answer["status"] == 401


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["password", "api_password"])
def test_no_password_in_journal_ps_environ_or_sysinfo(vm, credentials, column):
    secret = credentials[column]
    assert len(secret) >= 16
    host = vm.hosts[0]
    assert secret not in vm.exec(host, "journalctl", "--no-pager", "-u", UNIT, "-o", "cat")
    assert secret not in vm.exec(host, "ps", "-eo", "args")
    environ = vm.exec(
        host, "sh", "-c", "for f in /proc/[0-9]*/environ; do cat $f 2>/dev/null; echo; done"
    )
    assert "FORGE_FLEET" in environ or "PATH=" in environ  # it did read the environments
    assert secret not in environ
    sysinfo = ask(vm, "/internal/sysinfo")
    assert sysinfo["status"] == 200
    assert secret not in sysinfo["body"]


def test_routes_open_without_the_login_show_no_password(vm, credentials):
    # the routes roles/webui/README.md lists as served without the login, asked anonymously
    secrets_ = {credentials["password"], credentials["api_password"]}
    assert all(len(secret) >= 16 for secret in secrets_)
    statuses = {}
    for method, path in OPEN_ROUTES:
        body = {"id_task": "task(none)", "id_live_preview": -1} if method == "POST" else None
        answer = ask(vm, path, method=method, body=body)
        statuses[path] = answer["status"]
        assert not any(secret in answer["body"] for secret in secrets_), path
    assert ask(vm, "/config")["status"] == 401
    for path in ("/docs", "/openapi.json", "/internal/ping", "/internal/sysinfo"):
        assert statuses[path] == 200, statuses
    assert statuses["/login_check"] == 401, statuses


# -- a re-run, a kill -9, a broken mirror (these change the VM: last) ---------------------


def test_second_run_changes_nothing_and_keeps_forge_running(vm, settings, converged):
    pid = show(vm, "MainPID")
    result = site(vm, settings)
    assert result.ok, result.explain()
    TIMES["second site.yml run (s)"] = result.duration_s
    host = vm.hosts[0]
    assert result.stats[host]["changed"] == 0, result.changed_tasks(host)
    assert show(vm, "MainPID") == pid


def forge_python_pid(vm) -> int:
    """Forge's python: the process webui.sh (the unit's main process) runs launch.py in."""
    host = vm.hosts[0]
    children = vm.exec(
        host, "ps", "-o", "pid=,args=", "--ppid", show(vm, "MainPID"), check=False
    ).splitlines()
    for line in children:
        pid, args = line.strip().split(" ", 1)
        if "python" in args.split(" ", 1)[0]:
            return int(pid)
    raise AssertionError(f"no python under {UNIT}'s main process: {children}")


def test_systemd_brings_forge_back_within_30_s_after_kill_9(vm, converged):
    before = forge_python_pid(vm)
    vm.exec(vm.hosts[0], "kill", "-9", str(before))
    deadline = time.monotonic() + 30
    now = before
    while time.monotonic() < deadline:
        try:
            now = forge_python_pid(vm)
        except AssertionError:
            now = before
        if now != before and show(vm, "ActiveState") == "active":
            break
        time.sleep(1)
    assert now != before, (
        f"no new Forge python 30 s after kill -9 of {before}: the unit is "
        f"{show(vm, 'ActiveState')}/{show(vm, 'SubState')}, NRestarts={show(vm, 'NRestarts')}"
    )


def test_a_clip_package_that_does_not_exist_fails_the_host_and_records_nothing(
    vm, upstream, settings, converged
):
    host = vm.hosts[0]
    record_before = vm.exec(host, "sha256sum", RECORD).split()[0]
    # Forge installs CLIP only when it is missing: take it away, as a fresh env would be
    as_user(vm, f"{ENV_PYTHON} -m pip uninstall -y clip")
    missing = f"{upstream.file_base}/CLIP-0000000000000000000000000000000000000000.zip"
    broken = {**settings["forge_environment"], "CLIP_PACKAGE": missing}
    result = site(
        vm, settings, extravars={"forge_environment": broken}, tags="preflight,base,conda,forge"
    )
    assert not result.ok
    failure = result.task(COLLECT, host)
    assert failure.failed
    assert "(Couldn't install clip)" in failure.msg  # Forge's step, from its log
    assert "CLIP-0000" in failure.msg  # the package pip was given, in the log's last lines
    assert "Nothing was recorded as prepared" in failure.msg
    assert vm.exec(host, "sha256sum", RECORD).split()[0] == record_before
