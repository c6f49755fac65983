"""The fleet report (roles/report): site.yml once on two lab VMs with the stand-ins, then
playbooks/report.yml alone with one webui stopped and one host that cannot be reached.

The same site.yml run is the security audit: it runs at -vvv while a second, unprivileged
user on each VM samples the process list, and afterwards no secret (HF token, CivitAI key,
a catalog header value, the webui and API passwords, the SAS signature) may be in the
output, in those samples, in a file other users can read, in the reports or in the journal.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets as secrets_module
import shutil
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from lab import podman, stand_ins
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORGE = "/home/azureuser/stable-diffusion-webui-forge"
SYNC_RESULT = "/home/azureuser/.forge-sync/last-run.json"


MIRROR_FILE = "mirror-copy.safetensors"

# After site.yml, a sync as cron starts it (against the stand-ins' Azurite), while nobody
# lists the processes every 50 ms: AzCopy runs for a second or so, too short for the 1 s
# sampling during site.yml to be sure to see it.
SYNC_WATCHED = r"""
samples=$(mktemp)
rm -f /tmp/sync-done
su nobody -s /bin/sh -c 'i=0; while [ ! -e /tmp/sync-done ] && [ $i -lt 1200 ]; do
  ps -eo user,args; echo "#"; i=$((i+1)); sleep 0.05; done' > "$samples" &
su azureuser -s /bin/sh -c "mkdir -p $OUTPUTS && date > $OUTPUTS/audit.txt &&
  /usr/local/bin/forge-sync-outputs $CONFIG" > /dev/null 2>&1
