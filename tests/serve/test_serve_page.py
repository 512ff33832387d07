"""The serve page in real headless Chromium (Debian's, driven by Playwright) against the app on
127.0.0.1: streamed replies, Web Audio playback and the talking face, interrupt, tab close, the
LiveKit viewer, limits and bad input."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from avatarkit import AudioChunk, AvatarSession, ViewerConnection, load_session
from avatarkit.builtins.browser import BrowserRenderer
from avatarkit.serve.assets import find_livekit_client
from avatarkit.testing import FakeLLM, FakeTextRenderer, FakeTTS, tone

ServerThread = Any  # conftest.py: uvicorn serving an app in a thread
Page = Any  # playwright.sync_api.Page
REPO = Path(__file__).resolve().parents[2]
MOUTH_RGB = (0x7A, 0x1F, 0x2B)  # face.js MOUTH_COLOR


def wait_until(condition: Callable[[], Any], *, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class SyllableTTS(FakeTTS):
    """FakeTTS whose tone is gated 250 ms on / 250 ms off, like syllables, so a mouth that
    follows the audio has to open and close within one sentence."""

    gate = 0.25

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.texts.append(text)
        rate = self.sample_rate
        samples = np.frombuffer(tone(len(text) * self.ms_per_char / 1000, rate), "<i2").copy()
        period = int(2 * self.gate * rate)
        samples[(np.arange(samples.size) % period) >= period // 2] = 0
        pcm = samples.tobytes()
        step = int(rate * 0.02) * 2
        for offset in range(0, len(pcm), step):
            yield AudioChunk(pcm[offset : offset + step], rate)


class CountingBrowserRenderer(BrowserRenderer):
    def __init__(self) -> None:
        super().__init__(playback_grace=5.0)
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1
        await super().close()


class AudioFactory:
    def __init__(
        self,
        reply: str,
        tts: FakeTTS,
        *more_replies: str,
        renderer: Callable[[], BrowserRenderer] = CountingBrowserRenderer,
    ) -> None:
        self.replies = [reply, *more_replies]
        self.tts = tts
        self.renderer = renderer
        self.sessions: list[AvatarSession] = []

    def __call__(self) -> AvatarSession:
        session = AvatarSession(
            llm=FakeLLM(self.replies, token_delay=0.01),
            tts=self.tts,
            renderer=self.renderer(),
        )
        self.sessions.append(session)
        return session


def open_served(new_page: Callable[[], Page], server: ServerThread) -> Page:
    """Open the page and click "Start the avatar", as a person does."""
    page = new_page()
    page.goto(server.url + "/")
    page.wait_for_function("window.avatarkit && window.avatarkit.connection === 'waiting'")
    page.click("#start")
    page.wait_for_function("window.avatarkit.connection === 'connected'")
    assert page.is_hidden("#start")
    return page


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


# Samples, once per animation frame, how many canvas pixels have the mouth's colour.
SAMPLE_MOUTH = """
async ({ rgb, maxMs }) => {
  const canvas = document.getElementById("face");
  const g = canvas.getContext("2d");
  const top = Math.floor(canvas.height * 0.5), height = Math.floor(canvas.height * 0.35);
  const samples = [];
  const t0 = performance.now();
  let idleSince = null;
  while (performance.now() - t0 < maxMs) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    const data = g.getImageData(0, top, canvas.width, height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - rgb[0]) < 10 && Math.abs(data[i + 1] - rgb[1]) < 10 &&
          Math.abs(data[i + 2] - rgb[2]) < 10) n++;
    }
    const a = window.avatarkit;
    const audio = a.audio;
    samples.push({ n, playing: audio.playing, output: audio.output, mouth: a.mouth });
    if (a.state === "idle" && a.metrics && !a.audio.playing) {
      idleSince = idleSince ?? performance.now();
      if (performance.now() - idleSince > 400) break;  // keep sampling the closed mouth a bit
    }
  }
  return samples;
}
"""


def test_typing_a_message_shows_the_streamed_reply(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    reply = "Hello there, I am your avatar. It is nice to meet you! What shall we talk about?"

    def factory() -> AvatarSession:
        return AvatarSession(
            llm=FakeLLM([reply], token_delay=0.03),
            renderer=FakeTextRenderer(seconds_per_char=0.002),
        )

    server = serve(factory, title="chat.yaml")
    page = open_served(new_page, server)
    assert page.inner_text("#title") == "chat.yaml"
    # Record every text the avatar's bubble shows while the reply streams in.
    page.evaluate(
        """() => {
          window.seenTexts = [];
          new MutationObserver(() => {
            const li = document.querySelector("#transcript li.avatar");
            if (li) window.seenTexts.push(li.textContent);
          }).observe(document.getElementById("transcript"),
                     { childList: true, subtree: true, characterData: true });
        }"""
    )
    say(page, "Who are you?")
    page.wait_for_function("window.avatarkit.metrics !== null && window.avatarkit.state === 'idle'")
    assert page.inner_text("#transcript li.user") == "Who are you?"
    assert page.inner_text("#transcript li.avatar") == reply
    seen = page.evaluate("window.seenTexts")
    partial = {t for t in seen if t and t != reply}
    assert len(partial) >= 5
    assert all(reply.startswith(t) for t in partial)  # streamed in pieces
    assert page.inner_text("#m-first-speech").endswith(" ms")
    assert page.inner_text("#state") == "idle"
    assert page.errors == []
    assert page.csp_violations == []  # the page works under its own Content Security Policy


def test_browser_renderer_plays_audio_and_the_mouth_follows_it(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    tts = SyllableTTS(ms_per_char=30)
    factory = AudioFactory(
        "Hello there, I am your avatar. It is nice to meet you!",
        tts,
        "I draw this face on a canvas, and my mouth follows the sound you hear.",
        renderer=BrowserRenderer,
    )
    server = serve(factory, title="browser.yaml")
    page = open_served(new_page, server)
    assert page.is_visible("#face")
    say(page, "Hi!")
    samples = page.evaluate(SAMPLE_MOUTH, {"rgb": list(MOUTH_RGB), "maxMs": 20000})
    screenshot = os.environ.get("AVATARKIT_SERVE_SCREENSHOT")
    stats = page.evaluate("window.avatarkit.audio")
    metrics = page.evaluate("window.avatarkit.metrics")

    # All the synthesised audio reached the page and was scheduled and played.
    expected_seconds = sum(len(t) for t in tts.texts) * tts.ms_per_char / 1000
    assert len(tts.texts) == 2
    assert stats["context"] == "running"
    assert stats["buffers"] >= 2 * len(tts.texts)
    assert stats["seconds"] == pytest.approx(expected_seconds, abs=0.05)
    assert stats["played"] == 2
    assert stats["stops"] == 0
    # speak() returned only when the page had played each sentence: the turn lasted that long.
    assert metrics["duration"] >= expected_seconds
    assert not metrics["interrupted"]

    # The mouth on the canvas: a thin line when silent, opening and closing with the syllables.
    closed = samples[-1]["n"]
    assert 0 < closed < 1000
    assert not samples[-1]["playing"]
    assert max(s["output"] for s in samples) > 0.1  # it was audible, not just scheduled
    speaking = [s["n"] for s in samples if s["playing"]]
    assert max(speaking) > 4 * closed
    phases = [n > 2 * closed for n in speaking]
    openings = sum(1 for a, b in itertools.pairwise(phases) if b and not a)
    assert openings >= 3  # ~1.6 s in two sentences of 0.5 s syllables: ~5 open/close cycles
    assert page.errors == []
    assert page.csp_violations == []  # the page works under its own Content Security Policy
    if screenshot:  # docs/guide/serve.md's picture: AVATARKIT_SERVE_SCREENSHOT=path pytest ...
        say(page, "How do you move your lips?")
        page.wait_for_function("window.avatarkit.mouth > 0.8")
        page.screenshot(path=screenshot)


def test_interrupt_stops_playback_at_once(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    reply = (
        "This is a long answer that takes many seconds to say out loud. "
        "It goes on and on, so there is plenty of time to cut it short."
    )
    factory = AudioFactory(reply, FakeTTS(ms_per_char=60), "Yes.")
    server = serve(factory)
    page = open_served(new_page, server)
    say(page, "Talk for a while.")
    page.wait_for_function("window.avatarkit.audio.output > 0.1 && window.avatarkit.mouth > 0.5")
    page.click("#interrupt")
    at_click = page.evaluate("window.avatarkit.audio")
    assert not at_click["playing"]
    assert at_click["stops"] >= 1  # silenced locally, at once
    # What leaves the AudioContext goes silent (the analyser's window is ~50 ms): within 5 s,
    # which a loaded machine's Chromium needs at worst, far less than the ~7 s left to play.
    page.wait_for_function("window.avatarkit.audio.output === 0", timeout=5000)
    page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    assert page.evaluate("window.avatarkit.metrics.interrupted")
    assert page.is_visible("#transcript li.avatar.interrupted")
    buffers = page.evaluate("window.avatarkit.audio.buffers")
    page.wait_for_timeout(400)
    after = page.evaluate("window.avatarkit.audio")
    assert after["buffers"] == buffers
    assert not after["playing"]  # nothing more arrives
    assert after["output"] == 0
    assert after["seconds"] < len(reply) * 0.06  # not the whole reply
    page.wait_for_function("window.avatarkit.mouth === 0")
    session = factory.sessions[0]
    spoken = session.history[-1]
    assert spoken.role == "assistant"
    assert len(spoken.content) < len(reply)
    say(page, "Are you still there?")  # the session carries on
    page.wait_for_function("window.avatarkit.metrics.turn === 2 && window.avatarkit.state==='idle'")
    assert page.errors == []
    assert page.csp_violations == []  # the page works under its own Content Security Policy


def test_closing_the_tab_closes_the_session(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    factory = AudioFactory("A reply that is still playing when the tab closes.", FakeTTS())
    server = serve(factory)
    page = open_served(new_page, server)
    say(page, "hello")
    page.wait_for_function("window.avatarkit.audio.buffers > 0")
    assert httpx.get(server.url + "/healthz", trust_env=False).json()["sessions"] == 1
    page.close()
    renderer = factory.sessions[0].renderer
    wait_until(lambda: renderer.closes == 1, what="the renderer to be closed")
    wait_until(
        lambda: httpx.get(server.url + "/healthz", trust_env=False).json()["sessions"] == 0,
        what="the session slot to be released",
    )
    assert factory.sessions[0].state == "closed"
    time.sleep(0.2)
    assert renderer.closes == 1


# -- the LiveKit viewer (HeyGen) -------------------------------------------------------------


class ViewerRenderer(FakeTextRenderer):
    """Stands in for a HeyGen renderer: speaks text and, once started, exposes its LiveKit
    room as ``viewer``; counts ``close`` (what stops the paid session)."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(seconds_per_char=0.001)
        self._room = (url, token)
        self.viewer: ViewerConnection | None = None
        self.closes = 0

    async def start(self) -> None:
        await super().start()
        url, token = self._room
        self.viewer = ViewerConnection(url, token, session_id="fake-session-1")

    async def close(self) -> None:
        self.closes += 1
        self.viewer = None
        await super().close()


