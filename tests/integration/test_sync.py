"""The sync stage on lab VMs: real AzCopy (installed from a tarball of the npm binary served
over the lab's HTTPS) against real Azurite on the lab network, SAS made by the Azure SDK."""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from lab.tls import issue_server_cert
from tests.doubles.download_site import DownloadSite, build_azcopy_tarball
from tests.harness.azurite import Azurite
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

OUTPUTS = "/home/azureuser/stable-diffusion-webui-forge/outputs"
STATE = "/home/azureuser/.forge-sync"
CONTAINER = "outputs"
CRONTAB = "/var/spool/cron/crontabs/azureuser"  # Debian's cron spool (root only)
SCRIPT = "/usr/local/bin/forge-sync-outputs"
FILES = "Write the sync folders, the SAS URL, the settings and the script"
READ = "Read the sync files, the crontab and the last sync result"  # host_files, check mode
DAYS = datetime.timedelta(days=30)


@pytest.fixture(scope="module")
def blob(lab, tmp_path_factory):
    files = tmp_path_factory.mktemp("blob")
    gateway = lab.lab.gateway
    cert, key = issue_server_cert([gateway], files / "tls")
    tarball, sha256 = build_azcopy_tarball(files / "site")
    with (
        Azurite(gateway, files / "azurite", (str(cert), str(key))) as azurite,
        DownloadSite(gateway, files / "site", (str(cert), str(key))) as site,
    ):
        azurite.service().create_container(CONTAINER)
        azurite.azcopy = {"url": f"{site.url}/{tarball.name}", "sha256": sha256}
        azurite.site = site
        yield azurite


def settings(blob, sas_url=None, **extra):
    return {
        "sync_sas_url": sas_url or blob.sas_url(CONTAINER, "rwl", DAYS),
        "sync_azcopy_url": blob.azcopy["url"],
        "sync_azcopy_sha256": blob.azcopy["sha256"],
        "sync_timeout_seconds": 30,
        "sync_interval_minutes": 5,
        **extra,
    }


def sync_run(blob, lab, **options):
    extravars = settings(blob, **options.pop("extravars", {}))
    return run_playbook("playbooks/sync.yml", lab.inventory, extravars=extravars, **options)


def signature(sas_url: str) -> str:
    return parse_qs(urlsplit(sas_url).query)["sig"][0]


def put_outputs(lab, host, names, size=2048):
    folder = f"{OUTPUTS}/2026-12-02"
    lab.exec(host, "install", "-d", "-o", "azureuser", "-g", "azureuser", OUTPUTS, folder)
    for name in names:
        lab.exec(host, "sh", "-c", f"head -c {size} /dev/urandom > {folder}/{name}")
    lab.exec(host, "chown", "-R", "azureuser:azureuser", OUTPUTS)


def cron_run(lab, host, *extra):
    """What cron runs, as azureuser; returns (exit code, the run's own JSON result)."""
    command = f"/usr/local/bin/forge-sync-outputs {STATE}/config.json {' '.join(extra)}"
    out = lab.exec(host, "su", "-", "azureuser", "-c", f"{command}; echo rc=$?")
    lines = out.strip().splitlines()
    return int(lines[-1].removeprefix("rc=")), json.loads(lines[-2]) if len(lines) > 1 else {}


@contextlib.contextmanager
def cron_held(lab, host):
    """Stop the VM's cron daemon for a test that counts what its own runs upload: the role's
    real */5 entry would otherwise race them (a run that finds another one running skips, by
    design, and a cron run after an outage catches up before the test's run does). Runs made
    inside use --wait, so a cron run already in flight finishes first."""
    lab.exec(host, "systemctl", "stop", "cron")
    try:
        yield
    finally:
        lab.exec(host, "systemctl", "start", "cron")


def last_run(lab, host):
    return json.loads(lab.exec(host, "cat", f"{STATE}/last-run.json"))


def host_blobs(blob, host):
    return {k: v for k, v in blob.blobs(CONTAINER).items() if k.startswith(f"{host}/")}


@pytest.fixture(scope="module")
def sas(blob):
    return blob.sas_url(CONTAINER, "rwl", DAYS)