touch /tmp/sync-done
wait
cat "$samples"
rm -f "$samples" /tmp/sync-done
""".replace("$CONFIG", "/home/azureuser/.forge-sync/config.json")
SYNC_WATCHED = SYNC_WATCHED.replace("$OUTPUTS", f"{FORGE}/outputs")


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["host"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


def named_secrets(settings, header, access, signature) -> dict[str, str]:
    """Every secret of the run by a name that can be printed: the assertion messages say
    which secret leaked where, never the secret itself."""
    named = {
        "HF token": settings["models_huggingface_token"],
        "CivitAI key": settings["models_civitai_api_key"],
        "catalog header value": header,
        "SAS signature": signature,
        "SAS signature (decoded)": urllib.parse.unquote(signature),
    }
    for row in access:
        named[f"webui password of {row['host']}"] = row["password"]
        if row.get("api_password"):
            named[f"API password of {row['host']}"] = row["api_password"]
    return named


def found_in(text: str, named: dict[str, str]) -> list[str]:
    return sorted({name for name, secret in named.items() if secret in text})


class ProcessSampler(threading.Thread):
    """`ps -eo user,args` as the unprivileged user nobody on each VM, every second, while
    the run goes on: what another user of the VM can see in its process list."""

    def __init__(self, lab) -> None:
        super().__init__(daemon=True)
        self.lab, self.samples, self.done = lab, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for host in self.lab.hosts:
                seen = self.lab.exec(
                    host, "su", "nobody", "-s", "/bin/sh", "-c", "ps -eo user,args", check=False
                )
                self.samples.append((host, seen))
            self.done.wait(1)

    def stop(self) -> list[tuple[str, str]]:
        self.done.set()
        self.join(timeout=60)
        return self.samples


@pytest.fixture(scope="module")
def run(lab, tmp_path_factory):
    """site.yml once; the report, the settings and the secrets it must never show."""
    folder = tmp_path_factory.mktemp("report")
    reports, credentials = folder / "reports", folder / "credentials"
    with stand_ins.running(lab.lab.gateway, folder / "stand-ins.yml") as settings_file:
        settings = yaml.safe_load(settings_file.read_text())
        # a private mirror (the Hugging Face stand-in's file under another name) whose header
        # value is a secret, like a mirror's token
        header = f"mirror-{secrets_module.token_hex(12)}"
        mirror = {
            "source": "url",
            "url": f"{settings['models_huggingface_endpoint']}/forge-lab/tiny-sd15"
            "/resolve/main/tiny-sd15.safetensors",
            "headers": {"X-Mirror-Key": header},
            "kind": "checkpoint",
            "base_model": "sd1",
            "filename": MIRROR_FILE,
        }
        extravars = {
            **settings,
            "models_catalog": [*settings["models_catalog"], mirror],
            "report_dir": str(reports),
            "webui_credentials_dir": str(credentials),
        }
        envvars = {"FORGE_RUN_RECORD": str(reports / ".run-record.json")}
        sampler = ProcessSampler(lab)
        sampler.start()
        started = time.monotonic()
        try:  # -vvv: the level where a leaked secret would show
            result = run_playbook(
                "site.yml", lab.inventory, extravars=extravars, envvars=envvars, verbosity=3
            )
        finally:
            samples = sampler.stop()
        seconds = time.monotonic() - started
        assert result.ok, result.explain()
        sync_records = {h: lab.exec(h, "cat", SYNC_RESULT, check=False) for h in lab.hosts}
        during_sync = podman.exec_in(lab.hosts[0], "sh", "-c", SYNC_WATCHED).split("#\n")
    access = list(csv.DictReader((credentials / "webui-access.csv").open()))
    secrets = [settings["models_huggingface_token"], settings["models_civitai_api_key"], header]
    secrets += [row[key] for row in access for key in ("password", "api_password") if row.get(key)]
    signature = re.search(r"[?&]sig=([^&]+)", settings["sync_sas_url"]).group(1)
    return {
        "samples": samples,
        "during_sync": during_sync,
        "sync_records": sync_records,
        "seconds": seconds,
        "access": access,
        "credentials": credentials,
        "signature": signature,
        "result": result,
        "reports": reports,
        "extravars": extravars,
        "envvars": envvars,
        "secrets": secrets,
        "named": named_secrets(settings, header, access, signature),
        "folder": folder,
    }


def test_site_writes_the_report_with_each_vms_own_values(lab, run):
    rows = read_csv(run["reports"] / "fleet-report.csv")
    assert sorted(rows) == sorted(lab.hosts)
    for host in lab.hosts:
        row = rows[host]
        gpu = lab.exec(
            host, "nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"
        )
        name, driver = (part.strip() for part in gpu.split(","))
        commit = lab.exec(host, "git", "-c", "safe.directory=*", "-C", FORGE, "rev-parse", "HEAD")
        models = lab.exec(host, "sh", "-c", f"cd {FORGE}/models && ls Stable-diffusion Lora")
        share = run["result"].task("Export the webui fact", host).res["ansible_facts"]
        assert (row["gpu"], row["driver"], row["forge_commit"]) == (name, driver, commit.strip())
        for model in ("tiny-sd15.safetensors", "detail-tweaker.safetensors"):
            assert model in models
            assert f"{model}:sd1:ok" in row["models"]
        assert row["share_url"] == share["webui_service"]["share_url"]
        assert row["share_url"].endswith(".share.lab.invalid")  # the lab's share server
        assert row["share_state"] == "answers"  # asked from the controller through it
        assert row["share_expires_at"].endswith("Z")
        # the first image after the start: its times per host
        assert 0 <= float(row["generation_seconds"]) <= float(row["first_image_seconds"])
        assert row["service_state"] == "active/running"
        assert row["user"] == "student"
        last_sync = run["sync_records"][host]  # the sync record as site.yml left it
        sync_status = json.loads(last_sync)["status"] if last_sync.startswith("{") else "never run"
        assert row["sync_status"] == sync_status
        assert row["status"] == "ok", row["problems"]
        # what this run changed: the recap's own count for the host
        assert int(row["changed"]) == run["result"].stats[host]["changed"] > 0
        checkout = "forge : Check out Forge and the extensions at the pinned commits"
        assert checkout in row["changed_tasks"]
    stamped = sorted(p.name for p in run["reports"].glob("fleet-report-*Z.*"))
    assert [Path(p).suffix for p in stamped] == [".csv", ".html"]
    assert (run["reports"] / "fleet-report.html").stat().st_mode & 0o777 == 0o644


REPORT_COMPAT = "Check the models present and whether they fit together, and where each came from"
REPORT_READS = "Read what the earlier stages did not leave as facts"  # tasks/read.yml


def test_site_reads_the_models_once_for_the_models_stage_and_the_report(lab, run):
    result = run["result"]
    for host in lab.hosts:
        # the models stage's check read every file present and the manifest (models_tree), and
        # every other stage left its fact: the report's reads are one include, skipped
        assert result.task(REPORT_READS, host).status == "skipped"
        assert not [t for t in result.for_host(host) if t.task.endswith(REPORT_COMPAT)]
        assert result.task("Check that the models fit together", host).status == "ok"
    rows = read_csv(run["reports"] / "fleet-report.csv")
    for host in lab.hosts:
        assert f"{MIRROR_FILE}:sd1:ok" in rows[host]["models"]


def test_the_run_ends_with_one_line_per_host_and_the_reports_path(lab, run):
    stdout = run["result"].stdout
    for host in lab.hosts:
        assert re.search(rf"{host}: OK, GPU ok; https://\S+\.share\.lab\.invalid; models: ", stdout)
    assert f"Fleet report: {run['reports']}/fleet-report.html" in stdout
    assert "2 of 2 hosts OK" in stdout


def test_the_html_is_self_contained_and_holds_no_secret(lab, run):
    html = (run["reports"] / "fleet-report.html").read_text()
    for host in lab.hosts:
        assert host in html
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", html)
    files = [*run["reports"].glob("fleet-report*"), run["reports"] / ".run-record.json"]
    assert len(run["secrets"]) >= 4  # HF token, CivitAI key, a webui password per host
    for path in files:
        text = path.read_text()
        for secret in run["secrets"]:
            assert secret not in text, f"a secret is in {path.name}"
        assert "sig=" not in text
    if "sync_sas_url" in run["extravars"]:  # the lab's Azurite SAS, once the sync stage is in
        signature = re.search(r"sig=([^&]+)", run["extravars"]["sync_sas_url"]).group(1)
        for path in files:
            assert signature not in path.read_text()


ACCEPTED = "--allow-code with webui_share: a logged-in user can run code on this VM as azureuser"


def test_report_alone_flags_a_stopped_webui_and_an_unreachable_host(lab, run):
    stopped = lab.hosts[1]
    lab.exec(stopped, "systemctl", "stop", "forge-webui")
    inventory = yaml.safe_load(Path(lab.inventory).read_text())
    hosts = inventory["all"]["children"]["forge_servers"]["hosts"]
    hosts["gone-1"] = {**hosts[lab.hosts[0]], "ansible_port": 9}  # nothing listens there
    with_gone = run["folder"] / "inventory-gone.yml"
    with_gone.write_text(yaml.safe_dump(inventory))
    try:
        alone = run_playbook(
            "playbooks/report.yml",
            with_gone,
            # what the webui stage leaves when a code-running flag was accepted with sharing
            extravars={**run["extravars"], "webui_warnings": [ACCEPTED]},
            envvars=run["envvars"],
        )
    finally:
        lab.exec(stopped, "systemctl", "start", "forge-webui")
    assert alone.stats["gone-1"]["dark"] == 1
    # without the models stage in the run, the report reads the models itself
    assert alone.task(REPORT_COMPAT, lab.hosts[0]).status == "ok"
    assert all(alone.stats[h]["changed"] == 0 for h in lab.hosts)
    rows = read_csv(run["reports"] / "fleet-report.csv")
    assert rows[lab.hosts[0]]["status"] == "ok"
    # without the webui stage in the run, the report asks the share link itself; the lab's
    # share server stopped with the stand-ins after site.yml, so the controller cannot reach
    # it: that says nothing about the link and is no problem of the host
    assert rows[lab.hosts[0]]["share_state"] == "unreachable"
    asked = alone.task(
        "Ask the share links from the controller (when the webui stage did not)", lab.hosts[0]
    )
    assert sorted(asked.res["links"]) == [lab.hosts[0]]  # the stopped host has no link
    assert rows[lab.hosts[0]]["gpu"] == rows[stopped]["gpu"] != ""  # read without preflight
    assert rows[stopped]["status"] == "problem"
    assert rows[lab.hosts[0]]["warnings"] == ACCEPTED  # a warning, not a problem
    assert f"  ! {ACCEPTED}" in alone.stdout
    assert f"warning: {ACCEPTED}" in (run["reports"] / "fleet-report.html").read_text()
    assert rows[stopped]["share_url"] == ""
    assert "webui not running (inactive/dead)" in rows[stopped]["problems"]
    assert rows["gone-1"]["status"] == "problem"
    assert "unreachable" in rows["gone-1"]["problems"]
    assert "port 9" in rows["gone-1"]["problems"]
    html = (run["reports"] / "fleet-report.html").read_text()
    assert html.count('<tr class="problem">') == 2
    assert f"{stopped}: PROBLEM" in alone.stdout


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="chromium missing: scripts/bootstrap installs it"
)
def test_chromium_renders_the_report(run, tmp_path):
    html = run["reports"] / "fleet-report.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1600,1000",
    ]
    shot = tmp_path / "report.png"
    done = subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "hosts OK" in dom
    assert dom.count("<tr") == 1 + len(read_csv(run["reports"] / "fleet-report.csv"))


# --- the security audit: the same -vvv site.yml run ------------------------------------------

AUTH_FILE = "/home/azureuser/.config/forge-fleet/webui-auth"
API_AUTH_FILE = "/home/azureuser/.config/forge-fleet/webui-api-auth"
SAS_FILE = "/home/azureuser/.forge-sync/sas-url"

# Every regular file on the VM holding one of the patterns read from stdin, as
# "<octal mode> <owner> <path>", then "scanned <n>": the files a root grep reads. The journal
# files are checked through journalctl instead (they are binary and 0640 root).
SCAN = r"""
pat=$(mktemp)
cat > "$pat"
files=$(mktemp)
find / \( -path /proc -o -path /sys -o -path /dev -o -path /var/log/journal \
  -o -path /run/log/journal \) -prune -o -type f ! -path "$pat" ! -path "$files" -print0 > "$files"