class FakeLivekitServer:
    """Records livekit-client's signalling attempts (``<url>/rtc...?access_token=``) and refuses
    them the way a LiveKit server refuses a bad token (its validate endpoint answers 401)."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                WebSocketRoute("/rtc", self.signal),
                WebSocketRoute("/rtc/v1", self.signal),
                Route("/rtc/validate", self.validate),
                Route("/rtc/v1/validate", self.validate),
            ]
        )

    async def signal(self, websocket: WebSocket) -> None:
        self.attempts.append(
            {"kind": "websocket", "path": websocket.url.path, "query": dict(websocket.query_params)}
        )
        await websocket.close(code=1008)  # before accept: the handshake is refused

    async def validate(self, request: Request) -> Response:
        self.attempts.append(
            {"kind": "validate", "path": request.url.path, "query": dict(request.query_params)}
        )
        return PlainTextResponse("fake livekit: invalid token", status_code=401)


@pytest.fixture(scope="session")
def livekit_client() -> Path:
    """livekit-client from the npm registry (scripts/fetch-livekit-client), never committed."""
    found = find_livekit_client()
    if found is None and shutil.which("npm"):
        subprocess.run(
            ["bash", str(REPO / "scripts" / "fetch-livekit-client")], check=True, timeout=300
        )
        found = find_livekit_client()
    if found is None:
        message = "livekit-client is not installed and npm is missing: scripts/fetch-livekit-client"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_livekit_viewer_joins_exactly_the_renderers_room(
    serve: Callable[..., ServerThread],
    serve_asgi: Callable[[Any], ServerThread],
    new_page: Callable[[], Page],
    livekit_client: Path,
) -> None:
    livekit = FakeLivekitServer()
    room = serve_asgi(livekit.app)
    room_url = f"ws://127.0.0.1:{room.port}"
    token = "viewer-token-123.abc"
    renderers: list[ViewerRenderer] = []

    def factory() -> AvatarSession:
        renderers.append(ViewerRenderer(room_url, token))
        return AvatarSession(llm=FakeLLM(["Hi, I am on video."]), renderer=renderers[-1])

    server = serve(factory)
    page = open_served(new_page, server)
    assert page.evaluate("window.avatarkit.display") == "livekit"
    wait_until(lambda: livekit.attempts, what="livekit-client to connect to the room")
    signal = next(a for a in livekit.attempts if a["kind"] == "websocket")
    assert signal["path"] in ("/rtc", "/rtc/v1")
    assert signal["query"]["access_token"] == token
    # The page says plainly that the room could not be reached.
    page.wait_for_function("window.avatarkit.room.state === 'failed'")
    note = page.inner_text("#stage-note")
    assert note.startswith(f"cannot reach the avatar's room at {room_url}")
    # The conversation still works over the text route.
    say(page, "hello")
    page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    assert renderers[0].spoken == ["Hi, I am on video."]
    page.close()
    wait_until(lambda: renderers[0].closes == 1, what="the avatar session to be stopped")
    assert page_errors_ok(page)
    assert page.csp_violations == []  # livekit-client runs under the page's CSP


class FakeHeyGenAndLivekit:
    """HeyGen's streaming API (POST /v1/streaming.<op>, x-api-key, ``{"code": 100, "data"}``,
    per shared/reference/heygen-api.md) whose sessions point at a LiveKit "server" on the same
    port that records livekit-client's signalling attempts."""

    api_key = "hg-serve-test-key"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sessions: dict[str, str] = {}
        self.livekit = FakeLivekitServer()
        self.url = ""  # set once served
        self.app = Starlette(
            routes=[
                Route("/v1/{op:path}", self.operate, methods=["POST"]),
                *self.livekit.app.routes,
            ]
        )

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [body for name, body in self.calls if name == op]

    async def operate(self, request: Request) -> Response:
        op = request.path_params["op"].removeprefix("streaming.")
        body = await request.json()
        self.calls.append((op, body))
        if request.headers.get("x-api-key") != self.api_key:
            return JSONResponse({"code": 401, "message": "Unauthorized"}, status_code=401)
        data: dict[str, Any] | None = None
        if op == "new":
            session_id = f"sess-{len(self.sessions) + 1}"
            self.sessions[session_id] = "new"
            data = {
                "session_id": session_id,
                "url": self.url,
                "access_token": f"lk-viewer-{session_id}",
                "realtime_endpoint": "",
                "session_duration_limit": 600,
                "is_paid": True,
            }
        elif self.sessions.get(body.get("session_id")) in (None, "stopped"):
            return JSONResponse({"code": 10005, "message": "Session not found"}, status_code=400)
        elif op in ("start", "stop"):
            self.sessions[body["session_id"]] = {"start": "started", "stop": "stopped"}[op]
        elif op == "task":
            data = {"task_id": f"task-{len(self.ops('task'))}", "duration_ms": 50}
        return JSONResponse({"code": 100, "message": "success", "data": data})


