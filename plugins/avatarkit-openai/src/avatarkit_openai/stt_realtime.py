"""One realtime ``transcribe`` call: OpenAI's transcription WebSocket, surviving drops.

Wire (``/v1/realtime?intent=transcription``, ``Authorization: Bearer``): the client sends
``session.update`` (a ``transcription`` session: PCM16 at 24 kHz, the model, the server's VAD),
then ``input_audio_buffer.append`` with base64 audio, and ``input_audio_buffer.commit`` for
speech still open when the audio ends (known once the server answered a second
``session.update``, sent after the last audio as a barrier). The server answers
``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed`` and, per item,
``conversation.item.input_audio_transcription.delta`` then ``.completed`` (or ``.failed``);
``error`` events carry problems.

Completions of different items may arrive out of order: finals are handed on in the order the
items were committed. Audio since the end of the last completed item is kept; after a dropped
connection it is sent again on a new one, so no words are lost and none repeated. Built on
httpx-ws (wsproto over anyio), so it runs on asyncio and trio alike; the SDK's own realtime
client is built on ``websockets``' asyncio API and cannot run under trio.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import wsproto.events
import wsproto.utilities
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
    aconnect_ws,
)

from avatarkit.errors import ProviderConnectionError, ProviderError
from avatarkit.http import RequestContext, status_error
from avatarkit.providers import AudioChunk, Transcript
from avatarkit_openai.options import OpenAISTTOptions

__all__ = ["REALTIME_RATE", "RealtimeStream", "realtime_url", "session_update"]

logger = logging.getLogger(__name__)

#: The realtime API's PCM rate.
REALTIME_RATE = 24000
#: Largest append when replaying buffered audio (100 ms).
_REPLAY_FRAME = 4800
_TRANSPORT_ERRORS = (HTTPXWSException, wsproto.utilities.LocalProtocolError, OSError)
#: Seconds a failed send waits for the receiver to read the server's close reason.
_CLOSE_REASON_WAIT = 1.0
_FATAL_CLOSE = {1002, 1003, 1007, 1008, 1009, 1010}
_EMPTY_COMMIT = "input_audio_buffer_commit_empty"


def realtime_url(base_url: str) -> str:
    """``{base_url}/realtime?intent=transcription`` (an http(s) URL; httpx-ws upgrades it)."""
    return f"{base_url.rstrip('/')}/realtime?intent=transcription"


def session_update(options: OpenAISTTOptions) -> dict[str, Any]:
    """The first message: a transcription session taking 24 kHz PCM16."""
    transcription: dict[str, Any] = {"model": options.model}
    if options.language:
        transcription["language"] = options.language
    if options.prompt:
        transcription["prompt"] = options.prompt
    vad = options.turn_detection
    noise = options.noise_reduction
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                    "transcription": transcription,
                    "turn_detection": vad.wire() if vad is not None else None,
                    "noise_reduction": {"type": noise} if noise else None,
                }
            },
        },
    }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return ", ".join(_describe(e) for e in exc.exceptions)
    return type(exc).__name__


class _Dropped(Exception):
    """The connection ended before the stream was complete (carries why)."""

    def __init__(self, why: str, *, from_server: bool = False) -> None:
        super().__init__(why)
        #: the server closed it and said why (more telling than a failed send)
        self.from_server = from_server


def _first_cause(problems: list[BaseException]) -> BaseException:
    """The server's refusal, else its close, else whatever failed first."""
    for wanted in (ProviderError, _Dropped):
        for problem in problems:
            if isinstance(problem, wanted) and getattr(problem, "from_server", True):
                return problem
    return problems[0]


@dataclass
class _Item:
    """A committed stretch of the user's audio and its transcription so far."""

    start: float | None = None  # seconds of the current connection
    end: float | None = None
    text: str = ""
    done: str | None = None  # the completed transcript


