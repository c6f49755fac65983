"""SAS URLs are judged (expiry, permissions) without the signature ever leaving the parser;
SAS made by the real Azure SDK."""

from __future__ import annotations

import datetime
import importlib.machinery
import importlib.util
import json
import os

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from forge_fleet.blob_sas import SasError, check, parse, redact
from lab.paths import REPO_ROOT
from tests.harness.azurite import ACCOUNT, ACCOUNT_KEY
from tests.harness.playbook import run_task

NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc)
BASE = f"https://acct.blob.core.windows.net/{'outputs'}"


def sdk_sas(permission: str, expiry: datetime.datetime) -> str:
    token = generate_container_sas(
        ACCOUNT,
        "outputs",
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions.from_string(permission),
        expiry=expiry,
    )
    return f"{BASE}?{token}"


def sig_of(url: str) -> str:
    return url.split("sig=")[1].split("&", maxsplit=1)[0]


def test_a_good_sas_reports_expiry_permissions_and_the_url_without_token():
    url = sdk_sas("rwl", NOW + datetime.timedelta(days=30))
    result = check(url, "rwl", 14, now=NOW)
    assert result["errors"] == [] and result["warnings"] == []
    assert result["base_url"] == BASE
    assert result["permissions"] == "rwl"
    assert result["days_left"] == 30.0
    assert sig_of(url) not in json.dumps(result)


def test_an_expired_sas_is_an_error():
    result = check(sdk_sas("rwl", NOW - datetime.timedelta(hours=1)), "rwl", 14, now=NOW)
    assert result["errors"] == [
        "the SAS expired at 2026-12-02T11:00:00Z; make a new one and put it in the vault"
    ]


def test_a_read_only_sas_is_an_error_naming_what_is_missing():
    result = check(sdk_sas("rl", NOW + datetime.timedelta(days=30)), "rwl", 14, now=NOW)
    assert len(result["errors"]) == 1
    assert "missing w (write)" in result["errors"][0]


def test_deleting_remote_blobs_needs_delete_permission():
    result = check(sdk_sas("rwl", NOW + datetime.timedelta(days=30)), "rwdl", 14, now=NOW)
    assert "missing d (delete)" in result["errors"][0]


def test_a_sas_expiring_within_the_warning_window_warns():
    result = check(sdk_sas("rwl", NOW + datetime.timedelta(days=3)), "rwl", 7, now=NOW)
    assert result["errors"] == []
    assert "in 3.0 days" in result["warnings"][0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("outputs?sv=1&sig=abc", "must start with https://"),
        (f"{BASE}?sv=2022&se=2030-01-01T00:00:00Z&sp=rwl", "no signature"),
        ("https://acct.blob.core.windows.net/?se=2030-01-01&sp=rwl&sig=abc", "names no container"),
        (f"{BASE}?se=soon&sp=rwl&sig=abc", "is not an ISO 8601"),
    ],
    ids=["not-a-url", "no-signature", "no-container", "bad-expiry"],
)
def test_unusable_urls_are_refused_without_echoing_the_signature(url, message):
    with pytest.raises(SasError) as caught:
        parse(url)
    assert message in str(caught.value)
    assert "abc" not in str(caught.value)


def test_redact_removes_every_signature():
    text = "PUT https://a/b?sv=1&sig=AbC%2B%3D&sp=rwl and 'x?sig=zzz'"
    assert redact(text) == "PUT https://a/b?sv=1&sig=REDACTED&sp=rwl and 'x?sig=REDACTED'"


def load_sync_script():
    path = REPO_ROOT / "roles/sync/files/forge-sync-outputs.py"
    loader = importlib.machinery.SourceFileLoader("forge_sync_outputs", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_sync_script_puts_the_host_prefix_before_the_token():
    script = load_sync_script()
    url = "https://acct.blob.core.windows.net/outputs?sv=1&sig=x"
    assert (
        script.destination(url, "lab-1")
        == "https://acct.blob.core.windows.net/outputs/lab-1?sv=1&sig=x"
    )


def test_sync_script_reads_azcopys_job_summary_and_redacts_errors():
    script = load_sync_script()
    end = {"TransfersCompleted": "3", "TotalBytesTransferred": "12", "TransfersFailed": "1"}
    lines = [
        json.dumps({"MessageType": "Info", "MessageContent": "INFO: scanning"}),
        json.dumps(
            {"MessageType": "Error", "MessageContent": "HEAD https://a/b?sig=SECRET failed"}
        ),
        json.dumps({"MessageType": "EndOfJob", "MessageContent": json.dumps(end)}),
    ]
    summary, errors = script.summarize("\n".join(lines))
    assert summary["TransfersCompleted"] == "3"
    assert errors == ["HEAD https://a/b?sig=REDACTED failed"]


def test_sync_script_keeps_only_the_newest_azcopy_files(tmp_path):
    script = load_sync_script()
    for index in range(5):
        path = tmp_path / f"plan-{index}"
        path.write_text("x")
        os.utime(path, (1000 + index, 1000 + index))
    script.prune(str(tmp_path), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan-3", "plan-4"]


# The blob_sas_check action (plugins/action/blob_sas_check.py) through ansible-playbook -vvv
# on localhost: what the sync and the model cache see, and the signature nowhere in the output.


def run_sas_check(tmp_path, url, required="rwl", warn_days=14):
    task = {
        "name": "Check the SAS URL",
        "blob_sas_check": {
            "url": url,
            "required_permissions": required,
            "warn_days": warn_days,
            "host": "lab-1",
        },
    }
    return run_task(tmp_path, task)


def test_the_action_reports_a_good_sas_without_its_signature(tmp_path):
    url = sdk_sas("rwl", datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3))
    output, result = run_sas_check(tmp_path, url)
    assert not result.get("failed"), result
    assert result["base_url"] == BASE
    assert result["permissions"] == "rwl"
    assert 2.9 < result["days_left"] <= 3.0
    assert result["changed"] is False
    assert "SAS URL for lab-1: the SAS expires at" in result["warnings"][0]
    assert BASE in output  # the result is shown at -vvv
    assert sig_of(url) not in output
    assert sig_of(url) not in json.dumps(result)


def test_the_action_refuses_a_sas_missing_a_permission_naming_the_host(tmp_path):
    url = sdk_sas("rl", datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30))
    output, result = run_sas_check(tmp_path, url, required="rwdl")
    assert result["failed"] is True
    assert result["msg"].startswith("SAS URL for lab-1 refused: the SAS grants sp=rl")
    assert "missing w (write), d (delete)" in result["msg"]
    assert sig_of(url) not in output


def test_the_action_refuses_an_unusable_url_without_echoing_it(tmp_path):
    output, result = run_sas_check(tmp_path, f"{BASE}?se=soon&sp=rwl&sig=Zm9vYmFyc2VjcmV0")
    assert result["failed"] is True
    assert "SAS URL for lab-1 is unusable: the SAS expiry se='soon'" in result["msg"]
    assert "Zm9vYmFyc2VjcmV0" not in output
