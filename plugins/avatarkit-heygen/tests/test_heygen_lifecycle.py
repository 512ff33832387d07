"""The heygen renderer's lifecycle under faults at every request it makes (the fake HeyGen).

The matrix runs one conversation (start, speak, interrupt, idle with keep-alive, speak, close)
and injects one fault at one request: the caller cancelled while the request is in flight,
``close()`` called from another task while it is in flight (the HTTP client must not close under
it), a 200 whose body is a gateway's HTML page, a 5xx. Whatever happens, every session HeyGen
created is stopped, and once ``close()`` has returned no request reaches HeyGen any more, the
keep-alive has finished and the HTTP client is closed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from avatarkit.errors import AvatarKitError, ProviderError, SessionError
from avatarkit_heygen import HeyGenRenderer
from avatarkit_heygen.heygen import MAX_TASK_CHARS

from .conftest import API_KEY, AVATAR, BACKEND_TOKEN, FakeBackend, FakeHeyGen

#: Every request the renderer makes, in the order a conversation reaches them.
OPS = ["new", "start", "task", "interrupt", "keep_alive", "stop"]
FAULTS = ["cancel", "close", "html", "5xx"]
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
#: How long the fake holds a request that a fault is injected into (ended early at teardown).
HOLD = 0.5
KEEP_ALIVE = 0.05
SETTLE = 0.2  # for the fake's thread to read what was sent before close() returned


def make(heygen: FakeHeyGen, **options: Any) -> HeyGenRenderer:
    options.setdefault("retry_backoff", 0.0)
    options.setdefault("lead_time", 0.0)
    options.setdefault("avatar_id", AVATAR)
    options.setdefault("keep_alive_interval", KEEP_ALIVE)
    return HeyGenRenderer(api_key=SecretStr(API_KEY), base_url=heygen.base_url, **options)


async def wait_for(predicate: Any, limit: float = 10.0) -> None:
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the fake's state changes in its thread
            await anyio.sleep(0.005)


async def conversation(renderer: HeyGenRenderer, heygen: FakeHeyGen) -> None:
    async with renderer:
        await renderer.speak_text("Hello there.")
        await renderer.interrupt()
        await wait_for(lambda: "keep_alive" in heygen.ops() or renderer._closed)
        await renderer.speak_text("Once more.")


def assert_nothing_left(renderer: HeyGenRenderer, heygen: FakeHeyGen) -> None:
    """Every created session stopped; keep-alive finished; the HTTP client closed."""
    created = {str(c["session_id"]) for c in heygen.bodies("stop")}
    assert heygen.open_sessions() == [], heygen.sessions
    assert set(heygen.sessions) <= created
    task = renderer._keep_alive_task
    assert task is None or task._done.is_set()
    channel: Any = renderer._channel
    service = channel.api if hasattr(channel, "api") else channel.client
    assert service._http.is_closed
    assert renderer.session is None
    assert renderer.viewer is None


async def assert_silent_after_close(heygen: FakeHeyGen) -> None:
    """No request comes any more. The client side is checked strictly (client closed, tasks
    done); this is the end-to-end view, after letting the fake's thread read what was sent
    before close() returned (a loaded machine can be slow to)."""
    await anyio.sleep(SETTLE)
    before = len(heygen.calls)
    await anyio.sleep(6 * KEEP_ALIVE)  # several keep-alive intervals: none may come
    assert heygen.ops()[before:] == [], heygen.ops()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("op", OPS)
async def test_every_session_is_stopped_and_nothing_runs_after_close(
    heygen: FakeHeyGen, op: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL)  # failures to keep alive etc. are logged; not the point
    renderer = make(heygen)
    if fault == "html":
        heygen.fail(op, 200, HTML, times=2, content_type="text/html")
    elif fault == "5xx":
        heygen.fail(op, 502, HTML, times=1, content_type="text/html")
        heygen.fail(op, 500, {"code": 500, "message": "internal error"}, times=1)
    else:
        heygen.hold[op] = HOLD
    outcome: list[BaseException | None] = []
    injected_at: list[float] = []

    async def run(scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await conversation(renderer, heygen)
            except AvatarKitError as exc:
                outcome.append(exc)
                return
            outcome.append(None)

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, scope)
        if fault in ("cancel", "close"):
            await wait_for(lambda: op in heygen.ops())
            injected_at.append(time.monotonic())
            if fault == "cancel":
                scope.cancel()
            else:
                await renderer.close()
                assert_nothing_left(renderer, heygen)  # right when close() returns
                await assert_silent_after_close(heygen)
    assert outcome == [] or outcome[0] is None or isinstance(outcome[0], AvatarKitError)
    # let HeyGen finish what it was asked (a held `new` creates its session even if the
    # caller gave up) before judging
    await wait_for(lambda: all(c.answered_at is not None for c in heygen.calls))
    assert_nothing_left(renderer, heygen)
    await assert_silent_after_close(heygen)
    if injected_at:  # the fault landed while the request was in flight
        first = next(c for c in heygen.calls if c.op == op)
        assert first.answered_at is None or injected_at[0] < first.answered_at
    if fault == "close" and op in ("new", "start"):
        assert isinstance(outcome[0], SessionError)


@pytest.mark.parametrize("fault", ["cancel", "close"])
@pytest.mark.parametrize("op", OPS)
async def test_backend_mode_stops_every_session_and_nothing_runs_after_close(
    heygen: FakeHeyGen, backend: FakeBackend, op: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same through the application's backend (``backend_url``): HeyGen's request is held,
    so the backend's answer is, while the fault lands."""
    caplog.set_level(logging.CRITICAL)
    renderer = HeyGenRenderer(
        backend_url=backend.url,
        backend_token=BACKEND_TOKEN,
        retry_backoff=0.0,
        lead_time=0.0,
        keep_alive_interval=KEEP_ALIVE,
    )
    heygen.hold[op] = HOLD
    outcome: list[BaseException | None] = []

    async def run(scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await conversation(renderer, heygen)
            except AvatarKitError as exc:
                outcome.append(exc)
                return
            outcome.append(None)

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, scope)
        await wait_for(lambda: op in heygen.ops())
        if fault == "cancel":
            scope.cancel()
        else:
            await renderer.close()
            assert_nothing_left(renderer, heygen)
    assert outcome == [] or outcome[0] is None or isinstance(outcome[0], AvatarKitError)
    await wait_for(lambda: all(c.answered_at is not None for c in heygen.calls))
    assert_nothing_left(renderer, heygen)
    await assert_silent_after_close(heygen)


