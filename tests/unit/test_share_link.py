"""Share links from the controller's side: the lab's share server, the stand-in's tunnel and
the link check (module_utils/forge_fleet/share_link.py) against each other, all real sockets.

The stand-in runs in its own Python process as on the VM (tests/unit/test_standin_webui.py's
driver); the relay and the check run here.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from forge_fleet import share_link
from tests.doubles.share_relay import ShareRelay
from tests.unit.test_standin_webui import start

PASSWORD = "pass-for-the-link-test"


@pytest.fixture
def served(tmp_path):
    """Start stand-ins (test_standin_webui's driver); killed at the end."""
    running = []

    def factory(**options):
        one = start(tmp_path, **options)
        running.append(one)
        return one

    yield factory
    for one in running:
        if one.proc.poll() is None:
            one.proc.kill()


@pytest.fixture
def relay():
    with ShareRelay("127.0.0.1") as running:
        yield running


def shared(served, relay, tmp_path, **options):
    auth = tmp_path / "auth"
    auth.write_text(f"student:{PASSWORD}\n")
    running = served(
        share=True,
        gradio_auth_path=str(auth),
        env={"GRADIO_SHARE_SERVER_ADDRESS": relay.tunnel_address},
        **options,
    )
    links = [line.split(": ", 1)[1] for line in running.lines if "Running on public URL" in line]
    assert len(links) == 1, running.lines
    return running, links[0]


def check(relay, *links, **options):
    return share_link.check_links(
        {f"vm-{i}": {"url": link, "auth": True} for i, link in enumerate(links)},
        via=relay.public_url,
        **options,
    )


def test_a_link_answers_through_the_share_server_as_gradio_behind_a_login(served, relay, tmp_path):
    _, link = shared(served, relay, tmp_path)
    assert link.startswith("https://") and link.endswith(".share.lab.invalid")
    assert relay.links() == [link]
    found = check(relay, link)["vm-0"]
    assert found["state"] == "answers", found
    assert found["url"] == link


def test_a_dropped_link_is_dead_with_what_the_share_server_answered(served, relay, tmp_path):
    running, link = shared(served, relay, tmp_path)
    assert relay.drop(link)
    found = check(relay, link)["vm-0"]
    assert found["state"] == "dead"
    assert "GET / answered 404" in found["detail"]
    # Forge itself still serves locally, and printed nothing about the link
    status, _, _ = running.ask("GET", "/login_check")
    assert status == 401


def test_reload_ui_prints_a_new_link_in_the_same_process_and_the_old_one_dies(
    served, relay, tmp_path
):
    running, first = shared(served, relay, tmp_path)
    os.kill(running.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    second = None
    while second is None and time.monotonic() < deadline:
        line = running.proc.stdout.readline()
        if "Running on public URL" in line:
            second = line.strip().split(": ", 1)[1]
    assert second and second != first
    assert running.proc.poll() is None
    found = check(relay, first, second)
    assert found["vm-0"]["state"] == "dead"
    assert found["vm-1"]["state"] == "answers"


def test_nothing_listening_is_unreachable_not_dead():
    # a closed port on this machine: the controller cannot tell anything about the link
    found = share_link.check_links(
        {"vm": {"url": "https://abc.share.lab.invalid", "auth": True}},
        via="http://127.0.0.1:9",
        timeout=2,
    )["vm"]
    assert found["state"] == "unreachable"
    assert "GET /" in found["detail"]


def test_a_server_that_answers_without_the_login_is_not_forge_behind_its_login(
    served, relay, tmp_path
):
    running = served(share=True, env={"GRADIO_SHARE_SERVER_ADDRESS": relay.tunnel_address})
    link = next(line.split(": ", 1)[1] for line in running.lines if "public URL" in line)
    found = check(relay, link)["vm-0"]
    assert found["state"] == "dead"
    assert "/config answered 200 (gradio answers 401)" in found["detail"]


def test_links_are_asked_at_once_not_one_after_another():
    calls = []

    def slow(url, **_):
        calls.append(url)
        time.sleep(0.5)
        return {"state": "answers", "detail": "", "seconds": 0.5}

    began = time.monotonic()
    found = share_link.check_links(
        {f"vm-{i}": {"url": f"https://{i}.example"} for i in range(8)} | {"none": {"url": None}},
        check=slow,
    )
    assert time.monotonic() - began < 1.5  # 8 x 0.5 s one after another would be 4 s
    assert sorted(found) == [f"vm-{i}" for i in range(8)]
    assert len(calls) == 8


def test_a_new_link_is_asked_again_until_it_answers():
    answers = iter(["dead", "dead", "answers"])

    def flaky(url, **_):
        return {"state": next(answers), "detail": "", "seconds": 0.0}

    found = share_link.check_links(
        {"vm": {"url": "https://x.example"}}, check=flaky, retry_for=5, sleep=lambda _: None
    )
    assert found["vm"]["state"] == "answers"


def test_a_link_that_is_not_an_http_url_is_dead_with_why():
    found = share_link.check_link("ftp://x.example")
    assert found["state"] == "dead"
    assert "not an http(s) link" in found["detail"]


def test_a_link_outlives_a_restart_of_the_share_server_but_not_a_drop(served, tmp_path):
    # the lab's share server runs only while a playbook runs: the tunnel logs in again with
    # its link when the server is back, as frpc reconnects; a dropped link stays dead
    with ShareRelay("127.0.0.1") as first:
        ports = tuple(int(a.rsplit(":", 1)[1]) for a in (first.tunnel_address, first.public_url))
        _, link = shared(served, first, tmp_path)
    with ShareRelay("127.0.0.1", ports=ports) as again:
        deadline = time.monotonic() + 10
        while again.links() != [link]:
            assert time.monotonic() < deadline, again.links()
            time.sleep(0.2)
        assert check(again, link)["vm-0"]["state"] == "answers"
        assert again.drop(link)
        time.sleep(2.5)  # the client tries again, and is refused
        assert again.links() == []
        assert check(again, link)["vm-0"]["state"] == "dead"
