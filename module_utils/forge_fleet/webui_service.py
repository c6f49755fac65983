"""Forge under systemd: read the service's state, wait until it answers behind its login,
and read the share link gradio printed during this start (from the journal).

Standard library only (runs on the VMs, Python 3.8+). I/O goes through two small seams
(``run`` for commands, ``http_status`` for HTTP) so the logic is unit-testable.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: Python 3.8 on the VMs cannot subscript these
    from collections.abc import Callable

    Runner = Callable[[list[str]], tuple[int, str, str]]

SHOW_PROPERTIES = (
    "ActiveState",
    "SubState",
    "MainPID",
    "InvocationID",
    "NRestarts",
    "Result",
    "ExecMainStartTimestampMonotonic",
    "UnitFileState",
    "LoadState",
)
PUBLIC_URL = re.compile(r"Running on public URL: (https?://\S+)")
LOCAL_URL = re.compile(r"Running on local URL: +(https?://\S+)")
SHARE_FAILED = "Could not create share link"
SHARE_LIFETIME_HOURS = 72  # gradio 4: "This share link expires in 72 hours"


class WebuiFailed(Exception):
    """Forge did not come up; the message says why and carries the journal tail."""


def run_command(argv: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A,B` output (A=x lines) as a dict."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key] = value
    return found


def service_state(name: str, run: Runner = run_command) -> dict[str, str]:
    rc, out, err = run(["systemctl", "show", name, "-p", ",".join(SHOW_PROPERTIES)])
    if rc != 0:
        raise WebuiFailed(f"systemctl show {name} failed: {err.strip() or out.strip()}")
    return parse_show(out)


def monotonic_now_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd's *Monotonic properties use."""
    return int(time.monotonic() * 1_000_000)


def uptime_seconds(state: dict[str, str], now_usec: int) -> float | None:
    """Seconds since the main process started, or None when it is not running."""
    started = int(state.get("ExecMainStartTimestampMonotonic") or 0)
    if state.get("ActiveState") != "active" or not started:
        return None
    return max(0.0, (now_usec - started) / 1_000_000)


def journal_entries(
    name: str, invocation_id: str, lines: int = 0, run: Runner = run_command
) -> list[tuple[float, str]]:
    """(time, message) of every line one start (invocation) of the unit wrote, oldest first;
    time in seconds since the epoch, as journald stamped the line."""
    if not invocation_id:
        return []
    argv = [
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        "--output-fields=MESSAGE",
        f"_SYSTEMD_INVOCATION_ID={invocation_id}",
    ]
    if lines:
        argv[1:1] = ["-n", str(lines)]
    rc, out, _ = run(argv)
    if rc != 0:
        return []
    entries = []
    for raw in out.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        message = record.get("MESSAGE")
        if isinstance(message, list):  # journald's form for a line that is not UTF-8
            message = bytes(message).decode("utf-8", "replace")
        if message is None:
            continue
        stamp = int(record.get("__REALTIME_TIMESTAMP") or 0) / 1_000_000
        entries.extend((stamp, line) for line in str(message).splitlines() or [""])
    return entries


def journal(name: str, invocation_id: str, lines: int = 0, run: Runner = run_command) -> list[str]:
    """The messages one start (invocation) of the unit wrote, oldest first."""
    return [message for _, message in journal_entries(name, invocation_id, lines, run)]


def unit_journal_tail(name: str, lines: int, run: Runner = run_command) -> list[str]:
    """The unit's last lines, systemd's own messages included (for failures)."""
    rc, out, _ = run(["journalctl", "--no-pager", "-u", name, "-n", str(lines), "-o", "short"])
    return out.splitlines() if rc == 0 else []


def parse_share(lines: list[str] | list[tuple[float, str]]) -> dict[str, object]:
    """What gradio printed last about the share link: url, or error (gradio's reason), or
    neither; with (time, message) entries also when (share_made_at, seconds since the epoch).

    The newest line wins: Forge's "Reload UI" launches gradio again in the same process,
    which prints a new link (or a failure) while the old link dies."""
    entries = [entry if isinstance(entry, tuple) else (None, entry) for entry in lines]
    result: dict[str, object] = {
        "share_url": None,
        "share_error": None,
        "share_made_at": None,
        "local_url": None,
    }
    for index, (stamp, line) in enumerate(entries):
        local = LOCAL_URL.search(line)
        if local:
            result["local_url"] = local.group(1)
        public = PUBLIC_URL.search(line)
        if public:
            result.update(share_url=public.group(1), share_error=None, share_made_at=stamp)
        elif SHARE_FAILED in line:
            reason = [line.strip()]
            for _, more in entries[index + 1 : index + 3]:
                if more.strip():
                    reason.append(more.strip())
            result.update(share_url=None, share_error=" ".join(reason), share_made_at=stamp)
    return result


