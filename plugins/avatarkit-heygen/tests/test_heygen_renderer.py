"""The heygen renderer against the fake HeyGen API on 127.0.0.1 (direct mode, httpx)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import SecretStr

from avatarkit import ProviderHTTPError, ProviderTimeout, SessionError, ViewerConnection
from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError
from avatarkit_heygen import HeyGenRenderer, HeyGenSessionEnded

from .conftest import API_KEY, AVATAR, FakeHeyGen, cancelled_once


def make(heygen: FakeHeyGen, **options: Any) -> HeyGenRenderer:
    options.setdefault("retry_backoff", 0.0)
    options.setdefault("lead_time", 0.0)
    options.setdefault("avatar_id", AVATAR)
    return HeyGenRenderer(api_key=SecretStr(API_KEY), base_url=heygen.base_url, **options)


async def wait_for(predicate: Any, limit: float = 5.0) -> None:
    """Poll the fake server's state, which changes in its own thread (bounded)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - no event crosses the server's thread
            await anyio.sleep(0.01)


# -- lifecycle -------------------------------------------------------------------------------


async def test_start_creates_and_starts_a_session_with_our_options(heygen: FakeHeyGen) -> None:
    seen: list[ViewerConnection] = []
    renderer = make(
        heygen,
        quality="high",
        voice_id="v-42",
        voice_rate=1.2,
        voice_emotion="friendly",
        language="en",
        activity_idle_timeout=300,
        on_connection=seen.append,
    )
    assert renderer.viewer is None
    await renderer.start()
    try:
        assert heygen.ops() == ["new", "start"]
        assert heygen.bodies("new") == [
            {
                "avatar_id": AVATAR,
                "version": "v2",
                "quality": "high",
                "voice": {"voice_id": "v-42", "rate": 1.2, "emotion": "friendly"},
                "language": "en",
                "activity_idle_timeout": 300,
            }
        ]
        assert heygen.calls[0].headers["x-api-key"] == API_KEY
        assert heygen.bodies("start") == [{"session_id": "sess-0001"}]
        viewer = renderer.viewer
        expected = ViewerConnection("wss://127.0.0.1:7881", "lk-viewer-sess-0001", "sess-0001")
        assert viewer == expected
        assert seen == [viewer]
        assert "lk-viewer" not in repr(viewer)
    finally:
        await renderer.close()
    assert heygen.ops() == ["new", "start", "stop"]
    assert heygen.open_sessions() == []
    assert renderer.viewer is None


async def test_close_stops_exactly_once_and_start_after_close_is_refused(
    heygen: FakeHeyGen,
) -> None:
    renderer = make(heygen)
    async with renderer:
        pass
    await renderer.close()
    assert heygen.ops("stop") == ["stop"]
    with pytest.raises(SessionError):
        await renderer.start()


async def test_async_on_connection_callback_is_awaited(heygen: FakeHeyGen) -> None:
    got: list[str | None] = []

    async def on_connection(viewer: ViewerConnection) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(viewer.session_id)

    async with make(heygen, on_connection=on_connection):
        assert got == ["sess-0001"]


async def test_a_failing_on_connection_callback_stops_the_session(heygen: FakeHeyGen) -> None:
    def on_connection(viewer: ViewerConnection) -> None:
        raise RuntimeError("page not ready")

    with pytest.raises(RuntimeError):
        await make(heygen, on_connection=on_connection).start()
    assert heygen.ops() == ["new", "start", "stop"]
    assert heygen.open_sessions() == []


async def test_cancelled_during_start_leaves_no_session(heygen: FakeHeyGen) -> None:
    heygen.fail("start", 500, {"code": 500, "message": "internal"}, times=1)
    renderer = make(heygen, retry_backoff=5.0)
    # cancelled once the first start was refused: while its answer comes back, or while
    # backing off before the second attempt
    async with cancelled_once(lambda: heygen.ops() == ["new", "start"]) as scope:
        await renderer.start()
    assert scope.cancelled_caught
    assert heygen.ops() == ["new", "start", "stop"]
    assert heygen.open_sessions() == []


async def test_cancellation_while_speaking_stops_the_session(heygen: FakeHeyGen) -> None:
    heygen.ms_per_char = 1000
    renderer = make(heygen)
    async with cancelled_once(lambda: "task" in heygen.ops()) as scope:
        async with renderer:
            await renderer.speak_text("This takes a long time to say.")
    assert scope.cancelled_caught
    assert heygen.ops() == ["new", "start", "task", "stop"]
    assert heygen.open_sessions() == []


