"""The ``openai`` LLM: chat completions streamed over SSE, from OpenAI or any compatible server."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr

from avatarkit.errors import ProviderConnectionError, ProviderError
from avatarkit.http import bad_event_data, not_an_event_stream
from avatarkit.providers import Message
from avatarkit_openai._provider import OpenAIProvider
from avatarkit_openai.options import OpenAILLMOptions

__all__ = ["OpenAILLM"]

logger = logging.getLogger(__name__)
PROVIDER = "openai LLM"


def _max_tokens_field(host: str) -> str:
    official = host == "openai.com" or host.endswith((".openai.com", ".openai.azure.com"))
    return "max_completion_tokens" if official else "max_tokens"


class OpenAILLM(OpenAIProvider[OpenAILLMOptions]):
    """Streams replies from the chat completions endpoint.

    The SDK client is created on first use and closed by :meth:`close`. Leaving the stream early
    (cancellation, ``aclose``) closes its HTTP response at once, so the server stops generating.
    """

    provider = PROVIDER

    def __init__(
        self,
        *,
        model: str,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        super().__init__(
            OpenAILLMOptions,
            model=model,
            api_key=api_key,
            base_url=base_url,
            temperature=temperature,
            max_tokens=max_tokens,
            headers=dict(headers or {}),
            extra_body=dict(extra_body or {}),
            timeout=timeout,
            max_retries=max_retries,
        )

    def __repr__(self) -> str:
        return f"OpenAILLM(model={self.options.model!r}, base_url={self._base_url!r})"

    async def start(self) -> None:
        """Create the client and load the SDK's resource modules, which it imports lazily, so
        the first turn does not pay for that. No network I/O."""
        _ = self.client.chat.completions

    def _request(self, messages: Sequence[Message]) -> dict[str, Any]:
        o = self.options
        history: list[ChatCompletionMessageParam] = [
            {"role": m.role, "content": m.content}  # type: ignore[misc]
            for m in messages
        ]
        request: dict[str, Any] = {"model": o.model, "messages": history, "stream": True}
        if o.temperature is not None:
            request["temperature"] = o.temperature
        if o.max_tokens is not None:
            # OpenAI's reasoning models only take max_completion_tokens; compatible servers
            # (Ollama, vLLM, llama.cpp...) all know max_tokens, not all the newer name
            request[_max_tokens_field(self.client.base_url.host)] = o.max_tokens
        if o.extra_body:
            request["extra_body"] = o.extra_body
        return request

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """Yield the reply's text deltas as they arrive."""
        ctx = self._context()
        opening = self.client.chat.completions.create(**self._request(messages))
        finish_reason: str | None = None
        refusal = ""
        async with self._streamed(opening, ctx) as stream:
            not_sse = not_an_event_stream(ctx, stream.response.headers.get("content-type"))
            try:
                async for chunk in stream:
                    if not chunk.choices:  # a usage or prompt-filter chunk
                        continue
                    choice = chunk.choices[0]
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
                    if choice.delta is not None and choice.delta.refusal:
                        refusal += choice.delta.refusal
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
            except json.JSONDecodeError as exc:  # the SDK parses each event's data raw
                raise (not_sse or bad_event_data(ctx, exc)) from None
        if finish_reason is None and not_sse is not None:
            raise not_sse
        if finish_reason is None:
            raise ProviderConnectionError(
                f"the stream from {ctx.base_url} ended before the reply was complete (no "
                "finish_reason): the server or a proxy cut it",
                provider=PROVIDER,
            )
        if refusal:
            raise ProviderError(
                f"the model refused to answer: {refusal.strip()!r}", provider=PROVIDER
            )
        if finish_reason == "content_filter":
            raise ProviderError(
                "the reply was stopped by the content filter (finish_reason=content_filter); "
                "rephrase the request or adjust the system prompt",
                provider=PROVIDER,
            )
        if finish_reason == "length":
            logger.warning(
                "%s: the reply was cut at max_tokens=%s (finish_reason=length)",
                PROVIDER,
                self.options.max_tokens,
            )