def share_age(shared: dict[str, object], now: float) -> dict[str, object]:
    """The link's age and end of life: gradio's links expire 72 hours after they were made."""
    made = shared.get("share_made_at")
    if not shared.get("share_url") or made is None:
        return {"share_age_hours": None, "share_expires_at": None}
    return {
        "share_age_hours": round(max(0.0, now - float(made)) / 3600, 3),
        "share_expires_at": float(made) + SHARE_LIFETIME_HOURS * 3600,
    }


def http_status(port: int, path: str = "/login_check", timeout: float = 5.0) -> int | None:
    """The HTTP status Forge answers on 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def crashed(before: dict[str, str], now: dict[str, str]) -> str | None:
    """Why the start that ``before`` saw is over, or None while it may still come up."""
    if now.get("ActiveState") in ("failed", "inactive"):
        return f"the service is {now.get('ActiveState')} (result: {now.get('Result')})"
    if now.get("SubState") == "auto-restart":
        return f"the main process exited (result: {now.get('Result')}); systemd will restart it"
    if before.get("InvocationID") and now.get("InvocationID") != before.get("InvocationID"):
        return "the main process exited and systemd restarted it"
    return None


def wait_ready(
    name: str,
    port: int,
    *,
    auth: bool,
    share: bool,
    timeout: float,
    share_timeout: float,
    tail: int = 30,
    interval: float = 1.0,
    run: Runner = run_command,
    status: Callable[[int], int | None] = http_status,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, object]:
    """Wait until Forge answers on its port (behind its login when ``auth``), then until
    gradio said what became of the share link. Raises WebuiFailed with the journal tail."""
    began = clock()
    first = service_state(name, run)
    answered = None
    while True:
        now = service_state(name, run)
        why = crashed(first, now)
        if why:
            raise WebuiFailed(_failure(name, f"Forge stopped while starting: {why}", tail, run))
        answered = status(port)
        if answered is not None:
            break
        if clock() - began > timeout:
            raise WebuiFailed(
                _failure(
                    name,
                    f"Forge did not answer on port {port} within {timeout:g} s "
                    "(raise webui_start_timeout if a large checkpoint takes longer to load)",
                    tail,
                    run,
                )
            )
        sleep(interval)
    if auth and answered != 401:
        raise WebuiFailed(
            f"Forge answers GET /login_check with {answered} instead of 401: the login is "
            f"not in force. Check the --gradio-auth-path file of {name}."
        )
    if not auth and answered >= 500:
        raise WebuiFailed(f"Forge answers GET /login_check with {answered}.")
    entries = journal_entries(name, now.get("InvocationID", ""), run=run)
    shared = parse_share(entries)
    share_began = clock()
    while share and not shared["share_url"] and not shared["share_error"]:
        if clock() - share_began > share_timeout:
            shared["share_error"] = (
                f"gradio printed no share link within {share_timeout:g} s of the server answering"
            )
            break
        sleep(interval)
        entries = journal_entries(name, now.get("InvocationID", ""), run=run)
        shared = parse_share(entries)
    final = service_state(name, run)
    return {
        **unit_fields(final, monotonic_now_usec()),
        "http_status": answered,
        "ready_after": round(clock() - began, 1),
        **shared,
        **share_age(shared, time.time()),
    }


def _failure(name: str, summary: str, tail: int, run: Runner) -> str:
    lines = unit_journal_tail(name, tail, run)
    return f"{summary}. Last {len(lines)} journal lines of {name}:\n" + "\n".join(lines)


def unit_fields(state: dict[str, str], now_usec: int) -> dict[str, object]:
    """What the report and the webui fact say of the unit, from ``systemctl show``."""
    age = uptime_seconds(state, now_usec)
    return {
        "exists": state.get("LoadState") == "loaded",
        "active_state": state.get("ActiveState", ""),
        "sub_state": state.get("SubState", ""),
        "unit_file_state": state.get("UnitFileState", ""),
        "main_pid": int(state.get("MainPID") or 0),
        "invocation_id": state.get("InvocationID", ""),
        "n_restarts": int(state.get("NRestarts") or 0),
        "uptime_hours": None if age is None else round(age / 3600, 3),
    }


def probe(
    name: str,
    *,
    run: Runner = run_command,
    now_usec: int | None = None,
    port: int | None = None,
    status: Callable[[int], int | None] = http_status,
    wall_clock: Callable[[], float] = time.time,
) -> dict[str, object]:
    """Read-only: the service's state, what its current start printed about sharing, and,
    with ``port``, what Forge answers there now (one ``GET /login_check``; None when the
    service is not active or nothing answers)."""
    state = service_state(name, run)
    active = state.get("ActiveState") == "active"
    shared = (
        parse_share(journal_entries(name, state.get("InvocationID", ""), run=run)) if active else {}
    )
    return {
        **unit_fields(state, monotonic_now_usec() if now_usec is None else now_usec),
        "share_url": shared.get("share_url"),
        "share_error": shared.get("share_error"),
        "share_made_at": shared.get("share_made_at"),
        **share_age(shared, wall_clock()),
        "local_url": shared.get("local_url"),
        "http_status": status(port) if active and port else None,
    }
