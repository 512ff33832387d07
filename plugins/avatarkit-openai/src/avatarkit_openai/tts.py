"""The ``openai`` TTS: the speech endpoint, streamed as raw 16-bit PCM as it is synthesised."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx2
import openai
from pydantic import SecretStr, ValidationError

from avatarkit.errors import ConfigError
from avatarkit.providers import AudioChunk
from avatarkit_openai._client import build_client, resolve_api_key
from avatarkit_openai.errors import ErrorContext, map_error
from avatarkit_openai.options import OpenAITTSOptions

__all__ = ["OpenAITTS"]

logger = logging.getLogger(__name__)
PROVIDER = "openai TTS"
_NO_INSTRUCTIONS = ("tts-1", "tts-1-hd")


class OpenAITTS:
    """Synthesises speech with ``response_format="pcm"`` and yields each piece as it arrives,
    so the first audio reaches the renderer long before the sentence is fully synthesised.

    ``sample_rate`` (24 kHz for OpenAI) is the rate of every :class:`AudioChunk` it yields.
    """

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        speed: float | None = None,
        instructions: str | None = None,
        sample_rate: int = 24000,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        try:
            self.options = OpenAITTSOptions(
                model=model,
                voice=voice,
                speed=speed,
                instructions=instructions,
                sample_rate=sample_rate,
                api_key=SecretStr(api_key) if isinstance(api_key, str) else api_key,
                base_url=base_url,
                headers=dict(headers or {}),
                timeout=timeout,
                max_retries=max_retries,
            )
        except ValidationError as exc:
            raise ConfigError(f"{PROVIDER}: invalid options: {exc}") from None
        if self.options.instructions and self.options.model in _NO_INSTRUCTIONS:
            raise ConfigError(
                f"{PROVIDER}: model {self.options.model!r} does not support instructions; "
                "use gpt-4o-mini-tts or remove the instructions option",
                field="instructions",
            )
        self.sample_rate = self.options.sample_rate
        self._api_key, self._base_url = resolve_api_key(
            self.options.api_key, self.options.base_url, provider=PROVIDER
        )
        self._client: openai.AsyncOpenAI | None = None

    def __repr__(self) -> str:
        o = self.options
        return f"OpenAITTS(model={o.model!r}, voice={o.voice!r}, base_url={self._base_url!r})"

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
        _ = self.client.audio.speech.with_streaming_response

    async def close(self) -> None:
        """Close the client's connections; idempotent and safe under cancellation."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def __aenter__(self) -> OpenAITTS:
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

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield ``text`` as 16-bit mono PCM chunks, each a whole number of samples."""
        if not text.strip():
            return
        o = self.options
        params: dict[str, Any] = {
            "model": o.model,
            "voice": o.voice,
            "input": text,
            "response_format": "pcm",
        }
        if o.speed is not None:
            params["speed"] = o.speed
        if o.instructions:
            params["instructions"] = o.instructions
        ctx = self._context()
        speech = self.client.audio.speech.with_streaming_response.create(**params)
        try:
            response = await speech.__aenter__()
        except openai.OpenAIError as exc:
            raise map_error(exc, ctx) from None
        pending = b""
        try:
            async for data in response.iter_bytes():
                data = pending + data
                whole = len(data) - len(data) % 2
                pending = data[whole:]
                if whole:
                    yield AudioChunk(data[:whole], self.sample_rate)
        except (openai.OpenAIError, httpx2.TransportError) as exc:
            raise map_error(exc, ctx, mid_stream=True) from None
        finally:
            # closes the HTTP response at once: an interrupted sentence stops being synthesised
            with anyio.CancelScope(shield=True):
                await response.close()
        if pending:
            logger.warning("%s: dropped a trailing odd byte of PCM", PROVIDER)
