"""Real signals to a real ``avatarkit serve`` process with paid sessions open at the fake HeyGen
and LiveAvatar services on 127.0.0.1: SIGTERM turns readiness false before any session is
stopped, then stops every one exactly once; a SIGTERM delivered twice (a service manager that
signals every process, then the supervisor its workers) is one drain whose turns finish; Ctrl-C
twice cuts the turns but still stops every paid session, even when the provider is slow to
answer the stop."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import httpx
import pytest
from tests.serve.test_serve_deploy import (  # the fixtures and helpers of the deploy tests
    Page,
    Served,
    avatarkit_serve,  # noqa: F401
    fake,  # noqa: F401
    recv_until,
    session_yaml,
)
from websockets.exceptions import ConnectionClosed

from avatarkit_heygen.heygen_testing import AVATAR, FakeHeyGen
from avatarkit_heygen.liveavatar_testing import FakeLiveAvatar

REPLY = "Hello from HeyGen, speaking for a few seconds now."


def heygen_yaml(heygen: FakeHeyGen) -> str:
    return f"""
llm:
  provider: scripted
  delay: 0
  replies: [{REPLY!r}]
renderer:
  provider: heygen
  api_key: {heygen.api_key}
  base_url: {heygen.base_url}
  avatar_id: {AVATAR}
"""


def test_sigterm_turns_readiness_false_first_then_stops_every_heygen_session(
    avatarkit_serve: Callable[..., Served],  # noqa: F811
) -> None:
    with FakeHeyGen() as heygen:
        heygen.max_sessions = 5
        heygen.ms_per_char = 60  # the reply takes about 3 s to say
        served = avatarkit_serve(heygen_yaml(heygen), "--drain-grace", "20")
        pages = [Page(served.ws_url) for _ in range(3)]
        for page in pages:
            assert page.start()["type"] == "ready"
        assert sorted(heygen.sessions.values()) == ["started"] * 3
        # a kept-alive connection: the drain closes the listener, not the connections it has
        with httpx.Client(base_url=served.url, trust_env=False) as probe:
            assert probe.get("/readyz").status_code == 200
            pages[0].ws.send(json.dumps({"type": "send", "text": "hi"}))
            recv_until(pages[0].ws, lambda m: m["type"] == "sentence_start")
            served.process.send_signal(signal.SIGTERM)
            answers = []
            while (answer := probe.get("/readyz")).status_code == 200:
                answers.append(answer)
                assert len(answers) < 500, "readiness never turned false"
                time.sleep(0.01)
            open_when_unready = heygen.open_sessions()
            assert answer.status_code == 503
            assert answer.json()["draining"] is True
        assert len(open_when_unready) == 3  # not ready first, sessions stopped after
        done, _ = recv_until(pages[0].ws, lambda m: m["type"] == "metrics")
        assert not done["interrupted"]  # the running turn was let finish
        assert served.process.wait(60) is not None
        assert heygen.open_sessions() == []
        stopped = [body["session_id"] for body in heygen.bodies("stop")]
        assert sorted(stopped) == sorted(heygen.sessions)  # each exactly once
        assert "draining: 3 page(s), 3 session(s)" in served.output()


def test_ctrl_c_twice_cuts_the_drain_but_still_stops_every_paid_session(
    avatarkit_serve: Callable[..., Served],  # noqa: F811
    fake: FakeLiveAvatar,  # noqa: F811
) -> None:
    second = signal.SIGINT
    fake.knobs.playback = 1.0  # turns last seconds
    fake.knobs.delay["/v1/sessions/stop"] = 1.0  # a real provider is not on loopback
    served = avatarkit_serve(session_yaml(fake), "--drain-grace", "20")
    pages = [Page(served.ws_url) for _ in range(3)]
    for page in pages:
        assert page.start()["type"] == "ready"
    pages[0].ws.send(json.dumps({"type": "send", "text": "hi"}))
    recv_until(pages[0].ws, lambda m: m["type"] == "sentence_start")
    served.process.send_signal(second)
    recv_until(pages[0].ws, lambda m: m["type"] == "going_away")
    served.process.send_signal(second)  # Ctrl-C again: stop waiting for turns
    with pytest.raises(ConnectionClosed) as closed:
        recv_until(pages[0].ws, lambda m: m["type"] == "metrics")  # the turn is cut
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    assert served.process.wait(60) is not None
    states = {s.session_id: s.state for s in fake.sessions.values()}
    assert len(states) == 3
    assert set(states.values()) == {"stopped"}, states


def test_a_group_wide_sigterm_drains_each_worker_once(
    avatarkit_serve: Callable[..., Served],  # noqa: F811
    fake: FakeLiveAvatar,  # noqa: F811
) -> None:
    """A service manager that stops a unit by signalling every process in it (systemd's
    default ``KillMode=control-group``, ``kill -TERM -PGID``) gives each worker SIGTERM twice:
    its own, then its supervisor's. That is one request to stop, not two: turns finish."""
    fake.knobs.playback = 1.0  # the avatar plays audio in real time: a turn lasts a while
    served = avatarkit_serve(session_yaml(fake), "--workers", "2", "--drain-grace", "20")
    workers = served.workers(2)
    page = Page(served.ws_url)
    assert page.start()["type"] == "ready"
    page.ws.send(json.dumps({"type": "send", "text": "hi"}))
    recv_until(page.ws, lambda m: m["type"] == "sentence_start")
    for pid in [served.process.pid, *workers.values()]:
        os.kill(pid, signal.SIGTERM)
    recv_until(page.ws, lambda m: m["type"] == "going_away")
    done, _ = recv_until(page.ws, lambda m: m["type"] == "metrics")
    assert not done["interrupted"]  # the turn was let finish
    assert served.process.wait(60) is not None
    assert [s.state for s in fake.sessions.values()] == ["stopped"]