xargs -0 -r grep -lsF -f "$pat" -- < "$files" |
  while IFS= read -r f; do stat -c '%a %U %n' "$f"; done
echo "scanned $(tr -cd '\0' < "$files" | wc -c)"
rm -f "$pat" "$files"
"""

# Log in the way a browser on the share URL does: the share link tunnels to Forge's local port.
# The password comes on stdin (never the command line); prints the statuses as JSON.
LOGIN = r"""
import http.cookiejar, json, sys, urllib.error, urllib.parse, urllib.request
user, password = sys.stdin.read().split("\n", 1)
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
def status(path, form=None):
    data = urllib.parse.urlencode(form).encode() if form else None
    try:
        return opener.open("http://127.0.0.1:7860" + path, data=data, timeout=10).status
    except urllib.error.HTTPError as err:
        return err.code
out = {"anonymous": [status("/config"), status("/"), status("/login_check")]}
out["wrong"] = status("/login", {"username": user, "password": password + "x"})
out["after_wrong"] = status("/config")
out["login"] = status("/login", {"username": user, "password": password})
out["after_login"] = [status("/config"), status("/login_check")]
print(json.dumps(out))
"""


def test_the_audit_run_is_at_vvv_and_shows_no_secret(run):
    stdout = run["result"].stdout
    assert "ESTABLISH SSH CONNECTION" in stdout  # -vvv: connection and module detail
    count = len(run["named"])  # not the dict: an assertion message must not show the secrets
    assert count >= 7  # HF, CivitAI, header, SAS (2 forms), a webui password per host
    assert found_in(stdout, run["named"]) == []
    assert MIRROR_FILE in stdout  # the mirror with the secret header did download


def test_no_secret_in_the_process_lists_another_user_sees(lab, run):
    samples = run["samples"]
    # the sampler kept up with the run: at least one sample per host every 5 s
    assert len(samples) >= len(lab.hosts) * run["seconds"] / 5, (len(samples), run["seconds"])
    assert all(seen.startswith("USER") for _, seen in samples), samples[0][1][:200]
    during_sync = run["during_sync"]
    assert len(during_sync) >= 10  # sampled all through the sync
    samples = [*samples, *((lab.hosts[0], seen) for seen in during_sync)]
    leaks = [
        (host, name, line.replace(secret, f"<{name}>"))
        for host, seen in samples
        for line in seen.splitlines()
        for name, secret in run["named"].items()
        if secret in line
    ]
    # the base role mounts /proc with hidepid: the sampling user sees no AzCopy (and its SAS)
    for host in lab.hosts:
        assert "hidepid=invisible" in lab.exec(host, "findmnt", "-no", "OPTIONS", "/proc")
    assert leaks == []


def test_every_file_holding_a_secret_is_0600_and_owned_by_azureuser(lab, run):
    patterns = "\n".join(run["named"].values()) + "\n"
    for host in lab.hosts:
        out = podman.exec_in(host, "sh", "-c", SCAN, input_text=patterns).splitlines()
        assert out[-1].startswith("scanned ")
        assert int(out[-1].split()[1]) > 1000  # the whole file system was read
        holders = {line.split(" ", 2)[2]: line.split(" ", 2)[:2] for line in out[:-1]}
        # the webui's login file (and the API's, when it is on) and the sync's SAS are found,
        # and every file that holds a secret is its user's alone
        api = any(row.get("api_password") for row in run["access"])
        assert {AUTH_FILE, SAS_FILE, *([API_AUTH_FILE] if api else [])} <= set(holders), holders
        assert {path: mode for path, mode in holders.items() if mode != ["600", "azureuser"]} == {}


def test_no_secret_in_the_journal(lab, run):
    for host in lab.hosts:
        # every field of every entry (the command lines journald records too)
        journal = subprocess.run(
            ["podman", "exec", host, "journalctl", "--no-pager", "-o", "export"],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout.decode(errors="replace")
        assert "Running on public URL" in journal  # the webui's own lines are in it
        assert found_in(journal, run["named"]) == [], host


def test_the_controllers_credential_files_are_0600_and_the_operators(run):
    folder = run["credentials"]
    assert folder.stat().st_mode & 0o777 == 0o700
    files = [folder / "webui-access.csv", *sorted((folder / "rows").glob("*.csv"))]
    assert len(files) == 3
    for path in files:
        assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o600, os.getuid()), path
    assert (folder / "rows").stat().st_mode & 0o777 == 0o700
    for path in run["reports"].rglob("*"):  # the reports hold no secret at all
        if path.is_file():
            assert found_in(path.read_text(errors="replace"), run["named"]) == [], path


def test_the_share_url_answers_only_after_the_login(lab, run):
    for row in run["access"]:
        assert row["share_url"].endswith(".share.lab.invalid")
        login = f"{row['user']}\n{row['password']}"
        answer = json.loads(podman.exec_in(row["host"], "python3", "-c", LOGIN, input_text=login))
        # gradio with users: the UI's config and session need the login; "/" is its login page
        assert answer["anonymous"] == [401, 200, 401]
        assert (answer["wrong"], answer["after_wrong"]) == (400, 401)
        assert (answer["login"], answer["after_login"]) == (200, [200, 200])