@pytest.fixture(scope="module")
def dry_run(lab, blob, sas):
    """--check on the fresh hosts, before anything was installed."""
    return sync_run(blob, lab, extravars={"sync_sas_url": sas}, check=True)


@pytest.fixture(scope="module")
def converged(lab, blob, sas, dry_run):
    # The base role's /proc hidepid is what keeps AzCopy's command line from other users.
    hidden = run_playbook("playbooks/base.yml", lab.inventory, tags="hidepid")
    assert hidden.ok, hidden.explain()
    result = sync_run(blob, lab, extravars={"sync_sas_url": sas}, verbosity=3)
    assert result.ok, result.explain()
    return result


def test_check_mode_on_a_fresh_host_reports_changes_and_changes_nothing(lab, dry_run):
    assert dry_run.ok, dry_run.explain()
    for host in lab.hosts:
        changed = dry_run.changed_tasks(host)
        assert any("Write the sync folders, the SAS URL" in t for t in changed), changed
        assert any("Run the sync from cron" in t for t in changed), changed
        assert any("Create the AzCopy folder" in t for t in changed), changed
        assert lab.exec(host, "test", "-e", "/usr/local/bin/forge-sync-outputs", check=False) == ""
        assert "forge-sync" not in lab.exec(
            host, "sh", "-c", "crontab -u azureuser -l 2>&1 || true"
        )
        assert lab.exec(host, "sh", "-c", "ls /opt/azcopy 2>&1 || true").startswith("ls:")


def test_missing_azcopy_sha256_fails_clearly_and_changes_nothing(lab, blob, dry_run):
    # still the fresh hosts: no AzCopy on the PATH, so the pinned release would be installed
    result = sync_run(blob, lab, extravars={"sync_azcopy_sha256": ""})
    assert not result.ok
    for host in lab.hosts:
        failure = result.task("Check that the AzCopy tarball's sha256 is set", host)
        assert failure.failed and "set that file's sha256 (sync_azcopy_sha256" in failure.msg
        assert result.changed_tasks(host) == []
        assert lab.exec(host, "sh", "-c", "ls /opt/azcopy 2>&1 || true").startswith("ls:")
        status = lab.exec(host, "dpkg-query", "-W", "-f=${Status}", "libsecret-1-0", check=False)
        assert status != "install ok installed"


def test_azcopy_is_installed_from_the_pinned_tarball_and_reported(lab, blob, converged):
    for host in lab.hosts:
        exported = converged.task("Export the AzCopy in use and the last sync result", host)
        fact = exported.res["ansible_facts"]["sync_azcopy"]
        assert fact == {"path": "/opt/azcopy/10.32.2/azcopy", "version": "10.32.2"}
        assert "azcopy version 10.32.2" in lab.exec(host, fact["path"], "--version")


def test_rerun_changes_nothing(lab, blob, sas, converged):
    again = sync_run(blob, lab, extravars={"sync_sas_url": sas})
    assert again.ok, again.explain()
    for host in lab.hosts:
        assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
        # one read-only host_files run: the files as declared, the crontab (from cron's spool
        # file, headers and all) holding the entry as the cron module writes it, the last result
        read = again.task(READ, host)
        assert read.status == "ok" and read.res["changes"] == {}
        assert "#Ansible: forge-fleet outputs sync" in read.res["read"][CRONTAB]
        assert again.task(FILES, host).status == "skipped"
        assert again.task("Run the sync from cron", host).status == "skipped"
        exported = again.task("Export the AzCopy in use and the last sync result", host)
        assert "status" in exported.res["ansible_facts"]["sync_last_run"]  # never run, or cron's


def test_first_sync_uploads_and_second_uploads_only_new_files(lab, blob, sas, converged):
    with contextlib.ExitStack() as held:  # the counts below are this test's runs' own
        for host in lab.hosts:
            held.enter_context(cron_held(lab, host))
        _first_and_second_sync(lab, blob, sas)


