"""The fleet report (roles/report): site.yml once on two lab VMs with the stand-ins, then
playbooks/report.yml alone with one webui stopped and one host that cannot be reached."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness.playbook import run_playbook
from tests.harness.site import site_settings

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORGE = "/home/azureuser/stable-diffusion-webui-forge"
SYNC_RESULT = "/home/azureuser/.forge-sync/last-run.json"


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["host"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


@pytest.fixture(scope="module")
def run(lab, tmp_path_factory):
    """site.yml once; the report, the settings and the secrets it must never show."""
    folder = tmp_path_factory.mktemp("report")
    with site_settings(lab, folder) as site:
        settings, extravars, envvars = site.extravars, site.extravars, site.envvars
        reports, credentials = site.reports, site.credentials
        result = run_playbook("site.yml", lab.inventory, extravars=extravars, envvars=envvars)
    assert result.ok, result.explain()
    access = list(csv.DictReader((credentials / "webui-access.csv").open()))
    secrets = [settings["models_huggingface_token"], settings["models_civitai_api_key"]]
    secrets += [row[key] for row in access for key in ("password", "api_password") if row.get(key)]
    return {
        "result": result,
        "reports": reports,
        "extravars": extravars,
        "envvars": envvars,
        "secrets": secrets,
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
        assert row["share_url"].endswith(".gradio.live")
        assert row["service_state"] == "active/running"
        assert row["user"] == "student"
        last_sync = lab.exec(host, "cat", SYNC_RESULT, check=False)  # the sync stage's record
        sync_status = json.loads(last_sync)["status"] if last_sync.startswith("{") else "never run"
        assert row["sync_status"] == sync_status
        assert row["status"] == "ok", row["problems"]
        # what this run changed: the recap's own count for the host
        assert int(row["changed"]) == run["result"].stats[host]["changed"] > 0
        assert "forge : Check out Forge at the pinned commit" in row["changed_tasks"]
    stamped = sorted(p.name for p in run["reports"].glob("fleet-report-*Z.*"))
    assert [Path(p).suffix for p in stamped] == [".csv", ".html"]
    assert (run["reports"] / "fleet-report.html").stat().st_mode & 0o777 == 0o644


def test_the_run_ends_with_one_line_per_host_and_the_reports_path(lab, run):
    stdout = run["result"].stdout
    for host in lab.hosts:
        assert re.search(rf"{host}: OK, GPU ok; https://\S+\.gradio\.live; models: ", stdout)
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
            extravars=run["extravars"],
            envvars=run["envvars"],
        )
    finally:
        lab.exec(stopped, "systemctl", "start", "forge-webui")
    assert alone.stats["gone-1"]["dark"] == 1
    assert all(alone.stats[h]["changed"] == 0 for h in lab.hosts)
    rows = read_csv(run["reports"] / "fleet-report.csv")
    assert rows[lab.hosts[0]]["status"] == "ok"
    assert rows[lab.hosts[0]]["gpu"] == rows[stopped]["gpu"] != ""  # read without preflight
    assert rows[stopped]["status"] == "problem"
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
