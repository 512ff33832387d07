"""The ``cartesia`` TTS: Cartesia's TTS WebSocket, one context per turn.

Each turn opens a socket (``/tts/websocket``, ``Authorization: Bearer`` and ``Cartesia-Version``
headers) and one ``context_id``; every text piece is a generation request with ``continue: true``
(a continuation: the pieces are spoken as one utterance, with natural prosody across them), a
sentence end adds ``flush: true``, and the end is an empty transcript with ``continue: false``.
Cartesia answers with ``chunk`` (base64 PCM), ``timestamps`` (words with start/end seconds from
the context's first sample), ``flush_done``, ``done`` and ``error`` messages. Leaving early sends
``cancel`` for the context and closes the socket.

A socket per turn (rather than one shared socket) keeps every turn's I/O inside its own task and
cancel scope; the handshake overlaps the LLM's time to first token. Built on
:class:`avatarkit.websocket.ServiceSocket` (httpx-ws): asyncio and trio.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from avatarkit.errors import ProviderError
from avatarkit.http import KeyedClient, keyed_context
from avatarkit.providers import AudioChunk, WordTiming
from avatarkit.websocket import (
    Base64PCM,
    ServiceClosed,
    ServiceSocket,
    speech_service_error,
)
from avatarkit_cartesia.options import CartesiaOptions

__all__ = ["CartesiaStream", "CartesiaTTS"]

logger = logging.getLogger(__name__)
PROVIDER = "cartesia TTS"
KEY_ENV = "CARTESIA_API_KEY"
KEY_PATTERN = re.compile(r"\bsk_car_[A-Za-z0-9]{12,}")
#: What in an error message means the key was refused.
_AUTH = ("api key", "api_key", "unauthor", "401")


class CartesiaTTS(KeyedClient):
    """Incremental TTS over Cartesia's WebSocket (also usable a sentence at a time)."""

    provider = PROVIDER

    def __init__(self, **options: Any) -> None:
        self.options = CartesiaOptions(**options)
        self.sample_rate = self.options.sample_rate
        o = self.options
        self._ctx = keyed_context(
            provider=PROVIDER,
            api_key=o.api_key,
            env_var=KEY_ENV,
            key_pattern=KEY_PATTERN,
            base_url=o.base_url,
            model=o.model,
            timeout=o.timeout,
        )
        self._timeout = self.options.timeout

    def __repr__(self) -> str:
        o = self.options
        return f"CartesiaTTS(voice_id={o.voice_id!r}, model={o.model!r}, base_url={o.base_url!r})"

    def open_stream(self) -> CartesiaStream:
        """One turn's stream: ``async with tts.open_stream() as stream:``."""
        return CartesiaStream(self)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """The sentence path: one context for ``text``, audio only."""
        if not text.strip():
            return
        async with self.open_stream() as stream:
            await stream.push(text)
            await stream.end()
            async for item in stream:
                if isinstance(item, AudioChunk):
                    yield item

    def _url(self) -> str:
        parts = urlsplit(self.options.base_url.rstrip("/"))
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        return urlunsplit((scheme, parts.netloc, f"{parts.path}/tts/websocket", "", ""))

    def _request(self, context_id: str, transcript: str, **extra: Any) -> dict[str, Any]:
        o = self.options
        request: dict[str, Any] = {
            "context_id": context_id,
            "model_id": o.model,
            "transcript": transcript,
            "voice": {"mode": "id", "id": o.voice_id},
            "language": o.language,
            "output_format": {
                "container": "raw",
                "encoding": "pcm_s16le",
                "sample_rate": o.sample_rate,
            },
            "add_timestamps": True,
            **extra,
        }
        if o.speed is not None:
            request["generation_config"] = {"speed": o.speed}
        if o.max_buffer_delay_ms is not None:
            request["max_buffer_delay_ms"] = o.max_buffer_delay_ms
        return request


