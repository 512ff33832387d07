"""One page's connection driven in memory (no server), on asyncio and trio: random sequences of
``send``, ``interrupt`` and pauses against a renderer whose ``interrupt`` takes a while, as a
cloud avatar's does. Invariants: no utterance starts while an interrupt is in flight (so an
interrupt never lands on a later turn), at most one interrupt is in flight, the queue stays
bounded, turns run in the order sent, and leaving closes everything once."""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from avatarkit import AvatarSession
from avatarkit.serve.auth import Auth
from avatarkit.serve.connection import Limits, serve_page
from avatarkit.serve.state import ServeState
from avatarkit.testing import FakeLLM


class MemorySocket:
    """The parts of a Starlette WebSocket that a connection uses, in memory."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self.sent: list[dict[str, Any]] = []
        self.headers = Headers(raw=[])
        self.client = None
        self.ready = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self._receive.receive()

    async def send(self, message: dict[str, Any]) -> None:
        if "text" in message:
            self.sent.append(json.loads(message["text"]))
            if self.sent[-1]["type"] == "ready":
                self.ready.set()

    def push(self, data: dict[str, Any]) -> None:
        self._send.send_nowait({"type": "websocket.receive", "text": json.dumps(data)})

    def leave(self) -> None:
        self._send.send_nowait({"type": "websocket.disconnect", "code": 1001})

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


class LaggingRenderer:
    """Speaks text (2 ms a character, or until interrupted); ``interrupt`` takes 5 ms to reach
    the service. Logs begin/end of every interrupt and the start of every utterance."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.closed = 0
        self._cut = anyio.Event()

    async def speak_text(self, text: str) -> None:
        self.log.append(("speak", text))
        self._cut = anyio.Event()
        with anyio.move_on_after(len(text) * 0.002):
            await self._cut.wait()

    async def interrupt(self) -> None:
        self.log.append(("interrupt", "begin"))
        await anyio.sleep(0.005)
        self._cut.set()
        self.log.append(("interrupt", "end"))

    async def close(self) -> None:
        self.closed += 1


actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 99)),
        st.tuples(st.just("interrupt"), st.just(0)),
        st.tuples(st.just("sleep"), st.integers(0, 25)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=actions)
async def test_random_sends_and_interrupts_keep_the_invariants(
    script: list[tuple[str, int]],
) -> None:
    renderer = LaggingRenderer()
    sessions: list[AvatarSession] = []

    def factory() -> AvatarSession:
        replies = [f"Reply number {i}. It has a second sentence." for i in range(200)]
        sessions.append(AvatarSession(llm=FakeLLM(replies), renderer=renderer))
        return sessions[-1]

    socket = MemorySocket()
    state = ServeState(1, auth=Auth())
    limits = Limits(messages_per_second=1000, message_burst=1000)
    sent_texts: list[str] = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: serve_page(socket, factory, limits=limits, title="t", state=state)  # type: ignore[arg-type]
            )
            socket.push({"type": "start"})
            await socket.ready.wait()
            for kind, value in script:
                if kind == "send":
                    sent_texts.append(f"message {len(sent_texts)}: {value}")
                    socket.push({"type": "send", "text": sent_texts[-1]})
                elif kind == "interrupt":
                    socket.push({"type": "interrupt"})
                else:
                    await anyio.sleep(value / 1000)
            await anyio.sleep(0.3)  # let what is queued run
            socket.leave()
    socket.close()

    # No utterance starts while an interrupt is in flight, and interrupts never overlap.
    in_flight = False
    for what, detail in renderer.log:
        if what == "interrupt":
            assert in_flight == (detail == "end"), renderer.log
            in_flight = detail == "begin"
        else:
            assert not in_flight, renderer.log
    # Turns ran in the order sent, each message at most once; refusals were "busy" only.
    said = [m.content for m in sessions[0].history if m.role == "user"]
    positions = [sent_texts.index(text) for text in said]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    errors = socket.of("error")
    assert all(e["code"] == "queue_full" for e in errors), errors
    assert len(said) + len(errors) <= len(sent_texts)
    metrics = socket.of("metrics")
    assert [m["turn"] for m in metrics] == list(range(1, len(metrics) + 1))
    # Leaving closed the session and freed the slot, once.
    assert renderer.closed == 1
    assert sessions[0].state == "closed"
    assert state.active == 0
    assert state.pages == set()
