"""The ``elevenlabs`` TTS: ElevenLabs' stream-input WebSocket.

One socket per turn (``/v1/text-to-speech/{voice_id}/stream-input``): the first message carries
the voice settings and ``generation_config``, then text pieces as the LLM writes them, ``flush``
at each sentence end and an empty text to finish. Audio comes back as base64 PCM with
per-character alignment, timed from the start of the message's own audio; the stream turns it into
:class:`~avatarkit.providers.WordTiming` counted from the turn's first sample. Built on
:class:`avatarkit.websocket.ServiceSocket` (httpx-ws), so it runs on asyncio and trio.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from avatarkit.errors import ProviderError
from avatarkit.http import KeyedClient
from avatarkit.providers import AudioChunk, WordTiming
from avatarkit.websocket import (
    Base64PCM,
    ServiceClosed,
    ServiceSocket,
    speech_service_error,
)
from avatarkit_elevenlabs._common import request_context, voice_settings
from avatarkit_elevenlabs.options import ElevenLabsOptions

__all__ = ["ElevenLabsStream", "ElevenLabsTTS"]

logger = logging.getLogger(__name__)
PROVIDER = "elevenlabs TTS"
#: What in an error message means the key was refused.
_AUTH = ("api key", "api_key", "unauthor", "auth")


class ElevenLabsTTS(KeyedClient):
    """Incremental TTS over the stream-input WebSocket (also usable a sentence at a time)."""

    provider = PROVIDER

    def __init__(self, **options: Any) -> None:
        self.options = ElevenLabsOptions(**options)
        self.sample_rate = self.options.sample_rate
        self._ctx = request_context(self.options, PROVIDER)
        self._timeout = self.options.timeout

    def __repr__(self) -> str:
        o = self.options
        return f"ElevenLabsTTS(voice_id={o.voice_id!r}, model={o.model!r}, base_url={o.base_url!r})"

    def open_stream(self) -> ElevenLabsStream:
        """One turn's stream: ``async with tts.open_stream() as stream:``."""
        return ElevenLabsStream(self)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """The sentence path: one socket for ``text``, audio only."""
        if not text.strip():
            return
        async with self.open_stream() as stream:
            await stream.push(text.rstrip() + " ")
            await stream.end()
            async for item in stream:
                if isinstance(item, AudioChunk):
                    yield item

    def _url(self) -> str:
        o = self.options
        parts = urlsplit(o.base_url.rstrip("/"))
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        query: dict[str, str] = {"model_id": o.model, "output_format": f"pcm_{o.sample_rate}"}
        if o.language_code:
            query["language_code"] = o.language_code
        path = f"{parts.path}/v1/text-to-speech/{quote(o.voice_id, safe='')}/stream-input"
        return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))

    def _first_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"text": " "}
        settings = voice_settings(self.options)
        if settings:
            message["voice_settings"] = settings
        if self.options.chunk_length_schedule:
            message["generation_config"] = {
                "chunk_length_schedule": self.options.chunk_length_schedule
            }
        return message


class ElevenLabsStream:
    """One turn on the stream-input socket; see :class:`avatarkit.providers.SpeechStream`."""

    def __init__(self, tts: ElevenLabsTTS) -> None:
        self._tts = tts
        self._socket = ServiceSocket(
            tts._url(),
            ctx=tts._ctx,
            headers={"xi-api-key": tts._ctx.api_key},
            client=tts._client,
            connect_timeout=tts.options.timeout,
        )
        self._ended = False
        self._finished = False
        self._ready: deque[AudioChunk | WordTiming] = deque()
        self._frames = 0  # audio delivered so far
        self._pcm = Base64PCM(PROVIDER)
        self._words = _Words()

    async def __aenter__(self) -> ElevenLabsStream:
        await self._socket.__aenter__()
        try:
            await self._socket.send_json(self._tts._first_message())
        except BaseException as exc:
            await self._socket.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # Closing the socket mid-generation is how ElevenLabs is told to stop.
        return await self._socket.__aexit__(exc_type, exc, tb)

    async def push(self, text: str) -> None:
        if not text:
            return  # an empty text would end the stream
        self._check_open()
        await self._socket.send_json({"text": text})

    async def flush(self) -> None:
        self._check_open()
        await self._socket.send_json({"text": " ", "flush": True})

    async def end(self) -> None:
        if not self._ended:
            self._ended = True
            await self._socket.send_json({"text": ""})

    def _check_open(self) -> None:
        if self._ended:
            raise ProviderError("text pushed after end()", provider=PROVIDER)

    def __aiter__(self) -> ElevenLabsStream:
        return self

    async def __anext__(self) -> AudioChunk | WordTiming:
        """The next audio chunk or word timing (a class, not a generator: leaving the loop
        early needs no ``aclose``, the socket closes with the ``open_stream`` block)."""
        while not self._ready:
            if self._finished:
                raise StopAsyncIteration
            await self._read()
        return self._ready.popleft()

    async def _read(self) -> None:
        try:
            message = await self._socket.receive_json()
        except ServiceClosed as exc:
            raise self._error(exc.reason or f"close code {exc.code}", None) from None
        if message is None:
            self._finish()
            return
        if message.get("error") or (message.get("message") and not message.get("audio")):
            raise self._error(str(message.get("message") or ""), message.get("error"))
        audio = message.get("audio")
        if isinstance(audio, str) and audio:
            pcm = self._pcm.decode(audio)
            rate = self._tts.sample_rate
            alignment = message.get("alignment") or message.get("normalizedAlignment")
            # alignment times count from this message's audio: offset them by what came before
            self._ready.extend(self._words.feed(alignment, self._frames / rate))
            if pcm:
                self._frames += len(pcm) // 2
                self._ready.append(AudioChunk(pcm, rate))
        if message.get("isFinal"):
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        self._ready.extend(self._words.finish())

    def _error(self, message: str, code: object) -> ProviderError:
        o = self._tts.options
        return speech_service_error(
            self._tts._ctx, message, code, voice_id=o.voice_id, model=o.model, auth_words=_AUTH
        )


class _Words:
    """Builds words out of ElevenLabs' per-character alignment, across messages."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._start = 0.0
        self._end = 0.0

    def feed(self, alignment: object, offset: float) -> list[WordTiming]:
        if not isinstance(alignment, dict):
            return []
        chars = alignment.get("chars") or []
        starts = alignment.get("charStartTimesMs") or []
        durations = alignment.get("charDurationsMs") or []
        if not (len(chars) == len(starts) == len(durations)):
            logger.debug("%s: ignoring an alignment of mismatched lengths", PROVIDER)
            return []
        done: list[WordTiming] = []
        for char, start, duration in zip(chars, starts, durations, strict=True):
            try:
                begin = offset + float(start) / 1000
                finish = begin + float(duration) / 1000
            except (TypeError, ValueError):
                return done
            if not isinstance(char, str) or char.isspace():
                done.extend(self.finish())
                continue
            if not self._chars:
                self._start = begin
                self._end = finish
            self._chars.append(char)
            self._end = max(self._end, finish)
        return done

    def finish(self) -> list[WordTiming]:
        if not self._chars:
            return []
        word = WordTiming("".join(self._chars), self._start, self._end)
        self._chars = []
        return [word]
