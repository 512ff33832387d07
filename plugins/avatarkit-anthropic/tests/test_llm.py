"""The anthropic LLM through the real SDK against a fake Messages API on 127.0.0.1."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest

from avatarkit import Message, ProviderConnectionError, ProviderError, ProviderHTTPError
from avatarkit.errors import ProviderTimeout
from avatarkit.testing import cancel_once
from avatarkit_anthropic.llm import AnthropicLLM

HISTORY = [
    Message("system", "You are terse."),
    Message("user", "Hi"),
    Message("assistant", "Hello."),
    Message("user", "Tell me two things."),
]
PARTS = ["First", " thing.", " Second", " thing", " here."]


def make(fake, **options) -> AnthropicLLM:
    return AnthropicLLM(
        **{"model": "claude-test", "api_key": fake.key, "base_url": fake.url, **options}
    )


async def collect(llm: AnthropicLLM, messages=HISTORY) -> list[str]:
    return [delta async for delta in llm.stream(messages)]


async def collect_cancelled_once_requested(fake, llm: AnthropicLLM) -> None:
    """Collect, cancelled 0.2 s after the fake server has the request (a fixed delay from the
    start could end before a loaded machine had even sent it: nothing was then abandoned)."""
    assert await cancel_once(lambda: bool(fake.requests), lambda: collect(llm), after=0.2)


async def test_streams_a_multi_sentence_reply_as_it_arrives(fake_anthropic, gate) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS, gate=gate, thinking="Hmm.")]
    got = []
    async with make(
        fake_anthropic, temperature=0.2, max_tokens=300, headers={"X-Team": "avatars"}
    ) as llm:
        async for delta in llm.stream(HISTORY):
            got.append(delta)
            gate.open()
    assert got == PARTS  # thinking is not spoken
    assert gate.server_finished_first is False
    [request] = fake_anthropic.requests
    body = request.json()
    assert body["model"] == "claude-test"
    assert body["system"] == "You are terse."
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Tell me two things."},
    ]
    assert (body["max_tokens"], body["temperature"], body["stream"]) == (300, 0.2, True)
    assert request.headers["x-team"] == "avatars"
    assert request.headers["anthropic-version"]


async def test_default_max_tokens_is_sent(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(["Hi."])]
    async with make(fake_anthropic) as llm:
        await collect(llm, [Message("user", "Hi")])
    body = fake_anthropic.requests[0].json()
    assert body["max_tokens"] == 1024
    assert "system" not in body
    assert "temperature" not in body


async def test_connection_dropped_mid_stream(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS, cut_after=2)]
    got: list[str] = []

    async def consume(llm: AnthropicLLM) -> None:
        async for delta in llm.stream(HISTORY):
            got.append(delta)

    async with make(fake_anthropic, max_retries=0) as llm:
        with pytest.raises(ProviderConnectionError, match="dropped in the middle") as info:
            await consume(llm)
    assert got == PARTS[:2]
    assert info.value.provider == "anthropic LLM"


async def test_stream_ending_without_message_stop_is_an_error(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS, end_early=True)]
    async with make(fake_anthropic) as llm:
        with pytest.raises(ProviderConnectionError, match="no message_stop"):
            await collect(llm)


async def test_rate_limit_is_retried_by_the_sdk(fake_anthropic) -> None:
    fake_anthropic.script = [
        # the SDK honours retry-after-ms, so the test backs off 5 ms
        fake_anthropic.error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
            {"retry-after-ms": "5"},
        ),
        fake_anthropic.reply(PARTS),
    ]
    async with make(fake_anthropic, max_retries=2) as llm:
        assert await collect(llm) == PARTS
    assert len(fake_anthropic.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in fake_anthropic.requests] == ["0", "1"]


async def test_overloaded_is_retried_then_reported(fake_anthropic) -> None:
    fake_anthropic.script = [
        fake_anthropic.error(529, "overloaded_error", "Overloaded", {"retry-after-ms": "5"})
    ]
    async with make(fake_anthropic, max_retries=2) as llm:
        with pytest.raises(ProviderHTTPError, match="overloaded, still after 3 attempts") as info:
            await collect(llm)
    assert info.value.status_code == 529
    assert info.value.retryable
    assert len(fake_anthropic.requests) == 3


async def test_bad_key_is_a_clear_error_without_the_key(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS)]
    wrong = "sk-ant-wrong-000000000000"
    async with make(fake_anthropic, api_key=wrong) as llm:
        with pytest.raises(ProviderHTTPError) as info:
            await collect(llm)
    error = info.value
    assert (error.status_code, error.retryable, error.request_id) == (401, False, "req_401")
    assert "ANTHROPIC_API_KEY" in str(error)
    assert "invalid x-api-key" in str(error)
    assert wrong not in str(error)
    assert wrong not in (error.body or "")
    assert len(fake_anthropic.requests) == 1


async def test_server_error_gives_up_after_max_retries(fake_anthropic) -> None:
    fake_anthropic.script = [
        fake_anthropic.error(500, "api_error", "Internal server error", {"retry-after-ms": "5"})
    ]
    async with make(fake_anthropic, max_retries=1) as llm:
        with pytest.raises(ProviderHTTPError, match="server error, still after 2 attempts") as info:
            await collect(llm)
    assert info.value.status_code == 500
    assert len(fake_anthropic.requests) == 2


async def test_unknown_model_names_the_option(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.error(404, "not_found_error", "model: claude-nope")]
    async with make(fake_anthropic, model="claude-nope") as llm:
        with pytest.raises(ProviderHTTPError, match=r"model 'claude-nope'.*check the model"):
            await collect(llm)


async def test_cancelling_mid_stream_closes_the_connection(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply([f"w{i} " for i in range(400)], delay=0.01)]
    got: list[str] = []
    async with make(fake_anthropic) as llm:
        with anyio.CancelScope() as scope:
            async for delta in llm.stream(HISTORY):
                got.append(delta)
                if len(got) == 3:
                    scope.cancel()
        assert await fake_anthropic.server.wait_for_disconnects(1, within=5)
    # cancellation lands at the next checkpoint: a delta already buffered may still arrive
    assert 3 <= len(got) < 400


async def test_closing_the_stream_early_closes_the_connection(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply([f"w{i} " for i in range(400)], delay=0.01)]
    async with make(fake_anthropic) as llm:
        async with aclosing(llm.stream(HISTORY)) as stream:
            async for _ in stream:
                break
        assert await fake_anthropic.server.wait_for_disconnects(1, within=5)


async def test_interrupt_while_waiting_for_the_first_token(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS, first_delay=30)]
    async with make(fake_anthropic) as llm:
        await collect_cancelled_once_requested(fake_anthropic, llm)
        assert await fake_anthropic.server.wait_for_disconnects(1, within=5)


async def test_slow_first_token_is_waited_for(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS, first_delay=0.3)]
    async with make(fake_anthropic, timeout=10) as llm:
        assert await collect(llm) == PARTS


async def test_first_token_later_than_the_timeout(fake_anthropic) -> None:
    fake_anthropic.script = [fake_anthropic.reply(PARTS, first_delay=5)]
    async with make(fake_anthropic, timeout=0.2, max_retries=0) as llm:
        with pytest.raises(ProviderTimeout, match=r"timeout=0\.2s"):
            await collect(llm)


async def test_refusal_is_a_clear_error(fake_anthropic) -> None:
    fake_anthropic.script = [
        fake_anthropic.reply(
            [],
            stop_reason="refusal",
            stop_details={"type": "refusal", "category": "cyber", "explanation": None},
        )
    ]
    async with make(fake_anthropic) as llm:
        with pytest.raises(ProviderError, match=r"declined.*\(stop_reason=refusal\): cyber"):
            await collect(llm)


async def test_overloaded_error_event_mid_stream(fake_anthropic) -> None:
    fake_anthropic.script = [
        fake_anthropic.reply(
            ["Partial"], error_event={"type": "overloaded_error", "message": "Overloaded"}
        )
    ]
    async with make(fake_anthropic) as llm:
        with pytest.raises(ProviderError, match="overloaded_error mid-stream") as info:
            await collect(llm)
    assert info.value.retryable
    assert not isinstance(info.value, ProviderHTTPError)


async def test_unreachable_server(fake_anthropic) -> None:
    async with make(fake_anthropic, base_url="http://127.0.0.1:9", max_retries=0) as llm:
        with pytest.raises(ProviderConnectionError, match=r"cannot reach http://127.0.0.1:9"):
            await collect(llm)


# -- answers that are not what the protocol says ---------------------------------------------------


def _garbage_event(data: str, content_type: str = "text/event-stream"):
    def behaviour(r) -> None:
        r.start(200, {"content-type": content_type})
        r.sse({"type": "ping"}, event="ping")
        r.sse(data, event="content_block_delta")
        r.end()

    return behaviour


@pytest.mark.parametrize("data", ["this is not json", '{"type": "content_block_delta"', "<b>"])
async def test_an_event_whose_data_is_not_json_is_a_provider_error(fake_anthropic, data) -> None:
    fake_anthropic.script = [_garbage_event(data)]
    async with make(fake_anthropic) as llm:
        with pytest.raises(ProviderError, match="sent an event whose data is not JSON") as info:
            await collect(llm)
    assert repr(data[:20])[1:-1] in str(info.value)
    assert info.value.provider == "anthropic LLM"
    assert not isinstance(info.value, ProviderConnectionError)


async def test_a_200_html_page_is_reported_as_not_an_event_stream(fake_anthropic) -> None:
    page = "<!DOCTYPE html><html><body><h1>Sign in to the Wi-Fi</h1></body></html>"
    fake_anthropic.script = [
        lambda r: r.send(200, page, {"content-type": "text/html; charset=utf-8"})
    ]
    async with make(fake_anthropic) as llm:
        with pytest.raises(ProviderError, match="expected an event stream, got text/html") as info:
            await collect(llm)
    assert "cut it" not in str(info.value)
    assert fake_anthropic.key not in str(info.value)