def _first_and_second_sync(lab, blob, sas):
    for host in lab.hosts:
        put_outputs(lab, host, ["a.png", "b.png"])
    now = run_playbook("playbooks/sync-now.yml", lab.inventory, extravars={"sync_sas_url": sas})
    assert now.ok, now.explain()
    for host in lab.hosts:
        assert sorted(host_blobs(blob, host)) == [
            f"{host}/2026-12-02/a.png",
            f"{host}/2026-12-02/b.png",
        ]
        assert last_run(lab, host)["files_uploaded"] == 2
        assert last_run(lab, host)["bytes_uploaded"] == 4096
        assert "2 files (4.00 KB) uploaded" in now.task("Report what was uploaded", host).msg
    put_outputs(lab, lab.hosts[0], ["c.png"])
    again = run_playbook("playbooks/sync-now.yml", lab.inventory)
    assert again.ok, again.explain()
    assert last_run(lab, lab.hosts[0])["files_uploaded"] == 1
    assert last_run(lab, lab.hosts[1])["files_uploaded"] == 0
    assert again.stats[lab.hosts[1]]["changed"] == 0
    assert len(host_blobs(blob, lab.hosts[0])) == 3


def test_collect_copies_each_hosts_outputs_once(lab, converged, tmp_path):
    for host in lab.hosts:
        put_outputs(lab, host, ["to-collect.png"])
    extravars = {"sync_collect_dir": str(tmp_path)}
    first = run_playbook("playbooks/collect.yml", lab.inventory, extravars=extravars)
    assert first.ok, first.explain()
    for host in lab.hosts:
        remote = lab.exec(
            host, "sh", "-c", f"cd {OUTPUTS} && find . -type f -exec sha256sum {{}} + | sort -k2"
        )
        local = subprocess.run(
            "find . -type f -exec sha256sum {} + | sort -k2",
            shell=True, cwd=tmp_path / host, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert local == remote and local
        assert "new" in first.task("Report what was collected", host).msg
    second = run_playbook("playbooks/collect.yml", lab.inventory, extravars=extravars)
    assert second.ok, second.explain()
    for host in lab.hosts:
        assert second.stats[host]["changed"] == 0
        assert second.task("Report what was collected", host).msg.endswith(", 0 new")


def test_collect_from_a_host_without_outputs_says_so_without_a_warning(lab, converged, tmp_path):
    # Forge makes its outputs folder with the first image: a student who made none has none
    extravars = {"sync_collect_dir": str(tmp_path), "sync_source_dir": f"{OUTPUTS}-none-yet"}
    result = run_playbook("playbooks/collect.yml", lab.inventory, extravars=extravars)
    assert result.ok, result.explain()
    assert "[WARNING]" not in result.stdout
    for host in lab.hosts:
        assert "no outputs yet" in result.task("Report what was collected", host).msg
        assert result.stats[host]["changed"] == 0
    assert list(tmp_path.iterdir()) == []


def test_overlapping_cron_runs_never_upload_twice(lab, blob, converged):
    host = lab.hosts[1]
    with cron_held(lab, host):
        overlapping_runs(lab, blob, host)


def overlapping_runs(lab, blob, host):
    code, caught_up = cron_run(lab, host, "--wait")  # only the batch below is new after it
    assert code == 0 and caught_up["status"] == "ok", caught_up
    before = set(host_blobs(blob, host))
    names = [f"batch-{i:02d}.png" for i in range(40)]
    put_outputs(lab, host, names, size=200_000)
    command = f"/usr/local/bin/forge-sync-outputs {STATE}/config.json"
    both = lab.exec(host, "su", "-", "azureuser", "-c", f"{command} & {command} & wait")
    results = [json.loads(line) for line in both.strip().splitlines()]
    assert sorted(r["status"] for r in results) == ["ok", "skipped"], results
    uploaded = next(r for r in results if r["status"] == "ok")
    assert uploaded["files_uploaded"] == 40
    after = host_blobs(blob, host)
    assert set(after) - before == {f"{host}/2026-12-02/{n}" for n in names}
    assert all(after[f"{host}/2026-12-02/{n}"] == 200_000 for n in names)
    assert "skipped: another sync is still running" in lab.exec(host, "cat", f"{STATE}/sync.log")


def test_storage_down_is_recorded_and_the_next_run_catches_up(lab, blob, converged):
    host = lab.hosts[0]
    with cron_held(lab, host):
        code, caught_up = cron_run(lab, host, "--wait")  # only the file below is new after it
        assert code == 0 and caught_up["status"] == "ok", caught_up
        put_outputs(lab, host, ["while-down.png"])
        path = f"{OUTPUTS}/2026-12-02/while-down.png"
        before = lab.exec(host, "sha256sum", path)
        blob.stop()
        try:
            code, failed = cron_run(lab, host, "--wait")
        finally:
            blob.start()
        assert code == 1 and failed["status"] == "failed" and failed["error"], failed
        assert last_run(lab, host) == failed
        assert lab.exec(host, "sha256sum", path) == before
        assert f"{host}/2026-12-02/while-down.png" not in host_blobs(blob, host)
        code, after = cron_run(lab, host, "--wait")
        assert code == 0 and after["status"] == "ok", after
        assert after["files_uploaded"] == 1 and after["bytes_uploaded"] == 2048, after
        assert last_run(lab, host) == after
        assert f"{host}/2026-12-02/while-down.png" in host_blobs(blob, host)


@pytest.mark.parametrize(
    ("permission", "expires_in", "message"),
    [
        ("rwl", datetime.timedelta(days=-1), "the SAS expired at"),
        ("rl", DAYS, "missing w (write)"),
    ],
    ids=["expired", "read-only"],
)
def test_unusable_sas_is_refused_at_play_time(  # noqa: PLR0917  fixtures + parameters
    lab, blob, sas, converged, permission, expires_in, message
):
    bad = blob.sas_url(CONTAINER, permission, expires_in)
    result = sync_run(blob, lab, extravars={"sync_sas_url": bad}, verbosity=3)
    assert not result.ok
    failure = result.task("Check the SAS URL's expiry and permissions", lab.hosts[0])
    assert failure.failed and message in failure.msg
    assert signature(bad) not in result.stdout
    stored = lab.exec(lab.hosts[0], "cat", f"{STATE}/sas-url").strip()
    assert stored == sas  # the working SAS stays in place


def test_sas_signature_is_absent_from_crontab_logs_and_vvv_output(lab, blob, sas, converged):
    secret = signature(sas)
    assert (
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in converged.stdout or "censored" in converged.stdout
    )
    assert secret not in converged.stdout
    for host in lab.hosts:
        crontab = lab.exec(host, "crontab", "-u", "azureuser", "-l")
        assert "forge-sync-outputs" in crontab and secret not in crontab and "sig=" not in crontab
        logs = lab.exec(
            host,
            "sh",
            "-c",
            f"cat {STATE}/sync.log {STATE}/last-run.json {STATE}/config.json"
            f" {STATE}/azcopy/logs/* /usr/local/bin/forge-sync-outputs",
        )
        assert secret not in logs
        assert secret not in lab.exec(host, "journalctl", "--no-pager")
        mode = lab.exec(host, "stat", "-c", "%a %U", f"{STATE}/sas-url").strip()
        assert mode == "600 azureuser"


def test_sas_is_hidden_from_other_users_while_azcopy_runs(lab, blob, sas, converged):
    """AzCopy takes the SAS only on its command line; with Azurite frozen it waits there,
    SAS and all, while another user of the VM looks at ps and /proc."""
    host = lab.hosts[0]
    raw = sas.split("sig=")[1].split("&")[0]  # as the command line carries it (URL-encoded)
    secrets = {raw, signature(sas)}
    command = f"/usr/local/bin/forge-sync-outputs {STATE}/config.json --wait"
    with cron_held(lab, host):
        put_outputs(lab, host, ["while-frozen.png"])
        with blob.paused():
            lab.exec(
                host, "systemd-run", "--unit=forge-sync-frozen", "--uid=azureuser",
                "--setenv=HOME=/home/azureuser", *command.split(),
            )  # fmt: skip
            root_view = ""
            for _ in range(60):
                root_view = lab.exec(host, "ps", "-eo", "user,args")
                if "azcopy" in root_view and raw in root_view:
                    break
                time.sleep(0.5)
            unit = lab.exec(
                host, "journalctl", "--no-pager", "-u", "forge-sync-frozen", check=False
            )
            assert raw in root_view, f"AzCopy never ran with the SAS in its arguments: {unit}"
            other = lab.exec(
                host, "su", "-s", "/bin/sh", "nobody", "-c",
                "ps -eo user,args; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '",
            )  # fmt: skip
            owner = lab.exec(host, "su", "-", "azureuser", "-c", "ps -eo args")
        assert "azcopy" not in other, other
        assert not any(secret in other for secret in secrets)
        assert "nobody" in other  # it does list its own processes
        assert "azcopy" in owner  # the sync's own user still sees its AzCopy
        lab.exec(host, "su", "-", "azureuser", "-c", f"{command} >/dev/null")  # waits for it
    assert last_run(lab, host)["status"] == "ok"


@pytest.fixture(scope="module")
def restored(lab, blob, sas, converged):
    """A re-run after the cron entry was removed on one host, with a warning window wider
    than the SAS's 30 days left."""
    lab.exec(lab.hosts[1], "crontab", "-u", "azureuser", "-r")
    result = sync_run(blob, lab, extravars={"sync_sas_url": sas, "sync_sas_warn_days": 60})
    assert result.ok, result.explain()
    return result


def test_removed_cron_entry_is_restored_and_nothing_else_changes(lab, restored):
    host = lab.hosts[1]
    assert restored.changed_tasks(host) == ["Run the sync from cron"]
    assert restored.stats[lab.hosts[0]]["changed"] == 0
    crontab = lab.exec(host, "crontab", "-u", "azureuser", "-l")
    assert f"*/5 * * * * /usr/local/bin/forge-sync-outputs {STATE}/config.json" in crontab


def test_sas_expiring_within_the_warning_window_warns(lab, restored):
    task = restored.task("Check the SAS URL's expiry and permissions", lab.hosts[0])
    assert any("sync stops then" in w for w in task.res["warnings"]), task.res


@pytest.fixture(scope="module")
def files_drifted(lab, blob, sas, converged, restored):
    """The script edited by hand on the first host, the SAS file deleted on the second; then
    --check --diff, then the re-run. Returns (check, real, what each host held after --check)."""
    first, second = lab.hosts
    lab.exec(first, "sh", "-c", f"echo '# edited by hand' >> {SCRIPT}")
    lab.exec(second, "rm", f"{STATE}/sas-url")
    check = sync_run(blob, lab, extravars={"sync_sas_url": sas}, check=True, diff=True)
    after_check = {
        first: lab.exec(first, "tail", "-n", "1", SCRIPT).strip(),
        second: lab.exec(
            second, "sh", "-c", f"test -e {STATE}/sas-url && echo there || echo gone"
        ).strip(),
    }
    real = sync_run(blob, lab, extravars={"sync_sas_url": sas}, verbosity=3)
    return check, real, after_check


def test_check_reports_an_edited_script_and_a_deleted_sas_file_and_changes_nothing(
    lab, sas, files_drifted
):
    check, _, after_check = files_drifted
    assert check.ok, check.explain()
    first, second = lab.hosts
    for host, path, what in ((first, SCRIPT, "content"), (second, f"{STATE}/sas-url", "created")):
        assert check.changed_tasks(host) == [FILES]
        assert check.task(FILES, host).res["changes"] == {path: [what]}
        # the read itself reports no change: only the write it lets run does
        assert not check.task(READ, host).changed
    assert after_check == {first: "# edited by hand", second: "gone"}
    assert signature(sas) not in check.stdout


def test_an_edited_script_and_a_deleted_sas_file_are_repaired_by_the_write_alone(
    lab, sas, files_drifted
):
    _, real, _ = files_drifted
    assert real.ok, real.explain()
    first, second = lab.hosts
    assert real.changed_tasks(first) == [FILES]
    assert real.task(FILES, first).res["changes"] == {SCRIPT: ["content"]}
    assert "edited by hand" not in lab.exec(first, "cat", SCRIPT)
    assert real.changed_tasks(second) == [FILES]
    assert real.task(FILES, second).res["changes"] == {f"{STATE}/sas-url": ["created"]}
    assert lab.exec(second, "cat", f"{STATE}/sas-url").strip() == sas
    assert lab.exec(second, "stat", "-c", "%a %U", f"{STATE}/sas-url").strip() == "600 azureuser"
    assert signature(sas) not in real.stdout  # -vvv
    for host in lab.hosts:
        assert real.task("Run the sync from cron", host).status == "skipped"