# -- the defects the matrix covers, one by one ---------------------------------------------------


async def test_close_while_new_is_in_flight_stops_the_session_it_creates(
    heygen: FakeHeyGen,
) -> None:
    heygen.hold["new"] = HOLD
    renderer = make(heygen)
    async with anyio.create_task_group() as tg:

        async def start() -> None:
            with pytest.raises(SessionError, match="closed while it was starting"):
                await renderer.start()

        tg.start_soon(start)
        await wait_for(lambda: heygen.ops() == ["new"])
        await renderer.close()
        assert heygen.ops() == ["new", "stop"]
        assert heygen.open_sessions() == []


async def test_cancelled_during_new_still_stops_the_created_session(heygen: FakeHeyGen) -> None:
    heygen.hold["new"] = HOLD
    renderer = make(heygen)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(renderer.start)
            await wait_for(lambda: heygen.ops() == ["new"])
            scope.cancel()
    assert heygen.ops() == ["new", "stop"]
    assert heygen.open_sessions() == []


@pytest.mark.parametrize("missing", ["url", "access_token"])
async def test_new_without_livekit_credentials_stops_the_session(
    heygen: FakeHeyGen, missing: str
) -> None:
    answer = {
        "code": 100,
        "data": {"session_id": "sess-0001", "url": "wss://x", "access_token": "t"},
    }
    del answer["data"][missing]  # type: ignore[attr-defined]
    heygen.sessions["sess-0001"] = "new"  # HeyGen created (and bills) it
    heygen.fail("new", 200, answer)
    with pytest.raises(ProviderError, match=f"without '{missing}'"):
        await make(heygen).start()
    assert heygen.ops() == ["new", "stop"]
    assert heygen.open_sessions() == []


async def test_interrupt_racing_close_returns_quietly(heygen: FakeHeyGen) -> None:
    renderer = make(heygen)
    await renderer.start()
    heygen.hold["interrupt"] = HOLD
    async with anyio.create_task_group() as tg:
        tg.start_soon(renderer.interrupt)  # must not raise into the task group
        await wait_for(lambda: "interrupt" in heygen.ops())
        await renderer.close()
    assert heygen.open_sessions() == []
    await renderer.interrupt()  # after close: nothing to do, no error


async def test_speak_racing_close_returns(heygen: FakeHeyGen) -> None:
    renderer = make(heygen)
    await renderer.start()
    heygen.hold["task"] = HOLD
    async with anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak_text, "Hello there.")
        await wait_for(lambda: "task" in heygen.ops())
        await renderer.close()
    assert heygen.open_sessions() == []


async def test_a_stop_answered_with_an_html_page_is_retried(heygen: FakeHeyGen) -> None:
    async with make(heygen):
        heygen.fail("stop", 200, HTML, content_type="text/html")
    assert heygen.ops("stop") == ["stop", "stop"]
    assert heygen.open_sessions() == []


async def test_two_concurrent_starts_create_one_session(heygen: FakeHeyGen) -> None:
    renderer = make(heygen)
    async with anyio.create_task_group() as tg:
        tg.start_soon(renderer.start)
        tg.start_soon(renderer.start)
    assert heygen.ops("new") == ["new"]
    await renderer.close()
    assert heygen.open_sessions() == []


async def test_repeat_text_over_the_limit_is_a_clear_error(heygen: FakeHeyGen) -> None:
    async with make(heygen) as renderer:
        await renderer.speak_text("x" * MAX_TASK_CHARS)  # at the limit: sent
        with pytest.raises(ProviderError, match=rf"{MAX_TASK_CHARS + 1} characters.*split"):
            await renderer.speak_text("y" * (MAX_TASK_CHARS + 1))
    assert [len(t) for t in heygen.texts()] == [MAX_TASK_CHARS]


async def test_a_backend_session_without_livekit_credentials_is_closed() -> None:
    from avatarkit.testing import Responder, loopback_server

    def handler(r: Responder) -> None:
        if r.request.path.endswith("/session"):
            r.send(200, {"session_id": "sess-x"})  # started by the backend, but unusable
        else:
            r.send(200, {"ok": True})

    with loopback_server(handler) as server:
        renderer = HeyGenRenderer(backend_url=server.url + "/heygen", retry_backoff=0.0)
        with pytest.raises(ProviderError, match="livekit_url, livekit_token"):
            await renderer.start()
        paths = [(r.path, r.json()) for r in server.requests]
    assert paths == [("/heygen/session", {}), ("/heygen/close", {"session_id": "sess-x"})]


async def test_close_from_the_on_connection_callback_does_not_deadlock(heygen: FakeHeyGen) -> None:
    holder: list[HeyGenRenderer] = []

    async def on_connection(viewer: object) -> None:
        await holder[0].close()

    renderer = make(heygen, on_connection=on_connection)
    holder.append(renderer)
    with anyio.fail_after(10), pytest.raises(SessionError, match="closed while"):
        await renderer.start()
    assert heygen.open_sessions() == []
