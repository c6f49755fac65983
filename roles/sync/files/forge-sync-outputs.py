#!/usr/bin/env python3
"""Upload Forge's outputs to Azure Blob Storage with AzCopy (run by cron and sync-now.yml).

forge-sync-outputs CONFIG [--wait]

CONFIG (JSON, written by the sync role) names the outputs folder, the 0600 file holding the
container SAS URL, the per-host prefix, the state folder and the limits. One run at a time
(flock on STATE/lock): a run that finds another one running skips (cron) or waits for it
(--wait). The result of every run that ran is written to STATE/last-run.json; one summary
line per run goes to STATE/sync.log (rotated). The SAS signature is never written anywhere.
"""

import contextlib
import datetime
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time

SIG = re.compile(r"sig=[^&\s\"']*")


def redact(text):
    return SIG.sub("sig=REDACTED", text)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(config, line):
    path = os.path.join(config["state_dir"], "sync.log")
    try:
        if os.path.getsize(path) > config["log_max_bytes"]:
            keep = config["log_keep"]
            for index in range(keep - 1, 0, -1):
                older = f"{path}.{index}"
                if os.path.exists(older):
                    os.replace(older, f"{path}.{index + 1}")
            os.replace(path, path + ".1")
            stale = f"{path}.{keep + 1}"
            if os.path.exists(stale):
                os.remove(stale)
    except FileNotFoundError:
        pass
    with open(path, "a") as handle:
        handle.write(f"{now_utc()} {redact(line)}\n")


def prune(folder, keep):
    """Keep the ``keep`` newest files of an AzCopy job-plan or log folder."""
    try:
        entries = [os.path.join(folder, name) for name in os.listdir(folder)]
    except FileNotFoundError:
        return
    files = sorted((p for p in entries if os.path.isfile(p)), key=os.path.getmtime, reverse=True)
    for stale in files[keep:]:
        os.remove(stale)


def destination(sas_url, prefix):
    base, _, query = sas_url.strip().partition("?")
    return f"{base.rstrip('/')}/{prefix.strip('/')}?{query}"


def summarize(stdout):
    """The last EndOfJob (or Progress) summary and the error messages in AzCopy's JSON lines."""
    summary, errors = {}, []
    for line in stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        kind = message.get("MessageType")
        content = message.get("MessageContent", "")
        if kind in ("EndOfJob", "Progress"):
            with contextlib.suppress(ValueError):
                summary = json.loads(content)
        elif kind == "Error":
            errors.append(redact(content).strip())
    return summary, errors


def write_result(config, result):
    path = os.path.join(config["state_dir"], "last-run.json")
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def run(config):
    started = time.monotonic()
    result = {
        "time": now_utc(),
        "source": config["source_dir"],
        "prefix": config["prefix"],
        "status": "failed",
        "files_uploaded": 0,
        "bytes_uploaded": 0,
        "failures": 0,
        "error": "",
    }
    if not os.path.isdir(config["source_dir"]):
        result.update(status="ok", error="", note="no outputs folder yet: nothing to upload")
        return result
    with open(config["sas_file"]) as handle:
        sas_url = handle.read().strip()
    env = dict(os.environ)
    env.update(
        AZCOPY_JOB_PLAN_LOCATION=os.path.join(config["state_dir"], "azcopy", "plans"),
        AZCOPY_LOG_LOCATION=os.path.join(config["state_dir"], "azcopy", "logs"),
        AZCOPY_DISABLE_SYSLOG="true",
    )
    command = [
        config["azcopy"],
        "sync",
        config["source_dir"],
        destination(sas_url, config["prefix"]),
        "--recursive",
        "--from-to",
        "LocalBlob",
        "--delete-destination",
        "true" if config["delete_remote"] else "false",
        "--output-type",
        "json",
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        universal_newlines=True,
        start_new_session=True,
    )
    try:
        stdout, _ = process.communicate(timeout=config["timeout_seconds"])
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, _ = process.communicate()
        timed_out = True
    summary, errors = summarize(stdout)
    result["files_uploaded"] = int(summary.get("TransfersCompleted", 0) or 0)
    result["bytes_uploaded"] = int(summary.get("TotalBytesTransferred", 0) or 0)
    result["failures"] = int(summary.get("TransfersFailed", 0) or 0)
    result["exit_code"] = process.returncode
    result["job_status"] = summary.get("JobStatus", "")
    if timed_out:
        errors.append(f"AzCopy did not finish within {config['timeout_seconds']} s and was stopped")
    if process.returncode == 0 and not timed_out and result["failures"] == 0:
        result["status"] = "ok"
    else:
        result["error"] = " | ".join(errors) or redact(stdout.strip()[-500:])
    result["duration_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: forge-sync-outputs CONFIG [--wait]\n")
        return 2
    with open(argv[1]) as handle:
        config = json.load(handle)
    os.umask(0o077)
    # the lock is held until the process exits (the file stays open for its whole life)
    lock = open(os.path.join(config["state_dir"], "lock"), "a")  # noqa: SIM115  held to exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if "--wait" in argv else fcntl.LOCK_NB))
    except BlockingIOError:
        log(config, "skipped: another sync is still running")
        print(json.dumps({"status": "skipped", "reason": "another sync is still running"}))
        return 0
    try:
        result = run(config)
    except Exception as error:  # recorded, never lost: the report reads last-run.json
        result = {
            "time": now_utc(),
            "status": "failed",
            "error": redact(str(error)),
            "files_uploaded": 0,
            "bytes_uploaded": 0,
            "failures": 0,
        }
    write_result(config, result)
    error = f"; {result['error']}" if result.get("error") else ""
    log(
        config,
        f"{result['status']}: {result['files_uploaded']} files, "
        f"{result['bytes_uploaded']} bytes uploaded, {result['failures']} failed{error}",
    )
    prune(os.path.join(config["state_dir"], "azcopy", "plans"), config["azcopy_keep"])
    prune(os.path.join(config["state_dir"], "azcopy", "logs"), config["azcopy_keep"])
    print(json.dumps(result, sort_keys=True))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