class RealtimeStream:
    """The state of one realtime ``transcribe`` call; see the module docstring."""

    def __init__(
        self,
        options: OpenAISTTOptions,
        *,
        url: str,
        headers: Mapping[str, str],
        ctx: RequestContext,
        provider: str,
    ) -> None:
        self.options = options
        self.provider = provider
        self._url = url
        self._headers = dict(headers)
        self._ctx = ctx
        self._rate = REALTIME_RATE
        self._server_vad = options.turn_detection is not None
        # audio: sample positions counted from the start of the call
        self._replay = bytearray()  # samples [_replay_start, _sent) not yet transcribed
        self._replay_start = 0
        self._sent = 0
        self._lost = 0.0
        self._offset = 0.0  # where the current connection's audio starts (s)
        self._ws: AsyncWebSocketSession | None = None
        self.connections = 0
        self.finals = 0
        self._attempts = 0
        self._reset()

    def _reset(self) -> None:
        """Forget the server-side state of a connection (a new one starts from nothing)."""
        self._items: dict[str, _Item] = {}
        self._order: list[str] = []  # committed items not yet handed on, in commit order
        self._speaking: str | None = None  # the item of speech that has not stopped
        self._uncommitted = 0  # samples appended since the last commit (no server VAD)
        self._committing = False  # a commit of ours awaits its answer
        self._commit_at = 0  # samples of this connection when we committed
        self._changed = anyio.Event()
        self._updates = 0  # session.updated events received

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- the generator -----------------------------------------------------------------------

    async def run(self, audio: AsyncIterator[AudioChunk]) -> AsyncGenerator[Transcript, None]:
        """Yield transcripts until the audio ends and every utterance in it is transcribed."""
        frames_in, frames_out = anyio.create_memory_object_stream[bytes](math.inf)
        results_in, results_out = anyio.create_memory_object_stream[Transcript | BaseException](256)
        failure: BaseException | None = None
        async with httpx.AsyncClient(timeout=self.options.timeout) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, audio, frames_in, results_in.clone())
                tg.start_soon(self._link, client, frames_out, results_in)
                async with results_out:
                    async for item in results_out:
                        if isinstance(item, BaseException):
                            failure = item
                            break
                        try:
                            yield item
                        except GeneratorExit:  # closed early: leave the task group normally
                            break
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _pump(
        self,
        audio: AsyncIterator[AudioChunk],
        frames: ObjectSendStream[bytes],
        results: ObjectSendStream[Transcript | BaseException],
    ) -> None:
        """Read the caller's audio into ``frames``; never cancelled by a reconnect."""
        async with frames, results:
            try:
                async for chunk in audio:
                    await frames.send(self._pcm(chunk))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the call is over
            except Exception as exc:  # the caller's iterator failed: the call fails with it
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await results.send(exc)
            finally:
                aclose = getattr(audio, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True), suppress(Exception):
                        await aclose()

    def _pcm(self, chunk: AudioChunk) -> bytes:
        if chunk.sample_rate != self._rate or chunk.channels != 1:
            raise ProviderError(
                f"got {chunk.channels}-channel audio at {chunk.sample_rate} Hz; the realtime "
                f"API takes mono PCM16 at {self._rate} Hz (the session resamples for it)",
                provider=self.provider,
            )
        return chunk.data

    # -- the connection ------------------------------------------------------------------------

    async def _link(
        self,
        client: httpx.AsyncClient,
        frames: ObjectReceiveStream[bytes],
        results: ObjectSendStream[Transcript | BaseException],
    ) -> None:
        async with results, frames:
            while True:
                try:
                    await self._connection(client, frames, results)
                except ProviderError as exc:
                    with suppress(anyio.BrokenResourceError):
                        await results.send(exc)
                    return
                except _Dropped as exc:
                    attempts = self._attempts
                    if self.connections == 0 or attempts >= self.options.max_reconnects:
                        with suppress(anyio.BrokenResourceError):
                            await results.send(self._gave_up(str(exc), attempts))
                        return
                    attempts = self._attempts = attempts + 1
                    logger.warning(
                        "%s: %s; reconnecting (%d of %d), re-sending %.2fs of audio",
                        self.provider,
                        exc,
                        attempts,
                        self.options.max_reconnects,
                        (self._sent - self._replay_start) / self._rate,
                    )
                    await anyio.sleep(min(0.1 * 2 ** (attempts - 1), 2.0))
                    continue
                return

    def _gave_up(self, why: str, attempts: int) -> ProviderConnectionError:
        pending = (self._sent - self._replay_start) / self._rate
        if self.connections == 0:
            message = f"cannot open the realtime WebSocket at {self._ctx.base_url}: {why}"
        else:
            message = (
                f"the realtime connection to {self._ctx.base_url} dropped and {attempts} "
                f"reconnection(s) failed: {why}; {self.finals} final transcript(s) were "
                f"delivered, the last {pending:.1f}s of audio were not transcribed"
            )
        return ProviderConnectionError(self._ctx.clean(message), provider=self.provider)

    async def _connection(
        self,
        client: httpx.AsyncClient,
        frames: ObjectReceiveStream[bytes],
        results: ObjectSendStream[Transcript | BaseException],
    ) -> None:
        """One connection from handshake to the end of the stream (raises if it ended sooner).

        Nothing may propagate out of httpx-ws's ``async with`` (it would come wrapped in an
        ExceptionGroup), so the outcome is carried out in a variable.
        """
        outcome: BaseException | None = None
        opened = finished = False
        headers = {**self._headers, "Authorization": f"Bearer {self._ctx.api_key}"}
        try:
            connecting: AbstractAsyncContextManager[AsyncWebSocketSession] = aconnect_ws(
                self._url,
                client,
                headers=headers,
                keepalive_ping_interval_seconds=self.options.ping_interval,
                keepalive_ping_timeout_seconds=self.options.ping_timeout,
            )
            async with connecting as ws:
                opened = True
                self.connections += 1
                self._ws = ws
                self._offset = self._replay_start / self._rate
                self._reset()
                try:
                    await self._converse(ws, frames, results)
                    finished = True
                except (_Dropped, ProviderError) as exc:
                    outcome = exc
                finally:
                    self._ws = None
        except WebSocketUpgradeError as exc:
            outcome = await self._refused(exc.response)
        except (HTTPXWSException, httpx.HTTPError, OSError, ExceptionGroup) as exc:
            if opened and finished:  # closing a connection that had already died
                logger.debug("%s: closing the WebSocket: %r", self.provider, exc)
            elif opened:  # the connection failed under us (e.g. no answer to a ping)
                outcome = _Dropped(f"the WebSocket failed ({_describe(exc)})")
            elif isinstance(exc, httpx.TimeoutException):
                outcome = _Dropped(f"no handshake within {self.options.timeout:g}s")
            else:
                outcome = _Dropped(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if outcome is not None:
            raise outcome

    async def _refused(self, response: httpx.Response) -> BaseException:
        status = response.status_code
        detail: str | None = None
        body: Any = None
        with suppress(Exception):  # a body already closed, or not JSON
            body = json.loads(await response.aread())
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                detail = error["message"]
        if status in (408, 429) or status >= 500:
            return _Dropped(f"HTTP {status} at the handshake")
        return status_error(
            status,
            self._ctx,
            detail=detail,
            request_id=response.headers.get("x-request-id"),
            body=body,
        )

    async def _converse(
        self,
        ws: AsyncWebSocketSession,
        frames: ObjectReceiveStream[bytes],
        results: ObjectSendStream[Transcript | BaseException],
    ) -> None:
        problems: list[BaseException] = []
        received_all = anyio.Event()

        async def guarded(job: Callable[[], Awaitable[None]]) -> None:
            try:
                await job()
            except (_Dropped, ProviderError) as exc:
                problems.append(exc)
            except _TRANSPORT_ERRORS as exc:
                problems.append(_Dropped(f"the WebSocket dropped ({type(exc).__name__})"))
                # a send fails once the server has closed: let the receiver read why (bounded)
                with anyio.move_on_after(_CLOSE_REASON_WAIT):
                    await received_all.wait()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the caller stopped reading: the call is over
            tg.cancel_scope.cancel()

        async def receive() -> None:
            try:
                await self._receive(ws, results)
            finally:
                received_all.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(guarded, lambda: self._send_audio(ws, frames)))
            tg.start_soon(functools.partial(guarded, receive))
        if problems:  # the server's own reason first: it says whether to reconnect
            raise _first_cause(problems)

    async def _send(self, ws: AsyncWebSocketSession, message: dict[str, Any]) -> None:
        """One message, shielded (a half-written frame corrupts the stream) and bounded."""
        with anyio.move_on_after(self.options.timeout, shield=True) as scope:
            await ws.send_text(json.dumps(message, separators=(",", ":")))
        if scope.cancelled_caught:
            raise _Dropped("a send timed out")

    async def _append(self, ws: AsyncWebSocketSession, data: bytes) -> None:
        await self._send(
            ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
        )
        self._uncommitted += len(data) // 2

    async def _send_audio(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes]
    ) -> None:
        """Configure the session, re-send what was not transcribed, send the caller's audio,
        commit open speech at its end and wait for the last transcripts (returning ends the
        connection)."""
        await self._send(ws, session_update(self.options))
        if self._lost:
            logger.warning(
                "%s: %.1fs of audio before the drop exceeded replay_seconds and is not transcribed",
                self.provider,
                self._lost,
            )
            self._lost = 0.0
        data = bytes(self._replay)
        for i in range(0, len(data), 2 * _REPLAY_FRAME):
            await self._append(ws, data[i : i + 2 * _REPLAY_FRAME])
        async for data in frames:
            self._keep(data)
            await self._append(ws, data)
        if self._server_vad and self._uncommitted:
            # a barrier: once the server answers this, its VAD has seen every append before
            # it, so whether speech is still open is known
            await self._send(ws, session_update(self.options))
            with anyio.move_on_after(self.options.close_timeout):
                while self._updates < 2:  # the first update's answer, then this one's
                    await self._changed.wait()
        if self._speaking is not None or (not self._server_vad and self._uncommitted):
            self._committing = True
            self._commit_at = self._uncommitted
            await self._send(ws, {"type": "input_audio_buffer.commit"})
        with anyio.move_on_after(self.options.close_timeout):
            while self._committing or self._order:
                await self._changed.wait()
            return
        logger.warning(
            "%s: the last transcripts did not come within %gs of the end of the audio",
            self.provider,
            self.options.close_timeout,
        )

    def _keep(self, data: bytes) -> None:
        self._replay += data
        self._sent += len(data) // 2
        limit = round(self.options.replay_seconds * self._rate) * 2
        if len(self._replay) > limit:
            extra = len(self._replay) - limit
            extra += extra % 2
            del self._replay[:extra]
            self._replay_start += extra // 2
            self._lost += extra / 2 / self._rate

    def _transcribed(self, until: float) -> None:
        """Audio up to ``until`` (seconds of this connection) is transcribed: stop keeping it."""
        done = round((self._offset + until) * self._rate)
        drop = min(done, self._sent) - self._replay_start
        if drop > 0:
            del self._replay[: 2 * drop]
            self._replay_start += drop

    async def _receive(
        self, ws: AsyncWebSocketSession, results: ObjectSendStream[Transcript | BaseException]
    ) -> None:
        while True:
            try:
                event = await ws.receive()
            except WebSocketDisconnect as exc:
                reason = self._ctx.clean(exc.reason or "")
                said = f" ({reason})" if reason else ""
                if exc.code in _FATAL_CLOSE:
                    raise ProviderError(
                        f"the server closed the stream with code {exc.code}{said}",
                        provider=self.provider,
                    ) from None
                raise _Dropped(
                    f"the server closed the WebSocket with code {exc.code}{said}", from_server=True
                ) from None
            if isinstance(event, wsproto.events.TextMessage):
                try:
                    message = json.loads(event.data)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    # shielded: once the state says a transcript is out, it must be out even
                    # if the connection is being ended meanwhile
                    with anyio.CancelScope(shield=True):
                        for transcript in self._handle(message):
                            await results.send(transcript)
                    self._notify()

    # -- server events ---------------------------------------------------------------------------

    def _seconds(self, value: object) -> float | None:
        return self._offset + value / 1000 if isinstance(value, int | float) else None

    def _item(self, message: dict[str, Any]) -> tuple[str, _Item]:
        item_id = str(message.get("item_id"))
        return item_id, self._items.setdefault(item_id, _Item())

    def _handle(self, message: dict[str, Any]) -> list[Transcript]:
        kind = message.get("type")
        if kind == "input_audio_buffer.speech_started":
            item_id, item = self._item(message)
            self._speaking = item_id
            item.start = self._seconds(message.get("audio_start_ms"))
            return [Transcript("speech_started", start=item.start)]
        if kind == "input_audio_buffer.speech_stopped":
            item_id, item = self._item(message)
            if self._speaking == item_id:
                self._speaking = None
            item.end = self._seconds(message.get("audio_end_ms"))
            return [Transcript("speech_ended", end=item.end)]
        if kind == "input_audio_buffer.committed":
            item_id, item = self._item(message)
            if self._speaking == item_id:
                self._speaking = None
            if self._committing:  # ours: it holds everything appended so far
                self._committing = False
                if item.end is None:
                    item.end = self._offset + self._commit_at / self._rate
            self._uncommitted = 0
            if item_id not in self._order:
                self._order.append(item_id)
            return []
        if kind == "conversation.item.input_audio_transcription.delta":
            item_id, item = self._item(message)
            item.text += str(message.get("delta") or "")
            if self._order and self._order[0] == item_id and item.text.strip():
                return [Transcript("interim", item.text, item.start, item.end)]
            return []
        if kind == "conversation.item.input_audio_transcription.completed":
            item_id, item = self._item(message)
            item.done = str(message.get("transcript") or "")
            if item_id not in self._order:
                self._order.append(item_id)
            return self._finals()
        if kind == "conversation.item.input_audio_transcription.failed":
            error = message.get("error") or {}
            detail = error.get("message") if isinstance(error, dict) else error
            raise ProviderError(
                self._ctx.clean(f"transcribing an utterance failed: {detail}"),
                provider=self.provider,
            )
        if kind == "error":
            return self._error(message)
        if kind == "session.updated":
            self._updates += 1
        logger.debug("%s: %s", self.provider, kind)
        return []

    def _finals(self) -> list[Transcript]:
        """Completed items at the head of the commit order, as finals, in that order."""
        out = []
        while self._order and self._items[self._order[0]].done is not None:
            item = self._items.pop(self._order.pop(0))
            text = item.done or ""
            self.finals += 1
            self._attempts = 0  # progress: the reconnection budget starts again
            out.append(
                Transcript("final", text, item.start, item.end, end_of_turn=self._server_vad)
            )
            if item.end is not None:
                self._transcribed(item.end - self._offset)
        return out

    def _error(self, message: dict[str, Any]) -> list[Transcript]:
        error = message.get("error") or {}
        code = error.get("code") if isinstance(error, dict) else None
        if code == _EMPTY_COMMIT:  # our end-of-audio commit found nothing to commit
            self._committing = False
            return []
        detail = error.get("message") if isinstance(error, dict) else error
        raise ProviderError(
            self._ctx.clean(f"the server reported an error ({code or 'no code'}): {detail}"),
            provider=self.provider,
        )