async def test_an_error_in_the_body_still_stops_the_session(heygen: FakeHeyGen) -> None:
    with pytest.raises(ZeroDivisionError):
        async with make(heygen):
            _ = 1 / 0
    assert heygen.open_sessions() == []


async def test_session_already_ended_by_heygen_is_closed_quietly(
    heygen: FakeHeyGen, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = make(heygen)
    await renderer.start()
    heygen.sessions["sess-0001"] = "stopped"  # idle timeout on HeyGen's side
    with caplog.at_level(logging.INFO, logger="avatarkit_heygen"):
        await renderer.close()
    assert heygen.ops() == ["new", "start", "stop"]
    assert "already ended" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_stop_that_keeps_failing_is_logged_not_raised(
    heygen: FakeHeyGen, caplog: pytest.LogCaptureFixture
) -> None:
    renderer = make(heygen)
    await renderer.start()
    heygen.fail("stop", 500, {"code": 500, "message": "oops"}, times=3)
    with caplog.at_level(logging.ERROR, logger="avatarkit_heygen"):
        await renderer.close()
    assert heygen.ops("stop") == ["stop"] * 3  # stop is safe to repeat: retried
    assert "could not stop HeyGen session sess-0001" in caplog.text


# -- speaking --------------------------------------------------------------------------------


async def test_speak_text_sends_one_repeat_task_and_waits_for_its_duration(
    heygen: FakeHeyGen,
) -> None:
    heygen.ms_per_char = 5
    async with make(heygen) as renderer:
        before = anyio.current_time()
        await renderer.speak_text("  Hello there, friend.  ")
        waited = anyio.current_time() - before
    task = heygen.bodies("task")[0]
    assert task == {
        "session_id": "sess-0001",
        "text": "Hello there, friend.",
        "task_type": "repeat",
        "task_mode": "async",
    }
    assert waited >= len("Hello there, friend.") * 0.005


async def test_consecutive_sentences_are_queued_lead_time_before_the_end(
    heygen: FakeHeyGen,
) -> None:
    heygen.ms_per_char = 20  # 10 chars -> 0.2 s of speech
    async with make(heygen, lead_time=0.15) as renderer:
        t0 = anyio.current_time()
        await renderer.speak_text("0123456789")
        t1 = anyio.current_time()
        await renderer.speak_text("abcdefghij")
        t2 = anyio.current_time()
    # the second sentence is timed from the end of the first (HeyGen queues it), not from now
    assert t1 - t0 >= 0.2 - 0.15
    assert t2 - t0 >= 0.4 - 0.15
    assert heygen.texts() == ["0123456789", "abcdefghij"]


async def test_without_duration_a_words_per_minute_estimate_is_used(heygen: FakeHeyGen) -> None:
    heygen.report_duration = False
    async with make(heygen, words_per_minute=600) as renderer:  # 0.1 s per word
        before = anyio.current_time()
        await renderer.speak_text("one two three")
        waited = anyio.current_time() - before
    assert waited >= 0.3


async def test_empty_text_sends_nothing(heygen: FakeHeyGen) -> None:
    async with make(heygen) as renderer:
        await renderer.speak_text("   ")
    assert heygen.ops("task") == []


async def test_speak_before_start_is_a_session_error(heygen: FakeHeyGen) -> None:
    with pytest.raises(SessionError, match="start"):
        await make(heygen).speak_text("Hi.")


async def test_interrupt_calls_heygen_and_releases_speak_text_at_once(heygen: FakeHeyGen) -> None:
    heygen.ms_per_char = 1000  # 30 s of speech
    async with make(heygen) as renderer:
        done = anyio.Event()

        async def speak() -> None:
            await renderer.speak_text("This sentence would take ages.")
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(speak)
            await wait_for(lambda: heygen.ops("task"))
            await anyio.sleep(0.05)
            assert not done.is_set()
            await renderer.interrupt()
            with anyio.fail_after(5):
                await done.wait()
    assert heygen.ops() == ["new", "start", "task", "interrupt", "stop"]
    assert heygen.bodies("interrupt") == [{"session_id": "sess-0001"}]


async def test_interrupt_while_the_task_is_in_flight_silences_it_too(heygen: FakeHeyGen) -> None:
    heygen.task_hang = 0.3
    async with make(heygen) as renderer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(renderer.speak_text, "Late sentence.")
            await wait_for(lambda: heygen.ops("task"))
            await renderer.interrupt()
    # one interrupt for the call, one after the task answered (it may have been queued after)
    assert heygen.ops() == ["new", "start", "task", "interrupt", "interrupt", "stop"]


# -- keep-alive ------------------------------------------------------------------------------


async def test_keep_alive_is_sent_while_idle(heygen: FakeHeyGen) -> None:
    async with make(heygen, keep_alive_interval=0.05):
        await wait_for(lambda: len(heygen.ops("keep_alive")) >= 2)
    assert heygen.bodies("keep_alive")[0] == {"session_id": "sess-0001"}
    assert heygen.ops()[-1] == "stop"
    count = len(heygen.ops("keep_alive"))
    await anyio.sleep(0.15)
    assert len(heygen.ops("keep_alive")) == count  # the loop ended with the session


async def test_keep_alive_can_be_disabled(heygen: FakeHeyGen) -> None:
    async with make(heygen, keep_alive=False, keep_alive_interval=0.02):
        await anyio.sleep(0.2)
    assert heygen.ops("keep_alive") == []


async def test_keep_alive_failure_is_retried_and_not_fatal(heygen: FakeHeyGen) -> None:
    heygen.fail("keep_alive", 500, {"code": 500, "message": "boom"}, times=4)
    async with make(heygen, keep_alive_interval=0.05):
        await wait_for(lambda: len(heygen.ops("keep_alive")) >= 5)


# -- errors ----------------------------------------------------------------------------------


async def test_bad_key_is_a_clear_error_without_the_key(heygen: FakeHeyGen) -> None:
    renderer = HeyGenRenderer(
        api_key="wrong-key-123", base_url=heygen.base_url, avatar_id=AVATAR, retry_backoff=0
    )
    with pytest.raises(ProviderHTTPError) as info:
        await renderer.start()
    message = str(info.value)
    assert info.value.status_code == 401
    assert "api_key" in message
    assert "Unauthorized" in message
    assert "wrong-key-123" not in message
    assert heygen.ops() == ["new"]  # 401 is not retried


async def test_invalid_avatar_names_the_option(heygen: FakeHeyGen) -> None:
    renderer = make(heygen, avatar_id="Nobody_123")
    with pytest.raises(ProviderHTTPError, match=r"avatar 'Nobody_123'.*set avatar_id"):
        await renderer.start()
    assert heygen.ops() == ["new"]


async def test_concurrent_limit_says_what_to_do(heygen: FakeHeyGen) -> None:
    async with make(heygen):
        async with make(heygen):
            with pytest.raises(ProviderHTTPError, match="concurrent-session limit") as info:
                await make(heygen).start()
    assert "stop the account's other streaming sessions" in str(info.value)
    assert info.value.retryable is False
    assert heygen.ops("new") == ["new"] * 3
    assert heygen.open_sessions() == []


async def test_html_gateway_error_is_readable_and_new_is_not_repeated(heygen: FakeHeyGen) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    heygen.fail("new", 502, page, content_type="text/html")
    with pytest.raises(ProviderHTTPError) as info:
        await make(heygen).start()
    assert info.value.status_code == 502
    assert "HTML error page" in str(info.value)
    assert "<html>" not in str(info.value)
    assert heygen.ops() == ["new"]  # HeyGen may have created it: a retry could bill twice


async def test_503_and_429_are_retried_with_backoff_for_every_call(heygen: FakeHeyGen) -> None:
    heygen.fail("new", 503, {"code": 503, "message": "busy"})
    heygen.fail("task", 429, {"error": {"code": "rate_limited", "message": "slow down"}})
    async with make(heygen, retry_backoff=0.01) as renderer:
        await renderer.speak_text("Hi.")
    assert heygen.ops() == ["new", "new", "start", "task", "task", "stop"]


async def test_5xx_on_start_is_retried_then_reported_and_the_session_stopped(
    heygen: FakeHeyGen,
) -> None:
    heygen.fail("start", 500, {"code": 500, "message": "Internal Server Error"}, times=3)
    with pytest.raises(ProviderHTTPError, match=r"server error.*after 3 attempts") as info:
        await make(heygen).start()
    assert info.value.retryable
    assert heygen.ops() == ["new", "start", "start", "start", "stop"]
    assert heygen.open_sessions() == []


async def test_5xx_on_task_is_not_repeated(heygen: FakeHeyGen) -> None:
    heygen.fail("task", 500, {"code": 500, "message": "Internal Server Error"})
    async with make(heygen) as renderer:
        with pytest.raises(ProviderHTTPError, match="server error"):
            await renderer.speak_text("Say this once.")
    assert heygen.ops("task") == ["task"]


async def test_task_timeout(heygen: FakeHeyGen) -> None:
    heygen.task_hang = 5.0
    async with make(heygen, task_timeout=0.2) as renderer:
        with pytest.raises(ProviderTimeout, match=r"task did not answer within 0.2 s"):
            await renderer.speak_text("Hello?")
    assert heygen.ops() == ["new", "start", "task", "stop"]


async def test_expired_session_on_task_says_to_start_a_new_one(heygen: FakeHeyGen) -> None:
    async with make(heygen) as renderer:
        heygen.sessions["sess-0001"] = "stopped"
        with pytest.raises(HeyGenSessionEnded, match=r"has ended.*start a new session"):
            await renderer.speak_text("Anyone there?")


async def test_unreachable_heygen_is_a_connection_error(heygen: FakeHeyGen) -> None:
    renderer = HeyGenRenderer(
        api_key=API_KEY, base_url="http://127.0.0.1:9", avatar_id=AVATAR, retry_backoff=0
    )
    with pytest.raises(ProviderConnectionError, match=r"cannot reach HeyGen.*after 3 attempts"):
        await renderer.start()


async def test_success_body_with_an_error_code_is_an_error(heygen: FakeHeyGen) -> None:
    heygen.fail("new", 200, {"code": 40001, "message": "quota exhausted", "data": None})
    with pytest.raises(ProviderError, match="quota exhausted"):
        await make(heygen).start()


async def test_the_key_never_reaches_logs_or_reprs(
    heygen: FakeHeyGen, caplog: pytest.LogCaptureFixture
) -> None:
    heygen.fail("task", 500, {"code": 500, "message": f"echo {API_KEY}"})
    with caplog.at_level(logging.DEBUG):
        async with make(heygen) as renderer:
            assert API_KEY not in repr(renderer)
            with pytest.raises(ProviderHTTPError) as info:
                await renderer.speak_text("Hi.")
    assert API_KEY not in str(info.value)
    assert API_KEY not in caplog.text


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="give api_key"):
        HeyGenRenderer(avatar_id=AVATAR)
    with pytest.raises(ConfigError, match="only one way"):
        HeyGenRenderer(api_key="k", backend_url="http://127.0.0.1:1", avatar_id=AVATAR)
    with pytest.raises(ConfigError, match="avatar_id is required"):
        HeyGenRenderer(api_key="k")


