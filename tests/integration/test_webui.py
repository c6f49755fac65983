"""The webui stage on lab VMs: Forge (the stand-in) under the real systemd, behind its login.

Two VMs shared by the module: the conda and forge stages prepare them once, then the webui
playbook runs as an operator would run it. Requests to Forge are made from inside the VM
(Forge listens on 127.0.0.1 there).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import stat
import time

import pytest

from forge_fleet import env_file
from lab import forge_repo, podman
from lab.paths import REPO_ROOT
from lab.tls import issue_server_cert
from tests.doubles.download_site import DownloadSite
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

UNIT = "forge-webui.service"
AUTH_FILE = "/home/azureuser/.config/forge-fleet/webui-auth"
API_AUTH_FILE = "/home/azureuser/.config/forge-fleet/webui-api-auth"
SCENARIO_FILE = "/etc/forge-lab/webui-scenario"
LAUNCHER = "/usr/local/lib/forge-fleet/webui-launch.py"
FORGE_DIR = "/home/azureuser/stable-diffusion-webui-forge"
FILES = "Write the login files, the launcher and the systemd unit"  # one host_files run
PROBE = "Read the service as it is now"  # forge_webui: the service, and what FILES would change
RESTART_FOR = "Restart Forge for the files it reads when it starts"
SMOKE = "Make one tiny image as the class would"  # forge_smoke: the first image
# Forge lists it (the models stage does not run here); the stand-in only hashes its bytes
CHECKPOINT = f"{FORGE_DIR}/models/Stable-diffusion/lab-tiny.safetensors"

# One request from inside the VM: prints {"status", "headers", "body"} as JSON.
HTTP = r"""
import base64, json, sys, urllib.error, urllib.parse, urllib.request
method, path, form, basic = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = urllib.parse.urlencode(json.loads(form)).encode() if form else None
req = urllib.request.Request("http://127.0.0.1:7860" + path, data=data, method=method)
if basic:
    req.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
try:
    resp = urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as err:
    resp = err
except urllib.error.URLError as err:  # nothing listens (yet): status 0
    print(json.dumps({"status": 0, "headers": [], "body": str(err.reason)}))
    sys.exit(0)
out = {"status": resp.status, "headers": resp.headers.get_all("set-cookie") or [],
       "body": resp.read().decode()}
print(json.dumps(out))
"""


def ask(lab, host, path, *, method="GET", form=None, basic=""):
    raw = lab.exec(host, "python3", "-c", HTTP, method, path, json.dumps(form or ""), basic)
    return json.loads(raw)


def show(lab, host, prop):
    return lab.exec(host, "systemctl", "show", UNIT, "-p", prop, "--value").strip()


def main_pid(lab, host) -> int:
    return int(show(lab, host, "MainPID"))


def starts(lab, host) -> int:
    """How many times systemd started the unit so far (its 'Started ...' journal lines)."""
    journal = lab.exec(host, "journalctl", "--no-pager", "-u", UNIT, "-o", "cat")
    return len(re.findall(r"^Started forge-webui\.service", journal, re.M))


def webui(lab, **options):
    """playbooks/webui.yml with the module's settings; credentials kept in a test folder."""
    extravars = {
        **BASE,
        **SHARE_SERVER,
        "webui_credentials_dir": str(CREDENTIALS),
        **options.pop("extravars", {}),
    }
    return run_playbook("playbooks/webui.yml", lab.inventory, extravars=extravars, **options)