def test_heygen_page_joins_the_room_and_closing_the_tab_stops_the_session(
    serve: Callable[..., ServerThread],
    serve_asgi: Callable[[Any], ServerThread],
    new_page: Callable[[], Page],
    livekit_client: Path,
) -> None:
    fake = FakeHeyGenAndLivekit()
    served = serve_asgi(fake.app)
    fake.url = f"ws://127.0.0.1:{served.port}"
    config = {
        "llm": {"provider": "scripted", "replies": ["Hello from HeyGen."]},
        "renderer": {
            "provider": "heygen",
            "api_key": fake.api_key,
            "base_url": served.url,
            "avatar_id": "Wayne_20240711",
        },
    }
    server = serve(lambda: load_session(config))
    page = open_served(new_page, server)
    assert page.evaluate("window.avatarkit.display") == "livekit"
    assert [op for op, _ in fake.calls] == ["new", "start"]
    session_id = fake.ops("start")[0]["session_id"]
    # livekit-client tries exactly the room and token HeyGen handed out.
    wait_until(lambda: fake.livekit.attempts, what="livekit-client to connect to the room")
    signal = next(a for a in fake.livekit.attempts if a["kind"] == "websocket")
    assert signal["path"] in ("/rtc", "/rtc/v1")
    assert signal["query"]["access_token"] == f"lk-viewer-{session_id}"
    page.wait_for_function("window.avatarkit.room.state === 'failed'")
    assert page.inner_text("#stage-note").startswith(
        f"cannot reach the avatar's room at {fake.url}"
    )
    say(page, "hi")
    page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    assert [b["text"] for b in fake.ops("task")] == ["Hello from HeyGen."]
    assert fake.sessions[session_id] == "started"
    page.close()
    wait_until(lambda: fake.sessions[session_id] == "stopped", what="HeyGen stop")
    assert len(fake.ops("stop")) == 1


