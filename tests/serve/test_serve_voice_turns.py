"""Spoken turns (the page's microphone) go through the same gate, drain and accounting as typed
ones: a drain lets a running spoken reply finish (up to the grace) and starts no new spoken turn;
the interrupt button and the rate limit apply to spoken turns; ``/metrics`` counts them and has
the voice figures, also across processes. Real uvicorn on 127.0.0.1, the ``websockets`` client,
FakeSTT/FakeVAD hearing tone speech sent as binary PCM16 frames."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from avatarkit import AvatarSession, TurnOptions
from avatarkit.errors import ProviderError
from avatarkit.serve.connection import Limits
from avatarkit.serve.turns import QueuedTurn, SpokenTurns, TurnGate
from avatarkit.testing import FakeLLM, FakeSTT, FakeTextRenderer, FakeVAD, tone

ServerThread = Any

RATE = 16000
FRAME = 2 * RATE // 50  # 20 ms of PCM16


def speech(seconds: float) -> bytes:
    return tone(seconds, RATE)


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))


def send_audio(ws: ClientConnection, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        ws.send(pcm[i : i + FRAME])


#: an utterance: speech, then enough silence for the VAD (0.2 s) and the turn (0.6 s) to end
UTTERANCE = speech(0.5) + silence(1.2)


def ws_connect(server: ServerThread) -> ClientConnection:
    return connect(server.ws_url, proxy=None, open_timeout=10, max_size=None, max_queue=None)


def recv(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], limit: int = 2000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = recv(ws)
        seen.append(message)
        if match(message):
            return message, seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


def closed_with(ws: ClientConnection) -> tuple[int, list[dict[str, Any]]]:
    """Read until the server closes the socket: its close code and what came before."""
    seen: list[dict[str, Any]] = []

    def read_all() -> None:
        while True:
            seen.append(recv(ws))

    with pytest.raises(ConnectionClosed) as closed:
        read_all()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, seen


class HeldRenderer(FakeTextRenderer):
    """Says a sentence only once the test lets it (``release``, from the test's thread), so a
    reply is exactly as long as the test wants; ``interrupt()`` cuts it as usual."""

    def __init__(self) -> None:
        super().__init__()
        self._released = 0
        self._lock = threading.Lock()
        self.speaking = 0
        self.most_at_once = 0  # utterances spoken at the same time, at most
        #: also lets utterance ``index`` end once this says so (read on the server's loop)
        self.release_when: Callable[[int], bool] | None = None

    def release(self, sentences: int = 1000) -> None:
        with self._lock:
            self._released += sentences

    async def speak_text(self, text: str) -> None:
        interrupted = self._new_utterance()
        index = len(self.spoken)
        self.spoken.append(text)
        self.fractions.append(0.0)
        self.speaking += 1
        self.most_at_once = max(self.most_at_once, self.speaking)
        try:
            while not interrupted.is_set():
                with self._lock:
                    if self._released > index:
                        break
                if self.release_when is not None and self.release_when(index):
                    break
                await anyio.sleep(0.01)
            if not interrupted.is_set():
                self.completed.append(text)
                self.fractions[-1] = 1.0
        finally:
            self.speaking -= 1


class Factory:
    """Sessions that listen (FakeSTT saying ``transcripts`` in order, FakeVAD) and speak with a
    :class:`HeldRenderer` (or a plain instant one); keeps each session and its event loop."""

    def __init__(
        self,
        transcripts: list[str],
        replies: list[str],
        *,
        held: bool = True,
        turn: TurnOptions | None = None,
        llm_error: BaseException | None = None,
    ) -> None:
        self.llm_error = llm_error
        self.transcripts = transcripts
        self.replies = replies
        self.held = held
        self.turn = turn
        self.sessions: list[AvatarSession] = []
        self.renderers: list[FakeTextRenderer] = []
        self.stts: list[FakeSTT] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> AvatarSession:
        self.loop = asyncio.get_running_loop()
        renderer = HeldRenderer() if self.held else FakeTextRenderer()
        stt = FakeSTT(self.transcripts)
        session = AvatarSession(
            llm=FakeLLM(self.replies, error=self.llm_error),
            renderer=renderer,
            stt=stt,
            vad=FakeVAD(),
            turn=self.turn,
        )
        self.sessions.append(session)
        self.renderers.append(renderer)
        self.stts.append(stt)
        return session

    @property
    def renderer(self) -> HeldRenderer:
        renderer = self.renderers[0]
        assert isinstance(renderer, HeldRenderer)
        return renderer

    def drain(self, server: ServerThread, grace: float) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(server.app.state.avatarkit.drain(grace), self.loop)


def start_with_mic(ws: ClientConnection) -> None:
    recv_until(ws, lambda m: m["type"] == "hello")
    ws.send(json.dumps({"type": "start"}))
    ready, _ = recv_until(ws, lambda m: m["type"] == "ready")
    assert ready["listen"] is True
    ws.send(json.dumps({"type": "mic_start", "sample_rate": RATE}))
    on, _ = recv_until(ws, lambda m: m["type"] == "mic")
    assert on["state"] == "on"


def history(session: AvatarSession) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in session.history]


TWO_SENTENCES = "The first sentence of the answer. And the second one."


# -- the drain --------------------------------------------------------------------------------


def test_a_drain_lets_a_running_spoken_turn_finish(serve: Callable[..., ServerThread]) -> None:
    factory = Factory(["hello there"], [TWO_SENTENCES])
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        send_audio(ws, UTTERANCE)
        final, _ = recv_until(ws, lambda m: m["type"] == "user_transcript" and m["final"])
        assert final["text"] == "hello there"
        recv_until(ws, lambda m: m["type"] == "sentence_start")  # the reply is being said
        # The grace is longer than the test waits for the drain: it can only return in time
        # by noticing that the spoken turn is over.
        drained = factory.drain(server, 120)
        going, _ = recv_until(ws, lambda m: m["type"] == "going_away")
        assert going["grace"] == 120
        factory.renderer.release()
        metrics, seen = recv_until(ws, lambda m: m["type"] == "metrics")
        assert metrics["interrupted"] is False
        assert [m["text"] for m in seen if m["type"] == "sentence_end"] == [
            "The first sentence of the answer.",
            "And the second one.",
        ]
        drained.result(timeout=60)
        code, rest = closed_with(ws)
        assert code == 1012
    assert history(factory.sessions[0]) == [("user", "hello there"), ("assistant", TWO_SENTENCES)]
    assert factory.renderer.closed == 1
    assert server.app.state.avatarkit.active == 0
    # the microphone was stopped by the drain, after the reply: the page was told
    assert {"type": "mic", "state": "off", "dropped": 0} in seen + rest


def test_a_spoken_turn_longer_than_the_grace_is_cut_at_the_grace(
    serve: Callable[..., ServerThread],
) -> None:
    factory = Factory(["tell me a story"], [TWO_SENTENCES])
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        state = server.app.state.avatarkit
        # The first sentence ends 0.3 s into the drain (the old drain had cut it by then);
        # the second never would.
        draining_since: list[float] = []

        def release_when(index: int) -> bool:
            if not state.draining:
                return False
            if not draining_since:
                draining_since.append(anyio.current_time())
            return index == 0 and anyio.current_time() - draining_since[0] >= 0.3

        factory.renderer.release_when = release_when
        send_audio(ws, UTTERANCE)
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        drained = factory.drain(server, 3)
        recv_until(ws, lambda m: m["type"] == "going_away")
        end, _ = recv_until(ws, lambda m: m["type"] == "sentence_end")
        assert (end["index"], end["interrupted"]) == (0, False)
        drained.result(timeout=60)  # bounded by the grace, not by the endless sentence
        code, _ = closed_with(ws)
        assert code == 1012
    renderer = factory.renderer
    assert renderer.completed == ["The first sentence of the answer."]
    assert renderer.spoken == ["The first sentence of the answer.", "And the second one."]
    assert renderer.closed == 1
    # history keeps what was said before the cut
    assert history(factory.sessions[0]) == [
        ("user", "tell me a story"),
        ("assistant", "The first sentence of the answer."),
    ]
    assert server.app.state.avatarkit.active == 0


def test_no_spoken_turn_starts_once_draining(serve: Callable[..., ServerThread]) -> None:
    """Speech being heard when the drain begins is refused like a typed message; speech after
    it is not heard at all (the microphone stream ends); the typed turn running finishes."""
    # the user's speech does not cut the reply: it is a turn of its own once it ends
    quiet = TurnOptions(interruptions=False)
    factory = Factory(["hello there", "tell me a joke"], ["A typed answer."], turn=quiet)
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        ws.send(json.dumps({"type": "send", "text": "typed first"}))
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        send_audio(ws, silence(0.2) + speech(0.5))  # the user is speaking...
        recv_until(ws, lambda m: m["type"] == "user_speech_start")
        drained = factory.drain(server, 120)
        recv_until(ws, lambda m: m["type"] == "going_away")
        send_audio(ws, silence(1.0) + UTTERANCE)  # ...and goes on after the drain began
        refused, seen = recv_until(ws, lambda m: m["type"] == "error")
        assert (refused["stage"], refused["code"]) == ("shutdown", "draining")
        ws.send(json.dumps({"type": "mic_start", "sample_rate": RATE}))  # no new stream either
        again, between = recv_until(ws, lambda m: m["type"] == "error")
        assert (again["stage"], again["code"]) == ("shutdown", "draining")
        factory.renderer.release()
        metrics, more = recv_until(ws, lambda m: m["type"] == "metrics")
        assert metrics["interrupted"] is False  # the typed turn was let finish
        drained.result(timeout=60)
        code, rest = closed_with(ws)
        assert code == 1012
    messages = seen + between + more + rest
    assert [m for m in messages if m["type"] == "error" and m["code"] != "draining"] == []
    assert [m["state"] for m in messages if m["type"] == "mic"] == ["off"]
    assert history(factory.sessions[0]) == [
        ("user", "typed first"),
        ("assistant", "A typed answer."),
    ]
    assert factory.stts[0].finals == ["hello there"]  # the speech after the drain: not heard


# -- the gate: typed and spoken turns together --------------------------------------------------


def test_typed_and_spoken_turns_share_the_gate(serve: Callable[..., ServerThread]) -> None:
    factory = Factory(["tell me a story", "and another"], ["Once upon a time. The end."])
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        send_audio(ws, UTTERANCE)
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        # The Interrupt button cuts a spoken reply as it cuts a typed one.
        ws.send(json.dumps({"type": "interrupt"}))
        cut, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        assert cut["interrupted"] is True
        # A typed message while a spoken reply runs: it barges in, then runs.
        send_audio(ws, UTTERANCE)
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        ws.send(json.dumps({"type": "send", "text": "typed over it"}))
        cut, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        assert cut["interrupted"] is True
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        factory.renderer.release()
        done, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        assert done["interrupted"] is False
        page = next(iter(server.app.state.avatarkit.pages))
        assert page.gate.taken == 3  # the driver ran all three turns, spoken and typed
        assert not page.gate.in_turn
        assert page.idle.is_set()
    assert factory.renderer.most_at_once == 1
    assert history(factory.sessions[0]) == [
        ("user", "tell me a story"),
        ("user", "and another"),
        ("user", "typed over it"),
        ("assistant", "Once upon a time. The end."),
    ]


def test_speaking_over_a_typed_reply_cuts_it_and_goes_next(
    serve: Callable[..., ServerThread],
) -> None:
    factory = Factory(["stop please"], ["A long typed answer. With more to come."])
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        ws.send(json.dumps({"type": "send", "text": "typed first"}))
        recv_until(ws, lambda m: m["type"] == "sentence_start")
        send_audio(ws, speech(0.8) + silence(1.2))  # longer than the minimum: an interruption
        cut, seen = recv_until(ws, lambda m: m["type"] == "metrics")
        assert cut["interrupted"] is True
        _, more = recv_until(ws, lambda m: m["type"] == "sentence_start")
        assert [
            m["text"] for m in seen + more if m["type"] == "user_transcript" and m["final"]
        ] == ["stop please"]
        factory.renderer.release()
        done, _ = recv_until(ws, lambda m: m["type"] == "metrics")
        assert done["interrupted"] is False
        page = next(iter(server.app.state.avatarkit.pages))
        assert page.gate.taken == 2
    assert factory.renderer.most_at_once == 1
    assert factory.renderer.interrupts >= 1
    assert history(factory.sessions[0]) == [
        ("user", "typed first"),
        ("user", "stop please"),
        ("assistant", "A long typed answer. With more to come."),
    ]


def test_a_failed_spoken_turn_is_counted_by_stage(serve: Callable[..., ServerThread]) -> None:
    quota = ProviderError("quota", provider="fake-llm")
    factory = Factory(["hello there", "again"], ["unused"], held=False, llm_error=quota)
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        send_audio(ws, UTTERANCE)
        error, _ = recv_until(ws, lambda m: m["type"] == "error")
        assert (error["stage"], error["code"], error["provider"]) == (
            "llm",
            "llm_failed",
            "fake-llm",
        )
        recv_until(ws, lambda m: m["type"] == "metrics")
        send_audio(ws, UTTERANCE)  # the page goes on listening
        recv_until(ws, lambda m: m["type"] == "error")
        recv_until(ws, lambda m: m["type"] == "metrics")
        with httpx.Client(trust_env=False) as client:
            scrape = client.get(server.url + "/metrics").text
    assert metric(scrape, "avatarkit_errors_total", stage="llm", provider="fake-llm") == 2
    assert metric(scrape, "avatarkit_turns_total", input="spoken") == 2
    assert factory.stts[0].finals == ["hello there", "again"]


def test_spoken_turns_spend_the_pages_message_budget(serve: Callable[..., ServerThread]) -> None:
    # start and mic_start spend two of the three tokens; the tokens never come back in the test
    limits = Limits(messages_per_second=0.0001, message_burst=3)
    factory = Factory(["hello there", "flood"], ["Hi."], held=False)
    server = serve(factory, limits=limits)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        send_audio(ws, UTTERANCE)
        recv_until(ws, lambda m: m["type"] == "metrics")
        send_audio(ws, UTTERANCE)
        refused, _ = recv_until(ws, lambda m: m["type"] == "error")
        assert (refused["stage"], refused["code"]) == ("rate", "rate_limited")
    assert factory.stts[0].finals == ["hello there", "flood"]  # heard, but not answered
    assert history(factory.sessions[0]) == [("user", "hello there"), ("assistant", "Hi.")]


# -- metrics ----------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_count_spoken_turns_and_voice_figures(
    serve: Callable[..., ServerThread],
) -> None:
    factory = Factory(["hello there", "how are you"], ["Hi."], held=False)
    server = serve(factory)
    with ws_connect(server) as ws:
        start_with_mic(ws)
        for _ in range(2):
            send_audio(ws, UTTERANCE)
            recv_until(ws, lambda m: m["type"] == "voice_metrics")
        ws.send(json.dumps({"type": "send", "text": "typed"}))
        recv_until(ws, lambda m: m["type"] == "metrics")
        with httpx.Client(trust_env=False) as client:
            scrape = client.get(server.url + "/metrics").text
    assert metric(scrape, "avatarkit_turns_total", input="spoken") == 2
    assert metric(scrape, "avatarkit_turns_total", input="typed") == 1
    assert metric(scrape, "avatarkit_turns_total") == 3
    for name in ("final_transcript", "first_token", "first_speech"):
        assert metric(scrape, f"avatarkit_voice_to_{name}_seconds_count") == 2, name
        assert metric(scrape, f"avatarkit_voice_to_{name}_seconds_sum") > 0, name


RECORD = """
import sys
from avatarkit.events import ErrorEvent, TurnMetrics, VoiceMetrics
from avatarkit.errors import ProviderError
from avatarkit.serve.metrics import ServeMetrics

metrics = ServeMetrics()
assert metrics.multiprocess
for turn in range(int(sys.argv[1])):
    metrics.record_event(TurnMetrics(turn, 0.2, 0.4, 1.0, 1, False), "spoken")
    metrics.record_event(VoiceMetrics(turn, 0.3, 0.5, 0.7), "spoken")
metrics.record_event(TurnMetrics(99, 0.2, 0.4, 1.0, 1, True), "typed")
metrics.record_event(ErrorEvent(99, "stt", "x", ProviderError("x", provider="deepgram")))
if sys.argv[1] == "0":
    sys.stdout.write(metrics.exposition()[0].decode())
"""


def test_voice_metrics_add_up_across_processes(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (as ``--workers N`` sets it) each process writes its own
    figures and one scrape adds them all up."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    script = textwrap.dedent(RECORD)
    for turns in ("2", "3"):
        subprocess.run([sys.executable, "-c", script, turns], env=env, check=True, timeout=120)
    scrape = subprocess.run(
        [sys.executable, "-c", script, "0"],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    assert metric(scrape, "avatarkit_turns_total", input="spoken") == 5
    assert metric(scrape, "avatarkit_turns_total", input="typed") == 3
    assert metric(scrape, "avatarkit_voice_to_first_speech_seconds_count") == 5
    assert metric(scrape, "avatarkit_voice_to_final_transcript_seconds_sum") == pytest.approx(1.5)
    assert metric(scrape, "avatarkit_errors_total", stage="stt", provider="deepgram") == 3


# -- SpokenTurns on its own (asyncio and trio) --------------------------------------------------


class Admission:
    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.turns: list[QueuedTurn] = []

    async def __call__(self, turn: QueuedTurn) -> bool:
        self.turns.append(turn)
        return self.accept


async def test_a_spoken_turn_waits_for_the_driver_and_returns_its_reply() -> None:
    admission = Admission(True)
    spoken = SpokenTurns(admission, TurnGate())
    replies: list[str] = []
    async with anyio.create_task_group() as tg:

        async def say_it() -> None:
            replies.append(await spoken.send("hello"))

        tg.start_soon(say_it)
        await anyio.wait_all_tasks_blocked()
        [turn] = admission.turns
        assert (turn.text, turn.input, turn.use_llm) == ("hello", "spoken", True)
        assert replies == []  # not before the driver has run it
        turn.reply = "Hi."
        turn.done.set()
    assert replies == ["Hi."]


async def test_a_refused_spoken_turn_returns_at_once_and_a_failed_one_raises() -> None:
    assert await SpokenTurns(Admission(False), TurnGate()).send("hello") == ""
    admission = Admission(True)
    spoken = SpokenTurns(admission, TurnGate())
    raised: list[BaseException] = []

    async def say_it() -> None:
        try:
            await spoken.say("the rest")
        except ProviderError as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(say_it)
        await anyio.wait_all_tasks_blocked()
        [turn] = admission.turns
        assert (turn.use_llm, turn.input) == (False, "spoken")
        turn.error = ProviderError("down", provider="fake")
        turn.done.set()
    assert raised == [turn.error]


# -- the drain's close: a page whose session is still starting ----------------------------------


class SlowStart(FakeTextRenderer):
    """A renderer whose start never finishes (a cloud avatar that is slow to come up)."""

    def __init__(self) -> None:
        super().__init__()
        self.starting = threading.Event()

    async def start(self) -> None:
        self.starting.set()
        await anyio.sleep_forever()


def test_a_drain_while_a_session_starts_closes_it_without_an_error(
    serve: Callable[..., ServerThread],
) -> None:
    renderers: list[SlowStart] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def factory() -> AvatarSession:
        loops.append(asyncio.get_running_loop())
        renderers.append(SlowStart())
        return AvatarSession(llm=FakeLLM(["Hi."]), renderer=renderers[-1])

    server = serve(factory)
    with ws_connect(server) as ws:
        recv_until(ws, lambda m: m["type"] == "hello")
        ws.send(json.dumps({"type": "start"}))
        while not renderers or not renderers[0].starting.wait(0.05):
            pass
        state = server.app.state.avatarkit
        asyncio.run_coroutine_threadsafe(state.drain(5), loops[0]).result(timeout=60)
        code, seen = closed_with(ws)
        assert code == 1012
    assert [m for m in seen if m["type"] == "error"] == []  # a drain is not a failed start
    assert renderers[0].closed == 1
    assert state.active == 0
    with httpx.Client(trust_env=False) as client:
        scrape = client.get(server.url + "/metrics").text
    assert metric(scrape, "avatarkit_errors_total") == 0


def test_both_turn_series_exist_before_any_turn(serve: Callable[..., ServerThread]) -> None:
    server = serve(Factory([], ["Hi."], held=False))
    with httpx.Client(trust_env=False) as client:
        scrape = client.get(server.url + "/metrics").text
    samples = {
        sample.labels["input"]: sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "avatarkit_turns_total"
    }
    assert samples == {"typed": 0.0, "spoken": 0.0}