def credentials() -> dict[str, dict[str, str]]:
    """The access file the instructor hands out, by host."""
    with (CREDENTIALS / "webui-access.csv").open(encoding="utf-8") as handle:
        return {row["host"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def forge_stand_in(lab, tmp_path_factory):
    """The Forge stand-in repository (git daemon) and package index, served to the lab."""
    with forge_repo.serving(lab.lab.gateway, tmp_path_factory.mktemp("forge")) as served:
        settings = served.settings()
        SHARE_SERVER.update(
            {key: settings[key] for key in ("webui_share_server", "webui_share_check_via")}
        )
        RELAY.append(served.share_relay)
        yield settings
        RELAY.clear()


def _prepare_forge(lab, settings):
    """The stages site.yml runs before the webui that it needs: preflight, base, conda, forge."""
    result = run_playbook(
        "site.yml",
        lab.inventory,
        extravars={**settings, "preflight_report": False},
        tags="preflight,base,conda,forge",
    )
    assert result.ok, result.explain()


BASE = {"webui_api": True}
# the lab's share server (tests/doubles/share_relay.py): its settings, and the server itself
SHARE_SERVER: dict[str, str] = {}
RELAY: list = []
LINK = re.compile(r"https://[0-9a-f]{18}\.share\.lab\.invalid")
ASK_LINKS = "Ask every host's share link from the controller"
RENEW = "Renew the share link"
CREDENTIALS = REPO_ROOT / ".lab" / "test-webui-credentials"


@pytest.fixture(scope="module")
def converged(lab, forge_stand_in):
    shutil.rmtree(CREDENTIALS, ignore_errors=True)
    _prepare_forge(lab, forge_stand_in)
    for host in lab.hosts:
        lab.exec(host, "rm", "-f", SCENARIO_FILE)
        lab.exec(
            host, "runuser", "-u", "azureuser", "--",
            "sh", "-c", f"head -c 65536 /dev/urandom > {CHECKPOINT}",
        )  # fmt: skip
    result = webui(lab, verbosity=3)
    assert result.ok, result.explain()
    return result


@pytest.fixture(scope="module")
def rerun(lab, converged):
    pids = {host: main_pid(lab, host) for host in lab.hosts}
    result = webui(lab)
    assert result.ok, result.explain()
    return result, pids


def test_forge_runs_under_systemd_as_azureuser_enabled_at_boot(lab, converged):
    for host in lab.hosts:
        assert show(lab, host, "ActiveState") == "active"
        assert lab.exec(host, "systemctl", "is-enabled", UNIT).strip() == "enabled"
        assert lab.exec(host, "ps", "-o", "user=", "-p", str(main_pid(lab, host))).strip() == (
            "azureuser"
        )


def test_rerun_changes_nothing_and_keeps_the_main_pid(lab, rerun):
    result, pids = rerun
    for host in lab.hosts:
        assert result.stats[host]["changed"] == 0, result.changed_tasks(host)
        assert main_pid(lab, host) == pids[host]
        # nothing (re)started Forge and the probe saw it answer 401: no second health check,
        # and the probe's reading is what the report gets
        assert result.task("Wait until Forge answers behind its login", host).status == "skipped"
        probe = result.task(PROBE, host).res
        assert probe["http_status"] == 401
        # the probe compared the files and found them as declared: no host_files run at all
        assert probe["files_changes"] == {}
        assert result.task(FILES, host).status == "skipped"
        assert result.task(RESTART_FOR, host).status == "skipped"
        assert result.task(SMOKE, host).status == "skipped"  # no (re)start: no image
        health = result.task("Export the webui fact", host).res["ansible_facts"]["webui_service"]
        assert health["health"]["active_state"] == "active"
        assert health["health"]["share_url"] == probe["share_url"]
        assert LINK.fullmatch(health["health"]["share_url"])
        # the controller asked the link (one task for both hosts) and it answers
        assert health["share_link"]["state"] == "answers", health["share_link"]
        asked = result.task(ASK_LINKS, lab.hosts[0]).res["links"]  # run once, for the play
        assert asked[host]["url"] == probe["share_url"]
        assert result.task(RENEW, host).status == "skipped"
        assert 0 <= health["health"]["share_age_hours"] < 1


def test_the_first_start_made_a_first_image_on_each_host(lab, converged):
    for host in lab.hosts:
        smoke = converged.task(SMOKE, host)
        assert smoke.status == "ok" and not smoke.changed, smoke.res
        image = smoke.res
        assert (image["checkpoint"], image["model_used"]) == ("lab-tiny.safetensors", "lab-tiny")
        assert (image["width"], image["height"], image["steps"]) == (64, 64, 1)
        assert 0 <= image["generation_seconds"] < 10  # the stand-in answers in milliseconds
        # from the main process's start: Forge's start, the health check, then the image
        assert image["generation_seconds"] < image["first_image_seconds"] < 120
        assert image["image_bytes"] > 1000
        assert image["invocation_id"] == show(lab, host, "InvocationID")
        # nothing saved where Forge keeps images
        assert lab.exec(
            host, "sh", "-c", f"test -e {FORGE_DIR}/outputs && echo yes || echo no"
        ) == ("no\n")


def test_webui_smoke_always_makes_an_image_on_a_no_op_run(lab, rerun):
    host = lab.hosts[0]
    pid = main_pid(lab, host)
    result = webui(lab, extravars={"webui_smoke": "always"}, limit=host)
    assert result.ok, result.explain()
    assert result.stats[host]["changed"] == 0, result.changed_tasks(host)
    assert result.task(SMOKE, host).res["image_bytes"] > 1000
    assert main_pid(lab, host) == pid


def test_tags_smoke_runs_only_the_first_image(lab, rerun):
    host = lab.hosts[1]
    result = webui(lab, tags="smoke", limit=host)
    assert result.ok, result.explain()
    assert result.task(SMOKE, host).res["width"] == 64
    ran = {t.task.split(" : ")[-1] for t in result.for_host(host) if t.status != "skipped"}
    assert PROBE not in ran and "Wait until Forge answers behind its login" not in ran, ran
    assert result.stats[host]["changed"] == 0


def test_out_of_memory_fails_that_host_with_forges_line_and_leaves_the_other(lab, rerun):
    host, other = lab.hosts
    lab.exec(host, "sh", "-c", f"echo oom > {SCENARIO_FILE}")  # read at each txt2img
    try:
        result = webui(lab, extravars={"webui_smoke": "always"})
    finally:
        lab.exec(host, "rm", "-f", SCENARIO_FILE)
    assert not result.ok
    failure = result.task(SMOKE, host)
    assert failure.failed
    assert "answered 500: OutOfMemoryError: CUDA out of memory. Tried to allocate" in failure.msg
    assert "Forge's journal (forge-webui.service): torch.cuda.OutOfMemoryError: CUDA" in (
        failure.msg
    )
    assert [t.host for t in result.failures()] == [host]
    assert result.task(SMOKE, other).res["image_bytes"] > 1000
    assert result.stats[other]["changed"] == 0


def test_auth_file_is_0600_azureuser_with_the_handed_out_password(lab, converged):
    handed = credentials()
    for host in lab.hosts:
        owner_mode = lab.exec(host, "stat", "-c", "%U %G %a", AUTH_FILE).split()
        assert owner_mode == ["azureuser", "azureuser", "600"]
        assert lab.exec(host, "cat", AUTH_FILE) == f"student:{handed[host]['password']}\n"
        assert lab.exec(host, "stat", "-c", "%U %a", API_AUTH_FILE).split() == ["azureuser", "600"]


def test_the_access_file_on_the_controller_is_0600_with_each_hosts_share_url(lab, converged):
    path = CREDENTIALS / "webui-access.csv"  # webui_credentials_dir of this module's runs
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    handed = credentials()
    for host in lab.hosts:
        fact = converged.task("Export the webui fact", host).res["ansible_facts"]["webui_service"]
        assert LINK.fullmatch(fact["share_url"])
        assert handed[host]["share_url"] == fact["share_url"]
        assert handed[host]["user"] == "student"
        assert len(handed[host]["password"]) == 24
        # the line at the end of the play, and the URL gradio printed during this start
        report = converged.task("Report the share URL", host).res["msg"]
        assert f"share URL {fact['share_url']}" in report
        journal = lab.exec(host, "journalctl", "--no-pager", "-u", UNIT, "-o", "cat")
        assert f"Running on public URL: {fact['share_url']}" in journal
    assert len({handed[h]["password"] for h in lab.hosts}) == 2  # one password per host


def test_right_password_logs_in_and_a_wrong_one_is_refused(lab, converged):
    handed = credentials()
    host = lab.hosts[0]
    ok = ask(
        lab,
        host,
        "/login",
        method="POST",
        form={"username": "student", "password": handed[host]["password"]},
    )
    assert (ok["status"], json.loads(ok["body"])) == (200, {"success": True})
    assert any(c.startswith("access-token-") for c in ok["headers"])
    wrong = ask(
        lab, host, "/login", method="POST", form={"username": "student", "password": "guess"}
    )
    assert (wrong["status"], json.loads(wrong["body"])) == (
        400,
        {"detail": "Incorrect credentials."},
    )
    other = handed[lab.hosts[1]]["password"]
    assert (
        ask(lab, host, "/login", method="POST", form={"username": "student", "password": other})[
            "status"
        ]
        == 400
    )


def test_ui_and_api_refuse_anonymous_requests(lab, converged):
    handed = credentials()
    host = lab.hosts[0]
    for path in ("/config", "/login_check"):
        answer = ask(lab, host, path)
        assert (answer["status"], json.loads(answer["body"])) == (
            401,
            {"detail": "Not authenticated"},
        )
    assert ask(lab, host, "/sdapi/v1/sd-models")["status"] == 401
    assert ask(lab, host, "/sdapi/v1/sd-models", basic="api:wrong")["status"] == 401
    right = f"api:{handed[host]['api_password']}"
    assert ask(lab, host, "/sdapi/v1/sd-models", basic=right)["status"] == 200


# What Forge serves without its login at the pinned commit (roles/webui/README.md, "What
# anyone with the link can read"): method, path. The real-Forge tier asks the same.
OPEN_ROUTES = [
    ("GET", "/"),
    ("GET", "/login_check"),
    ("GET", "/user"),
    ("GET", "/token"),
    ("GET", "/app_id"),
    ("GET", "/theme.css"),
    ("GET", "/robots.txt"),
    ("GET", "/favicon.ico"),
    ("GET", "/startup-events"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
    ("GET", "/internal/ping"),
    ("GET", "/internal/sysinfo"),
    ("GET", "/internal/sysinfo-download"),
    ("GET", "/internal/profile-startup"),
    ("GET", "/internal/quicksettings-hint"),
    ("GET", "/internal/pending-tasks"),
    ("POST", "/internal/progress"),
    ("GET", "/sdapi/v1/loras"),
    ("GET", "/controlnet/model_list"),
    ("GET", "/controlnet/module_list"),
]


def test_routes_open_without_the_login_show_no_password(lab, converged):
    host = lab.hosts[0]
    handed = credentials()[host]
    secrets = {handed["password"], handed["api_password"]}
    assert all(len(secret) >= 8 for secret in secrets)
    for method, path in OPEN_ROUTES:
        form = {"id_task": "task(none)"} if method == "POST" else None
        answer = ask(lab, host, path, method=method, form=form)
        # /login_check is open by design: it answers whether the caller is logged in
        assert answer["status"] == (401 if path == "/login_check" else 200), (path, answer)
        assert not any(secret in json.dumps(answer) for secret in secrets), path
    assert json.loads(ask(lab, host, "/internal/ping")["body"]) == {}
    assert "/openapi.json" in ask(lab, host, "/docs")["body"]
    assert "/internal/sysinfo" in json.loads(ask(lab, host, "/openapi.json")["body"])["paths"]


@pytest.mark.parametrize("column", ["password", "api_password"])
def test_no_password_in_ps_journal_sysinfo_or_vvv_output(lab, converged, column):
    handed = credentials()
    assert "the output has been hidden due to the fact that" in converged.stdout
    for host in lab.hosts:
        secret = handed[host][column]
        assert secret not in converged.stdout
        assert secret not in lab.exec(host, "ps", "-eo", "args")
        assert secret not in lab.exec(host, "cat", f"/proc/{main_pid(lab, host)}/cmdline")
        assert secret not in lab.exec(host, "journalctl", "--no-pager", "-o", "cat")
        assert secret not in lab.exec(host, "systemctl", "cat", UNIT)
        sysinfo = ask(lab, host, "/internal/sysinfo")
        assert sysinfo["status"] == 200  # no login needed, as in Forge
        assert secret not in sysinfo["body"]
    info = json.loads(ask(lab, lab.hosts[0], "/internal/sysinfo")["body"])
    # Forge's options got the API credentials in-process (the API answers them, above);
    # its arguments, which Forge prints into the journal at start, never held them
    assert "--api-auth" not in info["Commandline"]
    assert "COMMANDLINE_ARGS" not in info["Environment"]
    journal = lab.exec(lab.hosts[0], "journalctl", "--no-pager", "-u", UNIT, "-o", "cat")
    launched = re.findall(r"^Launching Web UI with arguments: .*$", journal, re.M)
    assert launched and all("--api-auth" not in line for line in launched)


def test_systemd_reads_forges_environment_file_as_the_preparation_does(lab, converged):
    # one file, two readers: the forge_prepare module (env_file.parse) and the unit's
    # EnvironmentFile=; values with spaces, quotes, backslashes and $ mean the same to both
    variables = {
        "TORCH_COMMAND": 'pip install torch==2.3.1 --extra-index-url "https://x/whl" $HOME \\d',
        "venv_dir": "-",
        "EMPTY": "",
    }
    text = env_file.render(variables, "a header\nof two lines")
    assert env_file.parse(text) == variables
    host = lab.hosts[0]
    podman.exec_in(host, "sh", "-c", "cat > /run/forge-env-test", input_text=text)
    shown = lab.exec(
        host,
        "systemd-run", "--pipe", "--quiet", "--wait",
        "--property=EnvironmentFile=/run/forge-env-test", "env",
    )  # fmt: skip
    for name, value in variables.items():
        assert f"{name}={value}" in shown.splitlines()


def test_an_argument_change_restarts_forge_exactly_once(lab, rerun):
    host, other = lab.hosts
    before, other_pid = starts(lab, host), main_pid(lab, other)
    result = webui(lab, extravars={"webui_extra_args": ["--xformers"]}, limit=host)
    assert result.ok, result.explain()
    assert starts(lab, host) == before + 1
    assert "--xformers" in lab.exec(host, "cat", f"/proc/{main_pid(lab, host)}/cmdline")
    assert main_pid(lab, other) == other_pid
    back = webui(lab, limit=host)  # back to the module's settings
    assert back.ok, back.explain()
    assert starts(lab, host) == before + 2


def test_a_share_link_older_than_the_limit_is_renewed_by_a_restart(lab, rerun):
    host = lab.hosts[0]
    before = starts(lab, host)
    old_link = credentials()[host]["share_url"]
    time.sleep(2)  # older than 0.0005 h = 1.8 s
    result = webui(lab, extravars={"webui_share_max_age_hours": 0.0005}, limit=host)
    assert result.ok, result.explain()
    renewed = result.task(RENEW, host)
    assert renewed.changed
    assert "hours old (webui_share_max_age_hours: 0.0005; links expire at 72)" in renewed.res["msg"]
    assert starts(lab, host) == before + 1
    new_link = result.task("Export the webui fact", host).res["ansible_facts"]["webui_service"]
    assert new_link["share_url"] != old_link
    assert credentials()[host]["share_url"] == new_link["share_url"]
    # the new link was asked too, once it was printed
    assert (
        result.task("Ask the new share links from the controller", host).res["links"][host]["state"]
        == "answers"
    )
    assert new_link["share_link"]["state"] == "answers"


def test_a_dropped_link_is_reported_by_check_and_renewed_alone_by_a_real_run(lab, rerun):
    host, other = lab.hosts
    handed = credentials()
    pid, other_pid, before = main_pid(lab, host), main_pid(lab, other), starts(lab, host)
    assert RELAY[0].drop(handed[host]["share_url"])
    dry = webui(lab, check=True)
    assert dry.ok, dry.explain()
    planned = dry.task(RENEW, host)
    assert planned.changed
    assert (
        f"the share link {handed[host]['share_url']} does not answer from the controller"
        in (planned.res["msg"])
    )
    assert "GET / answered 404" in planned.res["msg"]
    assert dry.stats[other]["changed"] == 0, dry.changed_tasks(other)
    assert main_pid(lab, host) == pid  # --check restarted nothing
    real = webui(lab)
    assert real.ok, real.explain()
    assert real.task(RENEW, host).changed
    assert real.changed_tasks(other) == []
    assert starts(lab, host) == before + 1 and main_pid(lab, host) != pid
    assert main_pid(lab, other) == other_pid
    now = credentials()
    assert now[host]["share_url"] != handed[host]["share_url"]
    assert LINK.fullmatch(now[host]["share_url"])
    assert now[other]["share_url"] == handed[other]["share_url"]
    fact = real.task("Export the webui fact", host).res["ansible_facts"]["webui_service"]
    assert fact["share_link"]["state"] == "answers"
    assert sorted(RELAY[0].links()) == sorted(now[h]["share_url"] for h in lab.hosts)


def test_reload_ui_gives_a_new_link_in_the_same_process_and_the_run_hands_it_out(lab, rerun):
    host = lab.hosts[0]
    pid, before, old_link = main_pid(lab, host), starts(lab, host), credentials()[host]["share_url"]
    forge = lab.exec(host, "pgrep", "-P", str(pid)).split()[0]
    lab.exec(host, "kill", "-USR1", forge)  # the stand-in's "Reload UI"
    deadline = time.monotonic() + 15
    while len(RELAY[0].links()) < 2 or old_link in RELAY[0].links():
        assert time.monotonic() < deadline, RELAY[0].links()
        time.sleep(0.5)
    result = webui(lab, limit=host)
    assert result.ok, result.explain()
    probe = result.task(PROBE, host).res
    assert probe["share_url"] != old_link and probe["share_url"] in RELAY[0].links()
    assert probe["share_age_hours"] < 0.01  # the new link's age, not the process's
    assert result.task(RENEW, host).status == "skipped"
    assert main_pid(lab, host) == pid and starts(lab, host) == before
    assert lab.exec(host, "pgrep", "-P", str(pid)).split()[0] == forge
    assert credentials()[host]["share_url"] == probe["share_url"]


def test_a_new_forge_fingerprint_restarts_forge_once(lab, rerun):
    host = lab.hosts[1]
    lab.exec(
        host,
        "python3",
        "-c",
        "import json; p = '/var/lib/forge-fleet/forge.json'; d = json.load(open(p)); "
        "d['fingerprint'] = 'new-checkout-by-test'; json.dump(d, open(p, 'w'))",
    )
    before = starts(lab, host)
    result = webui(lab, limit=host)
    assert result.ok, result.explain()
    assert starts(lab, host) == before + 1
    assert "new-checkout-by-test" in lab.exec(host, "systemctl", "cat", UNIT)


def test_loosened_login_file_modes_are_put_back_without_a_restart(lab, rerun):
    host = lab.hosts[0]
    lab.exec(host, "chmod", "0644", AUTH_FILE, API_AUTH_FILE)
    lab.exec(host, "chown", "root", AUTH_FILE)
    before, pid = starts(lab, host), main_pid(lab, host)
    dry = webui(lab, check=True, diff=True, limit=host)
    assert dry.ok, dry.explain()
    loosened = {AUTH_FILE: ["mode", "owner"], API_AUTH_FILE: ["mode"]}
    assert dry.task(PROBE, host).res["files_changes"] == loosened
    assert dry.changed_tasks(host) == [FILES]
    assert dry.task(FILES, host).res["changes"] == loosened
    assert lab.exec(host, "stat", "-c", "%U %a", AUTH_FILE).split() == ["root", "644"]
    result = webui(lab, limit=host)
    assert result.ok, result.explain()
    # Forge reads both files only when it starts, and their content did not change
    assert result.task(PROBE, host).res["files_changes"] == loosened
    assert result.changed_tasks(host) == [FILES]
    assert result.task(FILES, host).res["changes"] == loosened
    assert result.task(RESTART_FOR, host).status == "skipped"
    for path in (AUTH_FILE, API_AUTH_FILE):
        assert lab.exec(host, "stat", "-c", "%U %a", path).split() == ["azureuser", "600"]
    assert (starts(lab, host), main_pid(lab, host)) == (before, pid)


def test_an_edited_unit_file_is_rewritten_and_restarts_forge_once(lab, rerun):
    host = lab.hosts[1]
    unit = f"/etc/systemd/system/{UNIT}"
    lab.exec(host, "sed", "-i", "s/^Restart=always/Restart=no/", unit)
    before = starts(lab, host)
    dry = webui(lab, check=True, limit=host)
    assert dry.ok, dry.explain()
    assert dry.task(PROBE, host).res["files_changes"] == {unit: ["content"]}
    assert dry.task(FILES, host).res["changes"] == {unit: ["content"]}
    assert dry.task(RESTART_FOR, host).changed
    assert "Restart=no" in lab.exec(host, "cat", unit)
    result = webui(lab, limit=host)
    assert result.ok, result.explain()
    assert result.task(FILES, host).res["changes"] == {unit: ["content"]}
    assert unit in result.task(RESTART_FOR, host).res["msg"]
    assert "Restart=always" in lab.exec(host, "cat", unit)
    assert "Restart=no" not in lab.exec(host, "systemctl", "cat", UNIT)  # daemon-reloaded
    assert starts(lab, host) == before + 1
    assert ask(lab, host, "/login_check")["status"] == 401


def test_systemd_brings_forge_back_after_kill_9(lab, rerun):
    host = lab.hosts[0]
    pid = main_pid(lab, host)
    lab.exec(host, "kill", "-9", str(pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = main_pid(lab, host)
        if now not in (0, pid) and ask(lab, host, "/login_check")["status"] == 401:
            break
        time.sleep(1)
    else:
        pytest.fail(f"forge-webui did not come back after kill -9 (MainPID {main_pid(lab, host)})")
    assert show(lab, host, "ActiveState") == "active"


def test_share_link_unavailable_is_reported_with_gradios_reason_and_slow_start_waits(lab, rerun):
    host = lab.hosts[1]
    lab.exec(host, "sh", "-c", f"printf 'slow 10\\nshare-missing-binary\\n' > {SCENARIO_FILE}")
    try:
        began = time.monotonic()
        result = webui(lab, extravars={"webui_state": "restarted"}, limit=host)
        took = time.monotonic() - began
    finally:
        lab.exec(host, "rm", "-f", SCENARIO_FILE)
    assert result.ok, result.explain()
    assert took >= 10
    # the health check itself waited (the restart before it took part of the 10 s)
    assert result.task("Wait until Forge answers behind its login", host).res["ready_after"] >= 5
    report = result.task("Report the share URL", host).res["msg"]
    assert "share link unavailable: Could not create share link. Missing file:" in report
    assert credentials()[host]["share_url"].startswith("unavailable: Could not create share link")


def test_a_crash_at_start_fails_with_the_journal_tail_and_leaves_systemd_in_charge(lab, rerun):
    host = lab.hosts[1]
    lab.exec(host, "sh", "-c", f"echo crash > {SCENARIO_FILE}")
    try:
        result = webui(lab, extravars={"webui_state": "restarted"}, limit=host)
        state = show(lab, host, "ActiveState") + "/" + show(lab, host, "SubState")
    finally:
        lab.exec(host, "rm", "-f", SCENARIO_FILE)
    assert not result.ok
    failure = result.task("Wait until Forge answers behind its login", host)
    assert failure.failed
    assert "Forge stopped while starting" in failure.msg
    assert "Torch is not able to use GPU" in failure.msg  # the journal tail
    assert state in ("activating/auto-restart", "failed/failed", "activating/start")
    # the next run repairs it
    again = webui(lab, limit=host)
    assert again.ok, again.explain()
    assert show(lab, host, "ActiveState") == "active"


def test_a_killed_forge_comes_back_by_itself_within_30_s(lab, rerun):
    # webui.sh runs Forge's python in its relaunch loop and exits 0 when it dies: systemd
    # must start the unit again although it "succeeded" (Restart=always), no playbook run
    host = lab.hosts[0]
    shell = main_pid(lab, host)
    forge = lab.exec(host, "pgrep", "-P", str(shell)).split()[0]
    lab.exec(host, "kill", "-9", forge)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (
            main_pid(lab, host) not in (0, shell)
            and ask(lab, host, "/login_check")["status"] == 401
        ):
            break
        time.sleep(1)
    assert main_pid(lab, host) not in (0, shell), show(lab, host, "ActiveState")
    assert ask(lab, host, "/login_check")["status"] == 401


def test_forges_own_restart_runs_it_again_inside_the_same_unit(lab, rerun):
    # Forge's restart ("Reload UI", the restart route) leaves tmp/restart and exits: webui.sh's
    # loop runs launch.py again, the unit's main process (webui.sh) stays
    host = lab.hosts[0]
    shell = main_pid(lab, host)
    forge = lab.exec(host, "pgrep", "-P", str(shell)).split()[0]
    restart = f"{FORGE_DIR}/tmp/restart"
    lab.exec(
        host,
        "runuser",
        "-u",
        "azureuser",
        "--",
        "sh",
        "-c",
        f"mkdir -p {FORGE_DIR}/tmp && touch {restart}",
    )
    try:
        lab.exec(host, "kill", "-9", forge)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = lab.exec(host, "pgrep", "-P", str(shell), check=False).split()
            if (
                children
                and children[0] != forge
                and ask(lab, host, "/login_check")["status"] == 401
            ):
                break
            time.sleep(1)
    finally:
        lab.exec(host, "rm", "-f", restart)
    assert main_pid(lab, host) == shell
    assert lab.exec(host, "pgrep", "-P", str(shell)).split()[0] != forge
    assert ask(lab, host, "/login_check")["status"] == 401


def test_webui_state_stops_and_starts_the_whole_fleet(lab, rerun):
    stopped = webui(lab, extravars={"webui_state": "stopped"})
    assert stopped.ok, stopped.explain()
    for host in lab.hosts:
        assert show(lab, host, "ActiveState") == "inactive"
        assert lab.exec(host, "systemctl", "is-enabled", UNIT, check=False).strip() == "disabled"
        assert "Forge stopped" in stopped.task("Report the share URL", host).res["msg"]
    started = webui(lab)
    assert started.ok, started.explain()
    for host in lab.hosts:
        assert show(lab, host, "ActiveState") == "active"
        assert ask(lab, host, "/login_check")["status"] == 401


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"webui_auth": False}, "webui_share or webui_listen is on but webui_auth is off"),
        ({"webui_extra_args": ["--no-such-flag", "--xformers"]}, "--no-such-flag"),
        ({"webui_extra_args": ["--api-auth", "u:p"]}, "--api-auth is set through"),
        ({"webui_extra_args": ["--hide-ui-dir-config"]}, "is set through webui_hide_ui_dir_config"),
        # Forge splits --api-auth at every ':' and fails to start
        ({"webui_api_auth_password": "pass:word"}, "the API password must be non-empty without"),
        (
            {
                "webui_extra_args": [
                    "--xformers",
                    "--allow-code",
                    "--enable-insecure-extension-access",
                ]
            },
            "--allow-code, --enable-insecure-extension-access with webui_share on",
        ),
        (
            {"webui_frpc_url": "https://mirror.example/frpc_linux_amd64"},
            "webui_frpc_url and webui_frpc_sha256 go together",
        ),
    ],
    ids=[
        "share-without-login",
        "unknown-flag",
        "password-flag",
        "managed-hide-ui-dir-config",
        "colon-in-api-password",
        "code-execution-with-share",
        "frpc-url-without-sha256",
    ],
)
def test_bad_settings_are_refused_before_any_change(lab, rerun, options, message):
    host = lab.hosts[0]
    unit_before = lab.exec(host, "systemctl", "cat", UNIT)
    pid = main_pid(lab, host)
    result = webui(lab, extravars={**options}, limit=host)
    assert not result.ok
    assert message in result.failures()[0].msg
    assert result.stats[host]["changed"] == 0
    assert lab.exec(host, "systemctl", "cat", UNIT) == unit_before
    assert main_pid(lab, host) == pid


def test_code_execution_flags_with_share_are_allowed_only_on_request_with_a_warning(lab, rerun):
    host = lab.hosts[0]
    result = webui(
        lab,
        check=True,
        limit=host,
        extravars={
            "webui_allow_insecure_with_share": True,
            "webui_extra_args": ["--allow-code"],
        },
    )
    assert result.ok, result.explain()
    warnings = result.task("Record the risks the settings accept", host).res["ansible_facts"]
    assert warnings["webui_warnings"] == [
        "--allow-code with webui_share: a logged-in user can run code on this VM as azureuser"
        " (webui_allow_insecure_with_share is true)"
    ]
    shown = result.task("Warn about the risks the settings accept", host).res["results"]
    assert [item["msg"] for item in shown] == [f"WARNING {host}: " + warnings["webui_warnings"][0]]
    # without the flag, the fact is there and empty (the report reads it on every host)
    plain = webui(lab, check=True, limit=host)
    facts = plain.task("Record the risks the settings accept", host).res["ansible_facts"]
    assert facts["webui_warnings"] == []


def test_forge_runs_with_the_saving_paths_hidden_when_shared(lab, converged):
    for host in lab.hosts:
        assert "--hide-ui-dir-config" in show(lab, host, "ExecStart")


@pytest.fixture(scope="module")
def frpc_site(lab, tmp_path_factory):
    """A download site on the lab network holding a file in place of gradio's frpc binary."""
    files = tmp_path_factory.mktemp("frpc")
    cert, key = issue_server_cert([lab.lab.gateway], files / "tls")
    binary = files / "site" / "frpc_linux_amd64"
    binary.parent.mkdir()
    binary.write_bytes(b"#!/bin/sh\n# lab stand-in for gradio's frpc 0.2\n")
    with DownloadSite(lab.lab.gateway, files / "site", (str(cert), str(key))) as site:
        site.frpc = {
            "webui_frpc_url": f"{site.url}/{binary.name}",
            "webui_frpc_sha256": hashlib.sha256(binary.read_bytes()).hexdigest(),
        }
        yield site


def gradio_dir(lab, host) -> str:
    """gradio's package folder in the env the forge stage prepared (its record names the python)."""
    record = json.loads(lab.exec(host, "cat", "/var/lib/forge-fleet/forge.json"))
    return (
        lab.exec(
            host,
            record["python"],
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ).strip()
        + "/gradio"
    )


def test_a_blocked_cdn_is_bypassed_by_webui_frpc_url_checked_by_sha256(lab, rerun, frpc_site):
    host = lab.hosts[1]
    binary = gradio_dir(lab, host) + "/frpc_linux_amd64_v0.2"
    lab.exec(host, "rm", "-f", binary)
    lab.exec(host, "sh", "-c", f"echo frpc-cdn-blocked > {SCENARIO_FILE}")
    try:
        # a wrong sha256: refused, nothing under the binary's name, Forge left running
        pid = main_pid(lab, host)
        wrong = webui(lab, extravars={**frpc_site.frpc, "webui_frpc_sha256": "0" * 64}, limit=host)
        assert not wrong.ok
        failure = wrong.task("Say why the tunnel binary could not be placed", host)
        assert f"gradio's tunnel binary was not placed at {binary}" in failure.msg
        assert "checksum" in failure.msg
        assert lab.exec(host, "sh", "-c", f"ls {binary} 2>/dev/null || true") == ""
        assert main_pid(lab, host) == pid
        # --check says it would place it, and places nothing
        dry = webui(lab, check=True, extravars=frpc_site.frpc, limit=host)
        assert dry.ok, dry.explain()
        assert dry.task("Download gradio's tunnel binary and check its sha256", host).changed
        assert lab.exec(host, "sh", "-c", f"ls {binary} 2>/dev/null || true") == ""
        # the right one: placed executable, Forge restarted once, gradio shares
        placed = webui(lab, extravars=frpc_site.frpc, limit=host)
        assert placed.ok, placed.explain()
        assert lab.exec(host, "stat", "-c", "%U %a", binary).strip() == "azureuser 755"
        assert main_pid(lab, host) != pid
        report = placed.task("Report the share URL", host).res["msg"]
        assert "share URL https://" in report, report
        # a re-run downloads nothing and keeps Forge
        pid = main_pid(lab, host)
        again = webui(lab, extravars=frpc_site.frpc, limit=host)
        assert again.ok, again.explain()
        assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
        assert main_pid(lab, host) == pid
    finally:
        lab.exec(host, "rm", "-f", SCENARIO_FILE, binary)


def test_check_mode_on_a_converged_host_reports_no_change(lab, rerun):
    result = webui(lab, check=True)
    assert result.ok, result.explain()
    for host in lab.hosts:
        assert result.stats[host]["changed"] == 0, result.changed_tasks(host)
        assert result.task(FILES, host).status == "skipped"


def test_check_mode_on_a_fresh_host_changes_nothing_and_a_real_run_needs_forge(make_lab):
    fresh = make_lab(count=1)
    host = fresh.hosts[0]
    result = run_playbook(
        "playbooks/webui.yml",
        fresh.inventory,
        check=True,
        extravars={"webui_credentials_dir": str(CREDENTIALS)},
    )
    assert result.ok, result.explain()
    planned = result.task(FILES, host).res["changes"]
    for path in (f"/etc/systemd/system/{UNIT}", AUTH_FILE, LAUNCHER):
        assert planned[path] == ["created"], planned
    assert result.task("Say that the service would be created and started", host).changed
    assert result.stats[host]["changed"] >= 3  # the files, the restart for them, the service
    assert fresh.exec(host, "test", "-e", f"/etc/systemd/system/{UNIT}", check=False) == ""
    assert "not-found" in fresh.exec(host, "systemctl", "show", UNIT, "-p", "LoadState")
    assert (
        fresh.exec(host, "sh", "-c", f"test -e {AUTH_FILE} && echo yes || echo no").strip() == "no"
    )
    # A real run there, without the forge stage before it, stops at its record, naming it.
    real = run_playbook(
        "playbooks/webui.yml",
        fresh.inventory,
        extravars={"webui_credentials_dir": str(CREDENTIALS)},
    )
    assert not real.ok
    refused = real.task("Check that Forge is prepared", host)
    assert refused.failed
    assert "forge.json is missing, so Forge is not prepared on this host" in refused.msg
    assert "not-found" in fresh.exec(host, "systemctl", "show", UNIT, "-p", "LoadState")
    assert fresh.exec(host, "sh", "-c", f"test -e {AUTH_FILE} && echo yes || echo no") == "no\n"


def test_generated_passwords_stay_on_the_controller_in_0700_and_0600(lab, converged):
    assert stat.S_IMODE(CREDENTIALS.stat().st_mode) == 0o700
    for host in lab.hosts:
        stored = CREDENTIALS / host / "webui-password"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert stored.read_text().strip() == credentials()[host]["password"]


def test_the_default_credentials_folder_is_git_ignored():
    assert "/credentials/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