def page_errors_ok(page: Page) -> bool:
    return all("livekit" in e.lower() or "room" in e.lower() for e in page.errors)


def test_page_explains_a_missing_livekit_client(
    serve: Callable[..., ServerThread],
    new_page: Callable[[], Page],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AVATARKIT_LIVEKIT_CLIENT", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def factory() -> AvatarSession:
        return AvatarSession(
            llm=FakeLLM(), renderer=ViewerRenderer("ws://127.0.0.1:9", "unused-token")
        )

    server = serve(factory)
    page = open_served(new_page, server)
    page.wait_for_function("window.avatarkit.room.state === 'unavailable'")
    assert "npm install --prefix ~/.cache/avatarkit/npm livekit-client@2" in page.inner_text(
        "#stage-note"
    )


# -- limits and bad input ----------------------------------------------------------------------


def test_over_the_limit_page_says_so(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    server = serve(
        lambda: AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()), max_sessions=1
    )
    first = open_served(new_page, server)
    second = new_page()
    second.goto(server.url + "/")
    second.click("#start")
    second.wait_for_function("window.avatarkit.closeCode === 1013")
    assert "already runs 1 avatar session" in second.inner_text("#transcript li.error")
    assert second.inner_text("#connection") == "disconnected: the server is at its session limit"
    assert second.is_disabled("#text")
    say(first, "still here?")
    first.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")


@pytest.fixture
def flood_messages() -> list[str | bytes]:
    return [
        "{not json",
        json.dumps({"type": "who-knows"}),
        json.dumps({"type": "send", "text": "z" * (1 << 20)}),
        *(json.dumps({"type": "send", "text": f"rapid {i}"}) for i in range(50)),
    ]


def test_bad_input_leaves_the_server_serving_other_pages(
    serve: Callable[..., ServerThread],
    new_page: Callable[[], Page],
    flood_messages: list[str | bytes],
) -> None:
    server = serve(
        lambda: AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer(seconds_per_char=0.002))
    )
    with connect(server.ws_url, proxy=None, max_size=None, max_queue=None) as abuser:
        abuser.send(json.dumps({"type": "start"}))
        for message in flood_messages:
            abuser.send(message)
        errors = 0
        for _ in range(500):
            data = json.loads(abuser.recv(timeout=10))
            errors += data["type"] == "error"
            if errors >= 4:  # malformed, unknown type, 1 MB, and at least one "busy"
                break
        assert errors >= 4
        page = open_served(new_page, server)
        say(page, "Hello, anyone home?")
        page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
        assert page.inner_text("#transcript li.avatar") == "Hello there. How can I help you today?"
        abuser.send(json.dumps({"type": "send", "text": "and me?"}))  # the abuser is still served
        for _ in range(2000):
            data = json.loads(abuser.recv(timeout=20))
            if data["type"] == "metrics" and not data["interrupted"]:
                break
        else:
            raise AssertionError("no complete turn for the flooding connection")


