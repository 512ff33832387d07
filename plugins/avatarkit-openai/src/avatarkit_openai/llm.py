"""The ``openai`` LLM: chat completions streamed over SSE, from OpenAI or any compatible server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import openai
from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr, ValidationError

from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError
from avatarkit.providers import Message
from avatarkit_openai._client import build_client, resolve_api_key
from avatarkit_openai.errors import ErrorContext, map_error
from avatarkit_openai.options import OpenAILLMOptions

__all__ = ["OpenAILLM"]

logger = logging.getLogger(__name__)
PROVIDER = "openai LLM"


def _max_tokens_field(host: str) -> str:
    official = host == "openai.com" or host.endswith((".openai.com", ".openai.azure.com"))
    return "max_completion_tokens" if official else "max_tokens"


class OpenAILLM:
    """Streams replies from the chat completions endpoint.

    The SDK client is created on first use and closed by :meth:`close`. Leaving the stream early
    (cancellation, ``aclose``) closes its HTTP response at once, so the server stops generating.
    """

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
        try:
            self.options = OpenAILLMOptions(
                model=model,
                api_key=SecretStr(api_key) if isinstance(api_key, str) else api_key,
                base_url=base_url,
                temperature=temperature,
                max_tokens=max_tokens,
                headers=dict(headers or {}),
                extra_body=dict(extra_body or {}),
                timeout=timeout,
                max_retries=max_retries,
            )
        except ValidationError as exc:
            raise ConfigError(f"{PROVIDER}: invalid options: {exc}") from None
        self._api_key, self._base_url = resolve_api_key(
            self.options.api_key, self.options.base_url, provider=PROVIDER
        )
        self._client: openai.AsyncOpenAI | None = None

    def __repr__(self) -> str:
        return f"OpenAILLM(model={self.options.model!r}, base_url={self._base_url!r})"

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client (created on first use)."""
        if self._client is None:
            o = self.options
            self._client = build_client(
                api_key=self._api_key,
                base_url=self._base_url,
                headers=o.headers,
                timeout=o.timeout,
                max_retries=o.max_retries,
            )
        return self._client

    async def start(self) -> None:
        """Create the client and load the SDK's resource modules, which it imports lazily, so
        the first turn does not pay for that. No network I/O."""
        _ = self.client.chat.completions

    async def close(self) -> None:
        """Close the client's connections; idempotent and safe under cancellation."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def __aenter__(self) -> OpenAILLM:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _context(self) -> ErrorContext:
        return ErrorContext(
            provider=PROVIDER,
            model=self.options.model,
            base_url=str(self.client.base_url).rstrip("/"),
            api_key=self._api_key,
            timeout=self.options.timeout,
            max_retries=self.options.max_retries,
        )

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
        try:
            stream = await self.client.chat.completions.create(**self._request(messages))
        except openai.OpenAIError as exc:
            raise map_error(exc, ctx) from None
        finish_reason: str | None = None
        refusal = ""
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
        except openai.OpenAIError as exc:
            raise map_error(exc, ctx, mid_stream=True) from None
        finally:
            # closes the HTTP response at once (and the connection, if the body was not read to
            # the end): the server sees the disconnect and stops generating
            with anyio.CancelScope(shield=True):
                await stream.close()
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
