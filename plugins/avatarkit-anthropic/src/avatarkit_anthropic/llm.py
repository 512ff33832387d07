"""The ``anthropic`` LLM: Claude through the Messages API, streamed as server-sent events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anthropic
import anyio
import httpx2
from pydantic import SecretStr, ValidationError

from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError
from avatarkit.http import (
    RequestContext,
    bad_event_data,
    not_an_event_stream,
    streamed_response,
)
from avatarkit.providers import Message
from avatarkit_anthropic._client import build_client, resolve_api_key
from avatarkit_anthropic._messages import to_anthropic
from avatarkit_anthropic.errors import error_context, map_error
from avatarkit_anthropic.options import AnthropicLLMOptions

__all__ = ["AnthropicLLM"]

logger = logging.getLogger(__name__)
PROVIDER = "anthropic LLM"


class AnthropicLLM:
    """Streams Claude's replies.

    System messages become the ``system`` parameter and the rest alternate user/assistant as
    the API requires (see :func:`avatarkit_anthropic._messages.to_anthropic`). Leaving the stream
    early (cancellation, ``aclose``) closes its HTTP response at once, so generation stops.
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        try:
            self.options = AnthropicLLMOptions(
                model=model,
                api_key=SecretStr(api_key) if isinstance(api_key, str) else api_key,
                base_url=base_url,
                max_tokens=max_tokens,
                temperature=temperature,
                headers=dict(headers or {}),
                timeout=timeout,
                max_retries=max_retries,
            )
        except ValidationError as exc:
            raise ConfigError(f"{PROVIDER}: invalid options: {exc}") from None
        self._api_key, self._base_url = resolve_api_key(
            self.options.api_key, self.options.base_url, provider=PROVIDER
        )
        self._client: anthropic.AsyncAnthropic | None = None

    def __repr__(self) -> str:
        return f"AnthropicLLM(model={self.options.model!r}, base_url={self._base_url!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The key this provider sends: a session keeps it out of its errors and events."""
        return (self._api_key,)

    @property
    def client(self) -> anthropic.AsyncAnthropic:
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
        _ = self.client.messages

    async def close(self) -> None:
        """Close the client's connections; idempotent and safe under cancellation."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def __aenter__(self) -> AnthropicLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _context(self) -> RequestContext:
        return error_context(
            provider=PROVIDER,
            model=self.options.model,
            base_url=str(self.client.base_url).rstrip("/"),
            api_key=self._api_key,
            timeout=self.options.timeout,
            max_retries=self.options.max_retries,
        )

    def _request(self, messages: Sequence[Message]) -> dict[str, Any]:
        o = self.options
        system, turns = to_anthropic(messages)
        request: dict[str, Any] = {
            "model": o.model,
            "max_tokens": o.max_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            request["system"] = system
        if o.temperature is not None:
            # not a parameter of this SDK's create() any more (recent models fix sampling), but
            # older models and Messages-API gateways still take it: pass it through as given
            request["extra_body"] = {"temperature": o.temperature}
        return request

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """Yield the reply's text deltas as they arrive."""
        ctx = self._context()
        stop_reason: str | None = None
        stop_details: str | None = None
        complete = False
        async with streamed_response(
            self.client.messages.create(**self._request(messages)),
            errors=(anthropic.AnthropicError, httpx2.TransportError),
            to_error=lambda exc, mid_stream: map_error(exc, ctx, mid_stream=mid_stream),
        ) as stream:
            not_sse = not_an_event_stream(ctx, stream.response.headers.get("content-type"))
            try:
                async for event in stream:
                    if event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield event.delta.text
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        details = event.delta.stop_details
                        if details is not None:
                            stop_details = details.explanation or details.category
                    elif event.type == "message_stop":
                        complete = True
            except json.JSONDecodeError as exc:  # the SDK parses each event's data raw
                raise (not_sse or bad_event_data(ctx, exc)) from None
        if not complete and not_sse is not None:
            raise not_sse
        if not complete:
            raise ProviderConnectionError(
                f"the stream from {ctx.base_url} ended before the reply was complete (no "
                "message_stop): the server or a proxy cut it",
                provider=PROVIDER,
            )
        if stop_reason == "refusal":
            why = f": {stop_details}" if stop_details else ""
            raise ProviderError(
                f"Claude declined to answer (stop_reason=refusal){why}; rephrase the request "
                "or adjust the system prompt",
                provider=PROVIDER,
            )
        if stop_reason in ("max_tokens", "model_context_window_exceeded"):
            logger.warning(
                "%s: the reply was cut (stop_reason=%s, max_tokens=%s)",
                PROVIDER,
                stop_reason,
                self.options.max_tokens,
            )