def test_offline_example_speaks_with_piper_in_the_page(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    """examples/browser.yaml as shipped: scripted LLM, Piper's real voice, the drawn face."""
    from avatarkit.plugins import default_registry

    if ("tts", "piper") not in default_registry(refresh=True):
        pytest.skip("avatarkit-piper is not installed (examples/browser.yaml uses its voice)")
    example = REPO / "examples" / "browser.yaml"
    server = serve(lambda: load_session(example, env={"SCRIPTED_DELAY": "0"}))
    page = open_served(new_page, server)
    say(page, "hello")
    samples = page.evaluate(SAMPLE_MOUTH, {"rgb": list(MOUTH_RGB), "maxMs": 60000})
    audio = page.evaluate("window.avatarkit.audio")
    assert page.inner_text("#transcript li.avatar").startswith("Hello! I live in your browser.")
    assert audio["played"] == 3  # one utterance per sentence
    assert audio["seconds"] > 2.0  # real speech, not a blip
    assert max(s["output"] for s in samples) > 0.02
    closed = samples[-1]["n"]
    phases = [s["n"] > 2 * closed for s in samples if s["playing"]]
    assert sum(1 for a, b in itertools.pairwise(phases) if b and not a) >= 2  # lips move


def test_a_token_link_starts_the_avatar_and_a_bare_link_does_not(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page]
) -> None:
    from avatarkit.serve.auth import Auth

    built: list[AvatarSession] = []

    def factory() -> AvatarSession:
        built.append(AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()))
        return built[-1]

    server = serve(factory, auth=Auth(mode="token", token="page-token-42"))
    bare = new_page()
    bare.goto(server.url + "/")
    bare.wait_for_function("window.avatarkit.connection === 'waiting'")
    assert "needs a link with an access token" in bare.inner_text("#stage-note")
    bare.click("#start")
    bare.wait_for_function("window.avatarkit.closeCode === 1008")
    assert "link is not valid" in bare.inner_text("#transcript li.error")
    assert built == []
    linked = new_page()
    linked.goto(server.url + "/#token=page-token-42")
    linked.click("#start")
    linked.wait_for_function("window.avatarkit.connection === 'connected'")
    assert len(built) == 1
    say(linked, "hello")
    linked.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    assert linked.errors == []


@pytest.mark.parametrize(
    ("fragment", "token"),
    [
        ("#token=ab+cd/ef==", "ab+cd/ef=="),  # openssl rand -base64: "+" is not a space
        ("#token=ab%2Bcd%2Fef%3D%3D", "ab+cd/ef=="),  # the same, percent-escaped
        ("#lang=en&token=ab+cd/ef==", "ab+cd/ef=="),
        ("#token=50%+off", "50%+off"),  # a stray "%": taken as written
    ],
)
def test_the_link_token_is_read_as_written(
    serve: Callable[..., ServerThread], new_page: Callable[[], Page], fragment: str, token: str
) -> None:
    from avatarkit.serve.auth import Auth

    server = serve(
        lambda: AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()),
        auth=Auth(mode="token", token=token),
    )
    page = new_page()
    page.goto(server.url + "/" + fragment)
    page.click("#start")
    page.wait_for_function("window.avatarkit.connection === 'connected'")
    assert page.errors == []
