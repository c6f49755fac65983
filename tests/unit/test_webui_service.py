"""module_utils/forge_fleet/webui_service.py: reading systemd, the journal and gradio's lines."""

from __future__ import annotations

import json

import pytest

from forge_fleet import webui_service as ws

SHOW_ACTIVE = (
    "ActiveState=active\nSubState=running\nMainPID=4242\nInvocationID=aaa\nNRestarts=0\n"
    "Result=success\nExecMainStartTimestampMonotonic=1000000\nLoadState=loaded\n"
)
SHOW_AUTO_RESTART = SHOW_ACTIVE.replace(
    "active\nSubState=running", "activating\nSubState=auto-restart"
)
JOURNAL_SHARED = (
    "Running on local URL:  http://127.0.0.1:7860\n"
    "Running on public URL: https://0123456789abcdef01.gradio.live\n"
    "\nThis share link expires in 72 hours.\n"
)
JOURNAL_FAILED = (
    "Running on local URL:  http://127.0.0.1:7860\n\n"
    "Could not create share link. Missing file: /x/frpc_linux_amd64_v0.2. \n\n"
    "Please check your internet connection.\n"
)


def journal_json(text: str, start: float = 1_700_000_000.0) -> str:
    """journalctl -o json --output-fields=MESSAGE: one record per line, a second apart."""
    return "".join(
        json.dumps({"__REALTIME_TIMESTAMP": str(int((start + i) * 1_000_000)), "MESSAGE": line})
        + "\n"
        for i, line in enumerate(text.splitlines())
    )


class FakeSystem:
    """systemctl and journalctl answers, one list entry per call to `systemctl show`."""

    def __init__(self, shows: list[str], journal: str = "", tail: str = "x\ny\n"):
        self.shows = list(shows)
        self.journal = journal_json(journal)
        self.tail = tail
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]):
        self.calls.append(argv)
        if argv[:2] == ["systemctl", "show"]:
            return 0, self.shows.pop(0) if len(self.shows) > 1 else self.shows[0], ""
        if "-u" in argv:
            return 0, self.tail, ""
        return 0, self.journal, ""


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait(system, statuses, **options):
    clock = Clock()
    answers = iter(statuses)
    settings = {"auth": True, "share": True, "timeout": 10, "share_timeout": 5, **options}
    return ws.wait_ready(
        "forge-webui.service",
        7860,
        run=system,
        status=lambda _port: next(answers, statuses[-1]),
        clock=clock,
        sleep=clock.sleep,
        **settings,
    )


def test_parse_share_finds_the_public_url():
    found = ws.parse_share(JOURNAL_SHARED.splitlines())
    assert found == {
        "share_url": "https://0123456789abcdef01.gradio.live",
        "share_error": None,
        "share_made_at": None,  # plain lines carry no time
        "local_url": "http://127.0.0.1:7860",
    }


def test_parse_share_keeps_gradios_reason_when_it_could_not_share():
    found = ws.parse_share(JOURNAL_FAILED.splitlines())
    assert found["share_url"] is None
    assert found["share_error"].startswith("Could not create share link. Missing file:")
    assert "Please check your internet connection." in found["share_error"]


def test_journal_reads_only_this_start():
    system = FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED)
    ws.journal("forge-webui.service", "aaa", run=system)
    assert "_SYSTEMD_INVOCATION_ID=aaa" in system.calls[-1]


def test_wait_returns_pid_and_share_url_once_the_login_answers():
    system = FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED)
    result = wait(system, [None, None, 401])
    assert result["main_pid"] == 4242
    assert result["share_url"] == "https://0123456789abcdef01.gradio.live"
    assert result["http_status"] == 401


def test_wait_fails_with_the_journal_tail_when_the_process_exits():
    system = FakeSystem([SHOW_ACTIVE, SHOW_AUTO_RESTART], tail="RuntimeError: no GPU\n")
    with pytest.raises(ws.WebuiFailed) as failure:
        wait(system, [None])
    assert "Forge stopped while starting" in str(failure.value)
    assert "RuntimeError: no GPU" in str(failure.value)


def test_wait_fails_when_systemd_restarted_it_meanwhile():
    system = FakeSystem([SHOW_ACTIVE, SHOW_ACTIVE.replace("aaa", "bbb")])
    with pytest.raises(ws.WebuiFailed, match="restarted it"):
        wait(system, [None])


def test_wait_times_out_naming_the_setting():
    system = FakeSystem([SHOW_ACTIVE])
    with pytest.raises(ws.WebuiFailed, match="webui_start_timeout"):
        wait(system, [None])


