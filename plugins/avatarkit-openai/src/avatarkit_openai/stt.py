"""The ``openai`` STT: OpenAI transcription, live over the realtime WebSocket (``mode:
realtime``, interim text, the server's VAD) or one HTTP request per utterance (``mode: http``).

The realtime protocol lives in :mod:`avatarkit_openai.stt_realtime` (httpx-ws, so it runs on
asyncio and trio); the HTTP mode goes through the official SDK's
``audio.transcriptions.create``, streamed as SSE deltas when ``stream`` is on.
"""

from __future__ import annotations

import io
import logging
import wave
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, Literal

from pydantic import SecretStr

from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError
from avatarkit.providers import AudioChunk, Transcript
from avatarkit_openai._provider import OpenAIProvider
from avatarkit_openai.options import OpenAISTTOptions, ServerVAD
from avatarkit_openai.stt_realtime import REALTIME_RATE, RealtimeStream, realtime_url

__all__ = ["OpenAISTT"]

logger = logging.getLogger(__name__)
PROVIDER = "openai STT"
HTTP_RATE = 16000
_SERVER_VAD = ServerVAD()


class OpenAISTT(OpenAIProvider[OpenAISTTOptions]):
    """Speech to text with OpenAI's transcription models.

    ``mode="realtime"`` (``streaming = True``): one WebSocket over the whole microphone stream;
    each utterance the server's VAD cuts comes as ``speech_started``, ``interim`` text as it is
    transcribed, ``speech_ended`` and one ``final`` (``end_of_turn`` set). A dropped connection
    is reconnected and the audio not yet transcribed sent again. ``mode="http"``
    (``streaming = False``): the session's VAD cuts utterances and each is one request, its
    text streamed as ``interim`` deltas when ``stream`` is on, then one ``final``; a request
    whose connection drops is sent again (up to ``max_retries``), since the audio is at hand.
    """

    provider = PROVIDER

    def __init__(
        self,
        *,
        mode: Literal["realtime", "http"] = "realtime",
        model: str = "gpt-4o-mini-transcribe",
        language: str | None = None,
        prompt: str | None = None,
        stream: bool = True,
        turn_detection: ServerVAD | Mapping[str, Any] | None = _SERVER_VAD,
        noise_reduction: Literal["near_field", "far_field"] | None = "near_field",
        sample_rate: int | None = None,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_reconnects: int = 3,
        replay_seconds: float = 30.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 10.0,
        close_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            OpenAISTTOptions,
            mode=mode,
            model=model,
            language=language,
            prompt=prompt,
            stream=stream,
            turn_detection=turn_detection,
            noise_reduction=noise_reduction,
            sample_rate=sample_rate,
            api_key=api_key,
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            max_retries=max_retries,
            max_reconnects=max_reconnects,
            replay_seconds=replay_seconds,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
        )
        realtime = self.options.mode == "realtime"
        self.streaming = realtime
        self.sample_rate = self.options.sample_rate or (REALTIME_RATE if realtime else HTTP_RATE)

    def _check_options(self) -> None:
        o = self.options
        if o.mode == "realtime" and o.sample_rate not in (None, REALTIME_RATE):
            raise ConfigError(
                f"{PROVIDER}: the realtime API takes {REALTIME_RATE} Hz audio; remove "
                "sample_rate (the session resamples) or use mode: http",
                field="sample_rate",
            )
        if o.mode == "realtime" and o.model == "whisper-1":
            logger.info("%s: whisper-1 gives no interim text in realtime mode", PROVIDER)

    def __repr__(self) -> str:
        o = self.options
        return f"OpenAISTT(mode={o.mode!r}, model={o.model!r}, base_url={self._base_url!r})"

    async def start(self) -> None:
        """Create the client (no network I/O); the HTTP mode loads the SDK resource now."""
        if self.options.mode == "http":
            _ = self.client.audio.transcriptions
        else:
            _ = self.client

    def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        """Transcripts of ``audio`` (mono PCM16 at :attr:`sample_rate`); see the class doc."""
        if self.options.mode == "realtime":
            return self._realtime(audio)
        return self._http(audio)

    # -- realtime ------------------------------------------------------------------------------

    async def _realtime(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        stream = RealtimeStream(
            self.options,
            url=realtime_url(str(self.client.base_url)),
            headers=self.options.headers,
            ctx=self._context(),
            provider=PROVIDER,
        )
        async with aclosing(stream.run(audio)) as transcripts:
            async for transcript in transcripts:
                yield transcript

    # -- http ----------------------------------------------------------------------------------

    async def _http(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        pcm = bytearray()
        try:
            async for chunk in audio:
                if chunk.sample_rate != self.sample_rate or chunk.channels != 1:
                    raise ProviderError(
                        f"got {chunk.channels}-channel audio at {chunk.sample_rate} Hz; this STT "
                        f"takes mono PCM16 at its sample_rate, {self.sample_rate} Hz",
                        provider=PROVIDER,
                    )
                pcm += chunk.data
        finally:
            aclose = getattr(audio, "aclose", None)
            if aclose is not None:
                await aclose()
        duration = len(pcm) / 2 / self.sample_rate
        if not pcm:
            yield Transcript("final", "", 0.0, 0.0)
            return
        wav = _wav(bytes(pcm), self.sample_rate)
        for attempt in range(self.options.max_retries + 1):
            text = ""
            try:
                async for kind, text in self._request(wav):
                    if kind == "interim":
                        yield Transcript("interim", text, 0.0, duration)
            except ProviderConnectionError as exc:
                if attempt == self.options.max_retries:
                    raise
                logger.warning("%s: %s; sending the utterance again", PROVIDER, exc)
                continue
            yield Transcript("final", text.strip(), 0.0, duration)
            return

    async def _request(self, wav: bytes) -> AsyncIterator[tuple[str, str]]:
        """("interim", text so far) pieces, then ("final", text)."""
        o = self.options
        params: dict[str, Any] = {
            "file": ("speech.wav", wav, "audio/wav"),
            "model": o.model,
            "response_format": "json",
        }
        if o.language:
            params["language"] = o.language
        if o.prompt:
            params["prompt"] = o.prompt
        ctx = self._context()
        transcriptions = self.client.audio.transcriptions
        if not o.stream:
            async with self._streamed(_Finished(transcriptions.create(**params)), ctx) as done:
                yield "final", str(getattr(done.value, "text", done.value))
            return
        text, final = "", None
        opening = transcriptions.create(**params, stream=True)
        async with self._streamed(opening, ctx) as events:
            async for event in events:
                if event.type == "transcript.text.delta":
                    text += event.delta
                    yield "interim", text
                elif event.type == "transcript.text.done":
                    final = event.text
        if final is None:
            raise ProviderConnectionError(
                f"the transcription stream from {ctx.base_url} ended without its "
                "transcript.text.done event: the server or a proxy cut it",
                provider=PROVIDER,
            )
        yield "final", final


class _Finished:
    """A finished (non-streamed) SDK answer dressed as a closable response."""

    def __init__(self, opening: Any) -> None:
        self._opening = opening
        self.value: Any = None

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> _Finished:
        self.value = await self._opening
        return self

    async def close(self) -> None:
        """Nothing to close: the SDK read the whole answer."""


def _wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()
