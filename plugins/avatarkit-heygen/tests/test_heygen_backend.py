"""Backend mode: the application's callbacks, and backend_url against a loopback backend that
holds the HeyGen key and forwards to the fake HeyGen API."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

from avatarkit import ProviderError, ProviderHTTPError, ProviderTimeout, ViewerConnection
from avatarkit.errors import ConfigError
from avatarkit_heygen import HeyGenRenderer, HeyGenSession, HeyGenTaskResult

from .conftest import API_KEY, BACKEND_TOKEN, FakeBackend, FakeHeyGen, cancelled_once


class AppBackend:
    """Callbacks an embedding application would write; they record what they were asked."""

    def __init__(self, *, duration_ms: float | None = 10, fail: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.duration_ms = duration_ms
        self.fail = fail

    def _check(self, name: str) -> None:
        if self.fail == name:
            raise RuntimeError(f"{name} exploded")

    async def create_session(self) -> HeyGenSession:
        self.calls.append(("create_session",))
        self._check("create_session")
        return HeyGenSession("app-sess-1", "wss://127.0.0.1:7881", "viewer-jwt")

    async def send_task(self, session_id: str, text: str) -> HeyGenTaskResult:
        self.calls.append(("send_task", session_id, text))
        self._check("send_task")
        return HeyGenTaskResult(f"t{len(self.calls)}", self.duration_ms)

    async def interrupt_session(self, session_id: str) -> None:
        self.calls.append(("interrupt_session", session_id))

    async def keep_alive_session(self, session_id: str) -> None:
        self.calls.append(("keep_alive_session", session_id))

    async def close_session(self, session_id: str) -> None:
        self.calls.append(("close_session", session_id))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def renderer(self, **options: Any) -> HeyGenRenderer:
        options.setdefault("lead_time", 0.0)
        return HeyGenRenderer(
            create_session=self.create_session,
            send_task=self.send_task,
            interrupt_session=self.interrupt_session,
            close_session=self.close_session,
            keep_alive_session=self.keep_alive_session,
            **options,
        )


async def wait_for(predicate: Any, limit: float = 5.0) -> None:
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the fake servers change state in a thread
            await anyio.sleep(0.01)


# -- callbacks -------------------------------------------------------------------------------


async def test_callbacks_run_the_session() -> None:
    app = AppBackend()
    seen: list[ViewerConnection] = []
    async with app.renderer(on_connection=seen.append, keep_alive=False) as renderer:
        assert renderer.viewer == ViewerConnection(
            "wss://127.0.0.1:7881", "viewer-jwt", "app-sess-1"
        )
        await renderer.speak_text("First.")
        await renderer.speak_text("Second.")
        await renderer.interrupt()
    assert seen == [ViewerConnection("wss://127.0.0.1:7881", "viewer-jwt", "app-sess-1")]
    assert app.calls == [
        ("create_session",),
        ("send_task", "app-sess-1", "First."),
        ("send_task", "app-sess-1", "Second."),
        ("interrupt_session", "app-sess-1"),
        ("close_session", "app-sess-1"),
    ]


async def test_callback_keep_alive_while_idle() -> None:
    app = AppBackend()
    async with app.renderer(keep_alive_interval=0.05):
        await wait_for(lambda: app.names().count("keep_alive_session") >= 2)
    assert app.names()[-1] == "close_session"


async def test_a_failing_callback_is_a_provider_error_naming_it_and_the_session_closes() -> None:
    app = AppBackend(fail="send_task")
    async with app.renderer(keep_alive=False) as renderer:
        with pytest.raises(ProviderError, match="send_task callback failed: RuntimeError"):
            await renderer.speak_text("Hello.")
    assert app.names() == ["create_session", "send_task", "close_session"]


async def test_a_failing_create_session_leaves_nothing_to_close() -> None:
    app = AppBackend(fail="create_session")
    with pytest.raises(ProviderError, match="create_session callback failed"):
        await app.renderer().start()
    assert app.names() == ["create_session"]


async def test_cancellation_closes_the_session_through_the_callback() -> None:
    app = AppBackend(duration_ms=60_000)
    async with cancelled_once(lambda: "send_task" in app.names()) as scope:
        async with app.renderer(keep_alive=False) as renderer:
            await renderer.speak_text("A very long sentence.")
    assert scope.cancelled_caught
    assert app.names() == ["create_session", "send_task", "close_session"]


async def test_create_session_must_return_a_session() -> None:
    async def create_session() -> Any:
        return {"session_id": "x"}

    async def send_task(session_id: str, text: str) -> HeyGenTaskResult:
        return HeyGenTaskResult()

    renderer = HeyGenRenderer(create_session=create_session, send_task=send_task)
    with pytest.raises(ProviderError, match="must return a HeyGenSession"):
        await renderer.start()


def test_callbacks_need_both_create_session_and_send_task() -> None:
    async def create_session() -> HeyGenSession:
        raise AssertionError

    with pytest.raises(ConfigError, match="create_session and send_task"):
        HeyGenRenderer(create_session=create_session)


def test_session_repr_hides_the_token() -> None:
    assert "viewer-jwt" not in repr(HeyGenSession("s", "wss://x", "viewer-jwt"))


# -- backend_url -----------------------------------------------------------------------------


def backend_renderer(backend: FakeBackend, **options: Any) -> HeyGenRenderer:
    options.setdefault("lead_time", 0.0)
    options.setdefault("retry_backoff", 0.0)
    options.setdefault("backend_token", BACKEND_TOKEN)
    return HeyGenRenderer(backend_url=backend.url, **options)


async def test_backend_url_runs_the_session_and_the_key_stays_in_the_backend(
    heygen: FakeHeyGen, backend: FakeBackend
) -> None:
    async with backend_renderer(backend, keep_alive_interval=0.05) as renderer:
        assert renderer.viewer is not None
        assert renderer.viewer.session_id == "sess-0001"
        assert renderer.viewer.token == "lk-viewer-sess-0001"
        await renderer.speak_text("One.")
        await renderer.speak_text("Two.")
        await renderer.interrupt()
        await wait_for(lambda: "keep_alive" in backend.ops())
    ops = [op for op in backend.ops() if op != "keep_alive"]
    assert ops == ["session", "task", "task", "interrupt", "close"]
    assert [c.body for c in backend.calls if c.op == "task"] == [
        {"session_id": "sess-0001", "text": "One."},
        {"session_id": "sess-0001", "text": "Two."},
    ]
    assert backend.calls[0].body == {}
    for call in backend.calls:
        assert call.headers["authorization"] == f"Bearer {BACKEND_TOKEN}"
        assert API_KEY not in json.dumps(call.headers) + json.dumps(call.body)
    assert heygen.texts() == ["One.", "Two."]
    assert heygen.ops("new", "start", "task", "interrupt", "stop") == [
        "new",
        "start",
        "task",
        "task",
        "interrupt",
        "stop",
    ]
    assert "keep_alive" in heygen.ops()
    assert heygen.open_sessions() == []


async def test_backend_wrong_token_says_to_check_backend_token(
    heygen: FakeHeyGen, backend: FakeBackend
) -> None:
    renderer = backend_renderer(backend, backend_token="nope-token")
    with pytest.raises(ProviderHTTPError, match="check backend_token") as info:
        await renderer.start()
    assert "nope-token" not in str(info.value)
    assert heygen.ops() == []


async def test_backend_forwards_the_concurrent_limit(
    heygen: FakeHeyGen, backend: FakeBackend
) -> None:
    heygen.max_sessions = 0
    with pytest.raises(ProviderHTTPError, match="concurrent-session limit"):
        await backend_renderer(backend).start()


async def test_backend_session_already_gone_on_close_is_fine(
    heygen: FakeHeyGen, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = backend_renderer(backend, keep_alive=False)
    await renderer.start()
    heygen.sessions["sess-0001"] = "stopped"
    with caplog.at_level(logging.INFO, logger="avatarkit_heygen"):
        await renderer.close()
    assert backend.ops() == ["session", "close"]
    assert "already ended" in caplog.text


async def test_backend_error_on_task_is_reported(heygen: FakeHeyGen, backend: FakeBackend) -> None:
    async with backend_renderer(backend, keep_alive=False) as renderer:
        heygen.fail("task", 500, {"code": 500, "message": "render farm down"})
        with pytest.raises(ProviderHTTPError, match=r"render farm down.*try again later"):
            await renderer.speak_text("Hello.")
    assert backend.ops() == ["session", "task", "close"]  # a task is never sent twice


async def test_a_hung_send_task_callback_times_out() -> None:
    async def create_session() -> HeyGenSession:
        return HeyGenSession("s", "wss://127.0.0.1:7881", "jwt")

    async def send_task(session_id: str, text: str) -> HeyGenTaskResult:
        await anyio.sleep_forever()
        raise AssertionError

    renderer = HeyGenRenderer(
        create_session=create_session, send_task=send_task, task_timeout=0.1, keep_alive=False
    )
    async with renderer:
        with pytest.raises(ProviderTimeout, match="send_task callback did not finish"):
            await renderer.speak_text("Hello.")