class CartesiaStream:
    """One turn as one Cartesia context; see :class:`avatarkit.providers.SpeechStream`."""

    def __init__(self, tts: CartesiaTTS) -> None:
        self._tts = tts
        self.context_id = f"avatarkit-{uuid.uuid4().hex}"
        self._socket = ServiceSocket(
            tts._url(),
            ctx=tts._ctx,
            headers={
                "Authorization": f"Bearer {tts._ctx.api_key}",
                "Cartesia-Version": tts.options.api_version,
            },
            client=tts._client,
            connect_timeout=tts.options.timeout,
        )
        self._sent_text = False
        self._ended = False
        self._finished = False
        self._ready: deque[AudioChunk | WordTiming] = deque()
        self._pcm = Base64PCM(PROVIDER)

    async def __aenter__(self) -> CartesiaStream:
        await self._socket.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if not self._finished and self._sent_text:
            # Tell Cartesia to stop generating (best effort, bounded): the socket closes anyway.
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await self._socket.send_json({"context_id": self.context_id, "cancel": True})
                except ProviderError as failure:
                    logger.debug("%s: cancel not sent: %s", PROVIDER, failure)
        return await self._socket.__aexit__(exc_type, exc, tb)

    async def push(self, text: str) -> None:
        if not text:
            return
        if self._ended:
            raise ProviderError("text pushed after end()", provider=PROVIDER)
        self._sent_text = True
        await self._socket.send_json(
            self._tts._request(self.context_id, text, **{"continue": True})
        )

    async def flush(self) -> None:
        if self._ended:
            raise ProviderError("flush() after end()", provider=PROVIDER)
        if self._sent_text:
            await self._socket.send_json(
                self._tts._request(self.context_id, "", flush=True, **{"continue": True})
            )

    async def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if not self._sent_text:
            self._finished = True  # nothing was asked for: no context to close
            return
        await self._socket.send_json(self._tts._request(self.context_id, "", **{"continue": False}))

    def __aiter__(self) -> CartesiaStream:
        return self

    async def __anext__(self) -> AudioChunk | WordTiming:
        """The next audio chunk or word timing (a class, not a generator: leaving the loop
        early needs no ``aclose``; the context is cancelled with the ``open_stream`` block)."""
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
            if not self._finished:
                raise ProviderError(
                    "the service closed the WebSocket before the turn was done", provider=PROVIDER
                )
            return
        context = message.get("context_id")
        if context is not None and context != self.context_id:
            logger.debug("%s: ignoring a message for context %r", PROVIDER, context)
            return
        kind = message.get("type")
        if kind == "error":
            detail = message.get("message") or message.get("error") or message.get("title") or ""
            raise self._error(str(detail), message.get("error_code") or message.get("status_code"))
        if kind == "chunk":
            self._audio(message.get("data"))
        elif kind == "timestamps":
            self._ready.extend(_words(message.get("word_timestamps")))
        if kind == "done" or (kind != "error" and message.get("done") is True):
            self._finished = True

    def _audio(self, data: object) -> None:
        if not isinstance(data, str) or not data:
            return
        pcm = self._pcm.decode(data)
        if pcm:
            self._ready.append(AudioChunk(pcm, self._tts.sample_rate))

    def _error(self, message: str, code: object) -> ProviderError:
        o = self._tts.options
        return speech_service_error(
            self._tts._ctx, message, code, voice_id=o.voice_id, model=o.model, auth_words=_AUTH
        )


def _words(timestamps: object) -> list[WordTiming]:
    if not isinstance(timestamps, dict):
        return []
    words = timestamps.get("words") or []
    starts = timestamps.get("start") or []
    ends = timestamps.get("end") or []
    if not (len(words) == len(starts) == len(ends)):
        logger.debug("%s: ignoring word timestamps of mismatched lengths", PROVIDER)
        return []
    timings: list[WordTiming] = []
    for word, start, end in zip(words, starts, ends, strict=True):
        try:
            timings.append(WordTiming(str(word), float(start), float(end)))
        except (TypeError, ValueError):
            logger.debug("%s: ignoring a malformed word timestamp", PROVIDER)
    return timings