def test_wait_refuses_a_server_that_answers_without_login():
    system = FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED)
    with pytest.raises(ws.WebuiFailed, match="login is not in force"):
        wait(system, [200])


def test_wait_reports_share_unavailable_with_gradios_reason():
    system = FakeSystem([SHOW_ACTIVE], JOURNAL_FAILED)
    result = wait(system, [401])
    assert result["share_url"] is None
    assert "Missing file" in result["share_error"]


def test_wait_gives_up_on_a_share_line_that_never_comes():
    system = FakeSystem([SHOW_ACTIVE], "Running on local URL:  http://127.0.0.1:7860\n")
    result = wait(system, [401])
    assert result["share_error"].startswith("gradio printed no share link within 5 s")


def test_probe_reports_uptime_from_systemds_monotonic_clock():
    system = FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED)
    found = ws.probe("forge-webui.service", run=system, now_usec=1_000_000 + 7_200_000_000)
    assert found["uptime_hours"] == 2.0
    assert found["share_url"].endswith(".gradio.live")


def test_probe_of_a_stopped_service_has_no_uptime_nor_link():
    show = SHOW_ACTIVE.replace("ActiveState=active", "ActiveState=inactive")
    found = ws.probe("forge-webui.service", run=FakeSystem([show], JOURNAL_SHARED), now_usec=9)
    assert found["uptime_hours"] is None and found["share_url"] is None


def test_wait_reports_the_unit_as_it_is_once_ready_like_a_probe():
    system = FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED)
    result = wait(system, [401])
    probed = ws.probe("forge-webui.service", run=FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED))
    fields = ("exists", "active_state", "sub_state", "main_pid", "n_restarts", "share_url")
    assert {k: result[k] for k in fields} == {k: probed[k] for k in fields}
    assert (result["active_state"], result["sub_state"]) == ("active", "running")
    assert result["uptime_hours"] >= 0


def test_probe_asks_forge_once_on_the_given_port_while_the_unit_is_active():
    asked = []

    def status(port):
        asked.append(port)
        return 401

    found = ws.probe(
        "forge-webui.service",
        run=FakeSystem([SHOW_ACTIVE], JOURNAL_SHARED),
        port=7861,
        status=status,
    )
    assert found["http_status"] == 401 and asked == [7861]
    assert (
        ws.probe("forge-webui.service", run=FakeSystem([SHOW_ACTIVE]), status=status)["http_status"]
        is None
    )  # no port: no question
    show = SHOW_ACTIVE.replace("ActiveState=active", "ActiveState=inactive")
    stopped = ws.probe("forge-webui.service", run=FakeSystem([show]), port=7861, status=status)
    assert stopped["http_status"] is None and asked == [7861]  # a stopped unit is not asked


def test_the_newest_link_wins_with_the_time_journald_stamped_it():
    # Forge's "Reload UI" launches gradio again in the same process: a second link
    text = JOURNAL_SHARED + "Reloading UI\nRunning on public URL: https://ffff.gradio.live\n"
    system = FakeSystem([SHOW_ACTIVE], text)
    found = ws.probe("forge-webui.service", run=system, wall_clock=lambda: 1_700_000_000 + 7205.0)
    assert found["share_url"] == "https://ffff.gradio.live"
    newest = len(text.splitlines()) - 1  # its line number is its second in journal_json
    assert found["share_made_at"] == 1_700_000_000 + newest
    assert found["share_age_hours"] == round((7205.0 - newest) / 3600, 3)
    assert found["share_expires_at"] == 1_700_000_000 + newest + 72 * 3600


def test_a_failure_after_a_link_replaces_it():
    text = JOURNAL_SHARED + JOURNAL_FAILED
    found = ws.parse_share([(float(i), line) for i, line in enumerate(text.splitlines())])
    assert found["share_url"] is None
    assert found["share_error"].startswith("Could not create share link. Missing file")
    assert ws.share_age(found, 100.0) == {"share_age_hours": None, "share_expires_at": None}


def test_a_line_that_is_not_utf8_is_read_not_dropped():
    record = {
        "__REALTIME_TIMESTAMP": "5000000",
        "MESSAGE": list(b"Running on public URL: https://a.gradio.live \xff"),
    }
    system = FakeSystem([SHOW_ACTIVE])
    system.journal = json.dumps(record) + "\n"
    entries = ws.journal_entries("forge-webui.service", "aaa", run=system)
    assert entries == [(5.0, "Running on public URL: https://a.gradio.live \ufffd")]
