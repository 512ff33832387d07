"""The official clients as judges of our fakes: each runs its own flow against the fake server.

- npm ``@heygen/liveavatar-web-sdk`` (Node): a LITE session, its WebSocket, keep-alive, stop;
  and a FULL session's readiness (the participants it waits for) and commands;
- npm ``@heygen/streaming-avatar`` (Node): create_token, new, start, task, interrupt,
  keep_alive, stop;
- PyPI ``livekit-plugins-liveavatar`` (its own venv): token, start, the LITE WebSocket, stop.

The clients come from the registries at test time (scripts/fetch-conformance-clients, cached,
never committed). The drivers in ``conformance/`` only call the clients' public methods and stub
what needs a browser or a LiveKit server. When a client and a fake disagree, the fake is wrong
unless a document says otherwise. Without the clients the tests skip, except under CI=true,
where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from avatarkit_heygen.heygen_testing import API_KEY as HEYGEN_KEY
from avatarkit_heygen.heygen_testing import AVATAR, FakeHeyGen
from avatarkit_heygen.liveavatar_full import (
    AGENT_IDENTITY,
    AVATAR_IDENTITY,
    CONTROL_TOPIC,
    encode_command,
)
from avatarkit_heygen.liveavatar_testing import API_KEY as LIVEAVATAR_KEY
from avatarkit_heygen.liveavatar_testing import FakeLiveAvatar

#: the first run downloads the clients (livekit-agents is large): more than the usual limit
pytestmark = pytest.mark.timeout(900)

HERE = Path(__file__).parent / "conformance"
REPO = Path(__file__).parents[3]
FETCH = REPO / "scripts" / "fetch-conformance-clients"


@dataclass(frozen=True)
class Clients:
    node: str
    web_sdk: Path  # the bundle browsers load (dist/index.esm.js)
    streaming_avatar: Path
    python: Path  # the venv holding livekit-plugins-liveavatar


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the conformance clients are required)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def clients() -> Clients:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = Path(os.environ.get("AVATARKIT_CONFORMANCE_DIR") or cache / "avatarkit/conformance")
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed: the official JavaScript clients cannot run")
    assert node is not None
    try:
        subprocess.run(
            ["bash", str(FETCH), str(base)], check=True, timeout=900, capture_output=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        _unavailable(
            f"scripts/fetch-conformance-clients failed: {detail.decode(errors='replace')[-500:]}"
        )
    modules = base / "npm" / "node_modules" / "@heygen"
    return Clients(
        node=node,
        web_sdk=modules / "liveavatar-web-sdk" / "dist" / "index.esm.js",
        streaming_avatar=modules / "streaming-avatar" / "lib" / "index.esm.js",
        python=base / "venv" / "bin" / "python",
    )


def run(command: list[str]) -> list[dict[str, Any]]:
    """Run a driver; its JSON lines, or a failure showing what it printed."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(f"{command[-3:]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def steps(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["step"]: line for line in lines}


@pytest.fixture
def liveavatar() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        server.knobs.playback = 0.1  # speak_ended a tenth of the audio's length after its end
        yield server


@pytest.fixture
def heygen_fake() -> Iterator[FakeHeyGen]:
    server = FakeHeyGen()
    try:
        yield server
    finally:
        server.close()


# -- LiveAvatar's web SDK -------------------------------------------------------------------------


def test_liveavatar_web_sdk_lite_flow_and_stop(
    clients: Clients, liveavatar: FakeLiveAvatar
) -> None:
    lines = run(
        [
            clients.node,
            "--experimental-websocket",
            str(HERE / "liveavatar_web_sdk.mjs"),
            str(clients.web_sdk),
            liveavatar.base_url,
            LIVEAVATAR_KEY,
        ]
    )
    got = steps(lines)
    # the SDK reads the mode from the session token's JWT payload
    assert got["mode"]["mode"] == "LITE"
    assert got["started"]["state"] == "CONNECTED"
    session = liveavatar.only_session()
    assert got["started"]["session_id"] == session.session_id
    assert liveavatar.paths() == [
        "/v1/sessions/token",
        "/v1/sessions/start",
        "/v1/sessions/keep-alive",
        "/v1/sessions/stop",
    ]
    # start, keep-alive and stop carry only the bearer token: no body
    for path, headers, body in liveavatar.requests[1:]:
        assert headers["authorization"] == f"Bearer {session.token}", path
        assert body is None, path
    assert session.state == "stopped"
    assert session.stops == 1
    assert session.stop_bodies == [None]
    # the WebSocket: one event_id for every chunk and the end; the fake's events name it
    kinds = [r.type for r in liveavatar.received]
    assert kinds[-3:] == ["agent.start_listening", "agent.stop_listening", "agent.interrupt"]
    speaks = liveavatar.messages("agent.speak")
    (end,) = liveavatar.messages("agent.speak_end")
    assert {r.message["event_id"] for r in speaks} == {end.message["event_id"]}
    assert got["speak_started"]["event_id"] == end.message["event_id"]
    assert got["speak_ended"]["event_id"] == end.message["event_id"]
    audio = b"".join(base64.b64decode(r.message["audio"]) for r in speaks)
    assert len(audio) == 24000 * 2 * 1.5
    assert liveavatar.messages("agent.interrupt")[0].message["event_id"]
    assert liveavatar.violations == []


def test_liveavatar_web_sdk_full_waits_for_the_participants_we_wait_for(
    clients: Clients, liveavatar: FakeLiveAvatar
) -> None:
    # the stand-in room lets the identities our renderer waits for join; were they not the ones
    # the SDK waits for, its start() would hang (30 s) and the driver give up after 10 s
    agent_prefix = AGENT_IDENTITY.format(session_id="")
    lines = run(
        [
            clients.node,
            "--experimental-websocket",
            str(HERE / "liveavatar_web_sdk_full.mjs"),
            str(clients.web_sdk),
            liveavatar.base_url,
            LIVEAVATAR_KEY,
            AVATAR_IDENTITY,
            agent_prefix,
        ]
    )
    got = steps(lines)
    assert got["mode"]["mode"] == "FULL"  # read from the fake's JWT session token
    assert got["started"]["after_avatar"] is True
    assert got["started"]["after_agent"] is True  # it waited for the agent, a second late
    speak, interrupt = got["published"]["published"]
    assert speak["topic"] == interrupt["topic"] == CONTROL_TOPIC
    ours = json.loads(encode_command("avatar.speak_text", session_id="s", event_id="e", text="t"))
    assert set(speak["message"]) <= set(ours)  # ours adds session_id (LiveAvatar's event shape)
    assert speak["message"]["event_type"] == ours["event_type"]
    assert interrupt["message"] == {"event_type": "avatar.interrupt"}
    session = liveavatar.only_session()
    assert session.stop_bodies == [None]
    assert session.state == "stopped"


# -- HeyGen's streaming-avatar SDK ----------------------------------------------------------------


def test_heygen_streaming_avatar_http_flow(clients: Clients, heygen_fake: FakeHeyGen) -> None:
    lines = run(
        [
            clients.node,
            str(HERE / "heygen_streaming_avatar.mjs"),
            str(clients.streaming_avatar),
            heygen_fake.base_url,
            HEYGEN_KEY,
            AVATAR,
        ]
    )
    got = steps(lines)
    assert heygen_fake.ops() == [
        "create_token",
        "new",
        "start",
        "task",
        "start_listening",
        "stop_listening",
        "interrupt",
        "keep_alive",
        "stop",
        "task",
    ]
    create, *session_calls = heygen_fake.calls
    assert create.headers["x-api-key"] == HEYGEN_KEY
    bearer = {c.headers.get("authorization") for c in session_calls}
    assert len(bearer) == 1
    (auth,) = bearer
    assert auth is not None
    assert auth.startswith("Bearer ")
    assert all("x-api-key" not in c.headers for c in session_calls)
    sid = got["new"]["session_id"]
    new = heygen_fake.bodies("new")[0]
    assert new["avatar_name"] == AVATAR
    assert new["version"] == "v2"
    assert heygen_fake.bodies("task")[0] == {
        "text": "Hello from the official SDK.",
        "session_id": sid,
        "task_mode": "async",
        "task_type": "repeat",
    }
    assert set(got["task"]["task"]) == {"task_id", "duration_ms"}
    assert heygen_fake.sessions == {sid: "stopped"}
    assert got["after_stop"]["refused"] == {"status": 400}  # a stopped session takes no task


# -- LiveKit's LiveAvatar plugin ------------------------------------------------------------------


def test_livekit_plugin_http_and_websocket_flow(
    clients: Clients, liveavatar: FakeLiveAvatar
) -> None:
    lines = run(
        [
            str(clients.python),
            str(HERE / "livekit_liveavatar.py"),
            liveavatar.base_url,
            LIVEAVATAR_KEY,
        ]
    )
    got = steps(lines)
    session = liveavatar.only_session()
    assert got["token"]["session_id"] == session.session_id
    assert liveavatar.paths() == ["/v1/sessions/token", "/v1/sessions/start", "/v1/sessions/stop"]
    assert session.body["mode"] == "LITE"
    assert session.body["livekit_config"]["livekit_room"] == "conformance-room"
    assert session.stop_bodies == [
        {"session_id": session.session_id, "reason": "USER_DISCONNECTED"}
    ]
    assert session.state == "stopped"
    # the utterance played to its end on the fake's speak_ended, though the plugin gives every
    # chunk and the end a new event_id; the barge-in interrupted the second one
    assert got["played"] == {"step": "played", "interrupted": False, "position": 1.5}
    assert got["interrupted"]["interrupted"] is True
    assert got["stopped"]
    speaks = liveavatar.messages("agent.speak")
    first = base64.b64decode(speaks[0].message["audio"])
    assert len(first) == 24000 * 2 * 0.6  # the plugin's first chunk: 600 ms
    assert len(liveavatar.messages("agent.speak_end")) == 1
    assert liveavatar.messages("agent.interrupt")
    assert liveavatar.messages("session.keep_alive")
    assert liveavatar.violations == []


def test_missing_clients_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _unavailable("no node")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        _unavailable("no node")
