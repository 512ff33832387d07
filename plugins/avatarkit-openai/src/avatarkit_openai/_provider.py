"""What the ``openai`` LLM and TTS share: options, key, a lazily built SDK client, lifecycle."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import anyio
import httpx2
import openai
from pydantic import SecretStr, ValidationError

from avatarkit.errors import ConfigError
from avatarkit.http import RequestContext, streamed_response
from avatarkit_openai._client import build_client, resolve_api_key
from avatarkit_openai.errors import error_context, map_error

__all__ = ["OpenAIProvider"]


class _Options(Protocol):
    """The fields of :mod:`avatarkit_openai.options` models this base reads."""

    @property
    def model(self) -> str: ...
    @property
    def api_key(self) -> SecretStr | None: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...


OptionsT = TypeVar("OptionsT", bound=_Options)


class _Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


_ResponseT = TypeVar("_ResponseT", bound=_Closable)


class OpenAIProvider(Generic[OptionsT]):
    """Validates the options, resolves the key when built (so a missing one fails early), and
    owns the SDK client: created on first use, closed by :meth:`close` even when cancelled."""

    #: Names the provider in errors, e.g. ``"openai LLM"``.
    provider: ClassVar[str]

    def __init__(self, options_type: type[OptionsT], **fields: Any) -> None:
        if isinstance(fields.get("api_key"), str):
            fields["api_key"] = SecretStr(fields["api_key"])
        try:
            self.options: OptionsT = options_type(**fields)
        except ValidationError as exc:
            raise ConfigError(f"{self.provider}: invalid options: {exc}") from None
        self._check_options()
        self._api_key, self._base_url = resolve_api_key(
            self.options.api_key, self.options.base_url, provider=self.provider
        )
        self._client: openai.AsyncOpenAI | None = None

    def _check_options(self) -> None:
        """Checks across fields that the options model cannot make; raise ConfigError."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """The key this provider sends: a session keeps it out of its errors and events."""
        return (self._api_key,)

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

    async def close(self) -> None:
        """Close the client's connections; idempotent and safe under cancellation."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def start(self) -> None:
        """Create the client (no network I/O); subclasses also load what their turns use."""
        _ = self.client

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _context(self) -> RequestContext:
        return error_context(
            provider=self.provider,
            model=self.options.model,
            base_url=str(self.client.base_url).rstrip("/"),
            api_key=self._api_key,
            timeout=self.options.timeout,
            max_retries=self.options.max_retries,
        )

    def _streamed(
        self, opening: Awaitable[_ResponseT], ctx: RequestContext
    ) -> AbstractAsyncContextManager[_ResponseT]:
        """The SDK's streamed response, its errors mapped, closed at once when left (so an
        interrupted reply stops being generated or synthesised)."""
        return streamed_response(
            opening,
            errors=(openai.OpenAIError, httpx2.TransportError),
            to_error=lambda exc, mid_stream: map_error(exc, ctx, mid_stream=mid_stream),
        )
