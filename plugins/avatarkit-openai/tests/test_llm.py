"""The openai LLM through the real SDK against a fake OpenAI on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

from contextlib import aclosing

import anyio
import pytest

from avatarkit import Message, ProviderConnectionError, ProviderError, ProviderHTTPError
from avatarkit.errors import ProviderTimeout
from avatarkit.testing import cancel_once
from avatarkit_openai.llm import OpenAILLM

HISTORY = [
    Message("system", "You are terse."),
    Message("user", "Hi"),
    Message("assistant", "Hello."),
    Message("user", "Tell me two things."),
]
PARTS = ["First", " thing.", " Second", " thing", " here."]


def make(fake, **options) -> OpenAILLM:
    return OpenAILLM(
        **{"model": "test-model", "api_key": fake.key, "base_url": fake.url, **options}
    )


async def collect(llm: OpenAILLM, messages=HISTORY) -> list[str]:
    return [delta async for delta in llm.stream(messages)]


async def collect_cancelled_once_requested(fake, llm: OpenAILLM) -> None:
    """Collect, cancelled 0.2 s after the fake server has the request (a fixed delay from the
    start could end before a loaded machine had even sent it: nothing was then abandoned)."""
    assert await cancel_once(lambda: bool(fake.requests), lambda: collect(llm), after=0.2)


async def test_streams_a_multi_sentence_reply_as_it_arrives(fake_openai, gate) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, gate=gate)]
    got = []
    async with make(
        fake_openai,
        temperature=0.3,
        max_tokens=200,
        headers={"X-Team": "avatars"},
        extra_body={"top_k": 5},
    ) as llm:
        async for delta in llm.stream(HISTORY):
            got.append(delta)
            gate.open()  # the server holds the rest until we have the first piece
    assert got == PARTS
    assert gate.server_finished_first is False
    [request] = fake_openai.requests
    body = request.json()
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": m.role, "content": m.content} for m in HISTORY]
    assert body["stream"] is True
    assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.3, 200, 5)
    assert request.headers["x-team"] == "avatars"
    assert request.headers["authorization"] == f"Bearer {fake_openai.key}"


async def test_consecutive_streams_reuse_the_client(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(["One."]), fake_openai.chat(["Two."])]
    async with make(fake_openai) as llm:
        assert await collect(llm) == ["One."]
        assert await collect(llm) == ["Two."]
    assert len(fake_openai.requests) == 2


async def test_connection_dropped_mid_stream(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, cut_after=2)]
    got: list[str] = []

    async def consume(llm: OpenAILLM) -> None:
        async for delta in llm.stream(HISTORY):
            got.append(delta)

    async with make(fake_openai, max_retries=0) as llm:
        with pytest.raises(ProviderConnectionError, match="dropped in the middle") as info:
            await consume(llm)
    assert got == PARTS[:2]
    assert info.value.provider == "openai LLM"
    assert info.value.retryable


async def test_stream_ending_without_finish_reason_is_an_error(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, end_early=True)]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderConnectionError, match="ended before the reply was complete"):
            await collect(llm)


async def test_rate_limit_is_retried_by_the_sdk(fake_openai) -> None:
    fake_openai.script = [
        # retry-after-ms is what the API sends; the SDK honours it, so the test backs off 5 ms
        fake_openai.error(
            429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after-ms": "5"}
        ),
        fake_openai.chat(PARTS),
    ]
    async with make(fake_openai, max_retries=2) as llm:
        assert await collect(llm) == PARTS
    assert len(fake_openai.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in fake_openai.requests] == ["0", "1"]


async def test_bad_key_is_a_clear_error_without_the_key(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS)]
    wrong = "sk-wrong-key-0000000000001234"
    async with make(fake_openai, api_key=wrong) as llm:
        with pytest.raises(ProviderHTTPError) as info:
            await collect(llm)
    error = info.value
    assert (error.status_code, error.retryable, error.request_id) == (401, False, "req_401")
    assert "OPENAI_API_KEY" in str(error)
    assert "authentication failed" in str(error)
    for text in (str(error), error.body or ""):
        assert wrong not in text
        assert "sk-wron" not in text  # the masked key the API echoes is scrubbed too
    assert len(fake_openai.requests) == 1  # 401 is not retried


async def test_server_error_gives_up_after_max_retries(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.error(
            500, "The server had an error", "server_error", None, {"retry-after-ms": "5"}
        )
    ]
    async with make(fake_openai, max_retries=2) as llm:
        with pytest.raises(ProviderHTTPError, match="after 3 attempts") as info:
            await collect(llm)
    assert info.value.status_code == 500
    assert info.value.retryable
    assert "The server had an error" in str(info.value)
    assert len(fake_openai.requests) == 3


async def test_unknown_model_names_the_option(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.error(
            404, "The model `gpt-nope` does not exist", "invalid_request_error", "model_not_found"
        )
    ]
    async with make(fake_openai, model="gpt-nope") as llm:
        with pytest.raises(ProviderHTTPError, match=r"model 'gpt-nope'.*check the model") as info:
            await collect(llm)
    assert info.value.status_code == 404
    assert not info.value.retryable


async def test_quota_exhausted_is_not_retryable(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.error(
            429,
            "You exceeded your current quota",
            "insufficient_quota",
            "insufficient_quota",
            {"x-should-retry": "false"},
        )
    ]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderHTTPError, match="quota exhausted") as info:
            await collect(llm)
    assert not info.value.retryable
    assert len(fake_openai.requests) == 1


async def test_cancelling_mid_stream_closes_the_connection(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat([f"word{i} " for i in range(400)], delay=0.01)]
    got: list[str] = []
    async with make(fake_openai) as llm:
        with anyio.CancelScope() as scope:
            async for delta in llm.stream(HISTORY):
                got.append(delta)
                if len(got) == 3:
                    scope.cancel()
        assert scope.cancelled_caught
        assert await fake_openai.server.wait_for_disconnects(1, within=5)
    # cancellation lands at the next checkpoint: a delta already buffered may still arrive
    assert 3 <= len(got) < 400


async def test_closing_the_stream_early_closes_the_connection(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat([f"word{i} " for i in range(400)], delay=0.01)]
    async with make(fake_openai) as llm:
        async with aclosing(llm.stream(HISTORY)) as stream:
            async for _ in stream:
                break
        assert await fake_openai.server.wait_for_disconnects(1, within=5)


async def test_interrupt_while_waiting_for_the_first_token(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, first_delay=30)]
    async with make(fake_openai) as llm:
        await collect_cancelled_once_requested(fake_openai, llm)
        assert await fake_openai.server.wait_for_disconnects(1, within=5)


async def test_interrupt_before_the_response_headers(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, headers_delay=30)]
    async with make(fake_openai) as llm:
        await collect_cancelled_once_requested(fake_openai, llm)
        assert await fake_openai.server.wait_for_disconnects(1, within=5)


async def test_slow_first_token_is_waited_for(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, first_delay=0.3)]
    async with make(fake_openai, timeout=10) as llm:
        assert await collect(llm) == PARTS


async def test_first_token_later_than_the_timeout(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(PARTS, first_delay=5)]
    async with make(fake_openai, timeout=0.2, max_retries=0) as llm:
        with pytest.raises(ProviderTimeout, match=r"timeout=0\.2s"):
            await collect(llm)


async def test_content_filter_is_a_clear_error(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat(["I"], finish="content_filter")]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderError, match="content filter"):
            await collect(llm)


async def test_refusal_is_a_clear_error(fake_openai) -> None:
    fake_openai.script = [fake_openai.chat([], refusal="I can't help with that.")]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderError, match="refused to answer: \"I can't help"):
            await collect(llm)


async def test_error_event_mid_stream(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.chat(
            ["Partial"],
            mid_stream_error={"message": "The server is overloaded", "type": "server_error"},
        )
    ]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderError, match="overloaded") as info:
            await collect(llm)
    assert info.value.retryable


async def test_unreachable_server(fake_openai) -> None:
    async with make(fake_openai, base_url="http://127.0.0.1:9/v1", max_retries=0) as llm:
        with pytest.raises(ProviderConnectionError, match=r"cannot reach http://127.0.0.1:9/v1"):
            await collect(llm)


# -- answers that are not what the protocol says ---------------------------------------------------


def _garbage_event(data: str, content_type: str = "text/event-stream"):
    def behaviour(r) -> None:
        r.start(200, {"content-type": content_type})
        r.sse(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
            }
        )
        r.sse(data)
        r.end()

    return behaviour


@pytest.mark.parametrize("data", ["this is not json", '{"choices": [', "<html>"])
async def test_an_event_whose_data_is_not_json_is_a_provider_error(fake_openai, data) -> None:
    fake_openai.script = [_garbage_event(data)]
    got: list[str] = []

    async def consume(llm: OpenAILLM) -> None:
        async for delta in llm.stream(HISTORY):
            got.append(delta)

    async with make(fake_openai) as llm:
        with pytest.raises(ProviderError, match="sent an event whose data is not JSON") as info:
            await consume(llm)
    assert got == ["Hi"]
    assert repr(data[:20])[1:-1] in str(info.value)
    assert info.value.provider == "openai LLM"
    assert not isinstance(info.value, ProviderConnectionError)


async def test_a_200_html_page_is_reported_as_not_an_event_stream(fake_openai) -> None:
    page = "<!DOCTYPE html><html><body><h1>Sign in to the Wi-Fi</h1></body></html>"
    fake_openai.script = [lambda r: r.send(200, page, {"content-type": "text/html; charset=utf-8"})]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderError, match="expected an event stream, got text/html") as info:
            await collect(llm)
    assert "cut it" not in str(info.value)
    assert fake_openai.key not in str(info.value)


async def test_an_html_page_with_sse_like_lines_is_still_not_an_event_stream(fake_openai) -> None:
    fake_openai.script = [_garbage_event("<p>oops</p>", content_type="text/html")]
    async with make(fake_openai) as llm:
        with pytest.raises(ProviderError, match="expected an event stream, got text/html"):
            await collect(llm)
