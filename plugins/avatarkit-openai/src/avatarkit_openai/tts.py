"""The ``openai`` TTS: the speech endpoint, streamed as raw 16-bit PCM as it is synthesised."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import SecretStr

from avatarkit.errors import ConfigError
from avatarkit.providers import AudioChunk
from avatarkit_openai._provider import OpenAIProvider
from avatarkit_openai.options import OpenAITTSOptions

__all__ = ["OpenAITTS"]

logger = logging.getLogger(__name__)
PROVIDER = "openai TTS"
_NO_INSTRUCTIONS = ("tts-1", "tts-1-hd")


class OpenAITTS(OpenAIProvider[OpenAITTSOptions]):
    """Synthesises speech with ``response_format="pcm"`` and yields each piece as it arrives,
    so the first audio reaches the renderer long before the sentence is fully synthesised.

    ``sample_rate`` (24 kHz for OpenAI) is the rate of every :class:`AudioChunk` it yields.
    """

    provider = PROVIDER

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
        super().__init__(
            OpenAITTSOptions,
            model=model,
            voice=voice,
            speed=speed,
            instructions=instructions,
            sample_rate=sample_rate,
            api_key=api_key,
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            max_retries=max_retries,
        )
        self.sample_rate = self.options.sample_rate

    def _check_options(self) -> None:
        if self.options.instructions and self.options.model in _NO_INSTRUCTIONS:
            raise ConfigError(
                f"{PROVIDER}: model {self.options.model!r} does not support instructions; "
                "use gpt-4o-mini-tts or remove the instructions option",
                field="instructions",
            )

    def __repr__(self) -> str:
        o = self.options
        return f"OpenAITTS(model={o.model!r}, voice={o.voice!r}, base_url={self._base_url!r})"

    async def start(self) -> None:
        """Create the client and load the SDK's resource modules, which it imports lazily, so
        the first turn does not pay for that. No network I/O."""
        _ = self.client.audio.speech.with_streaming_response

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
        speech = self.client.audio.speech.with_streaming_response.create(**params)
        pending = b""
        async with self._streamed(speech.__aenter__(), self._context()) as response:
            async for data in response.iter_bytes():
                data = pending + data
                whole = len(data) - len(data) % 2
                pending = data[whole:]
                if whole:
                    yield AudioChunk(data[:whole], self.sample_rate)
        if pending:
            logger.warning("%s: dropped a trailing odd byte of PCM", PROVIDER)