async def test_media_needs_asyncio_and_a_failed_join_stops_the_session(
    heygen: FakeHeyGen, anyio_backend: str
) -> None:
    renderer = make(heygen, connect_media=True)
    if anyio_backend == "trio":
        with pytest.raises(ProviderError, match="media needs asyncio"):
            await renderer.start()
    else:  # a real join attempt through the livekit SDK; nothing listens there
        with pytest.raises(ProviderConnectionError, match="cannot join the LiveKit room"):
            await renderer.start()
    assert heygen.ops() == ["new", "start", "stop"]
    assert heygen.open_sessions() == []


async def test_retry_after_is_honoured(heygen: FakeHeyGen) -> None:
    heygen.fail(
        "new", 429, {"code": 429, "message": "Too Many Requests"}, headers={"retry-after": "0.3"}
    )
    renderer = make(heygen)
    before = anyio.current_time()
    async with renderer:
        pass
    assert anyio.current_time() - before >= 0.3
    assert heygen.ops("new") == ["new", "new"]


async def test_list_sessions_reads_open_sessions(heygen: FakeHeyGen) -> None:
    from avatarkit_heygen.api import HeyGenAPI

    api = HeyGenAPI(API_KEY, base_url=heygen.base_url)
    try:
        async with make(heygen):
            sessions = await api.list_sessions()
            assert [s["session_id"] for s in sessions] == ["sess-0001"]
        assert await api.list_sessions() == []
    finally:
        await api.aclose()
