"""One ``transcribe`` call: the audio pumped to Deepgram over a WebSocket that survives drops.

Three jobs run side by side for the whole call: the *pump* reads the caller's audio into a
buffer (so a reconnect never cancels the caller's iterator midway), the *link* keeps a
connection open, sending audio and KeepAlives and reading results, and the generator hands the
results on. Audio sent since the last final result is kept; when the connection drops it is sent
again on a new connection, so the words being spoken when it dropped are still transcribed, and
final text already received is never sent twice. When reconnecting fails, the call raises a
:class:`~avatarkit.errors.ProviderConnectionError` saying how much was transcribed.

Built on httpx-ws (wsproto over anyio), so it runs on asyncio and trio alike.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
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

from avatarkit.errors import ProviderConnectionError, ProviderError, ProviderHTTPError
from avatarkit.http import RequestContext, status_error
from avatarkit.providers import AudioChunk, Transcript
from avatarkit_deepgram.options import DeepgramSTTOptions
from avatarkit_deepgram.protocol import (
    CLOSE_STREAM,
    FINALIZE,
    KEEP_ALIVE,
    TranscriptMapper,
    listen_url,
)

__all__ = ["DeepgramStream"]

logger = logging.getLogger(__name__)

#: Close codes after which reconnecting cannot help: the request itself was refused.
_FATAL_CLOSE = {1002, 1003, 1007, 1008, 1009, 1010}
#: Largest binary frame sent when replaying buffered audio (100 ms at 16 kHz).
_REPLAY_FRAME = 3200
_TRANSPORT_ERRORS = (HTTPXWSException, wsproto.utilities.LocalProtocolError, OSError)
#: Seconds a failed send waits for the receiver to read the server's close reason.
_CLOSE_REASON_WAIT = 1.0


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


class DeepgramStream:
    """The state of one ``transcribe`` call; see the module docstring."""

    def __init__(
        self, options: DeepgramSTTOptions, api_key: str, ctx: RequestContext, provider: str
    ) -> None:
        self.options = options
        self.provider = provider
        self._api_key = api_key
        self._ctx = ctx
        self._url = listen_url(options)
        self._rate = options.sample_rate
        self.mapper = TranscriptMapper()
        # audio: sample positions are counted from the start of the call
        self._replay = bytearray()  # samples [_replay_start, _sent) not yet finalised
        self._replay_start = 0
        self._sent = 0
        self._lost = 0.0  # seconds of unfinalised audio that did not fit the replay buffer
        self._last_sent = 0.0
        self._ws: AsyncWebSocketSession | None = None
        self.connections = 0
        self._attempts = 0  # reconnections since the last final result

    # -- the generator -----------------------------------------------------------------------

    async def run(self, audio: AsyncIterator[AudioChunk]) -> AsyncGenerator[Transcript, None]:
        """Yield transcripts until the audio ends and Deepgram has answered for all of it."""
        frames_in, frames_out = anyio.create_memory_object_stream[bytes](math.inf)
        results_in, results_out = anyio.create_memory_object_stream[Transcript | BaseException](256)
        failure: BaseException | None = None
        async with httpx.AsyncClient(timeout=self.options.connect_timeout) as client:
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
                        await aclose()  # an abandoned source is closed now, not when collected

    def _pcm(self, chunk: AudioChunk) -> bytes:
        if chunk.sample_rate != self._rate or chunk.channels != 1:
            raise ProviderError(
                f"got {chunk.channels}-channel audio at {chunk.sample_rate} Hz; this STT takes "
                f"mono PCM16 at its sample_rate, {self._rate} Hz (the session resamples for it)",
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
        """Connect, and reconnect after drops, until the stream is closed; errors go to
        ``results`` (a background task has no caller to raise to)."""
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
        said = self.mapper.finals
        pending = (self._sent - self._replay_start) / self._rate
        if self.connections == 0:
            message = f"cannot connect to {self._ctx.base_url}: {why}"
        else:
            message = (
                f"the connection to {self._ctx.base_url} dropped and {attempts} reconnection(s) "
                f"failed: {why}; {said} final transcript(s) were delivered, the last "
                f"{pending:.1f}s of audio were not transcribed"
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
        ExceptionGroup), so the outcome is carried out in variables.
        """
        outcome: BaseException | None = None
        opened = finished = False
        headers = {"Authorization": f"Token {self._api_key}"}
        try:
            # the handshake is bounded by the client's timeout (connect_timeout)
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
                self.mapper.offset = self._replay_start / self._rate
                self.mapper.final_until = 0.0
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
                outcome = _Dropped(f"no handshake within {self.options.connect_timeout:g}s")
            else:
                outcome = _Dropped(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if outcome is not None:
            raise outcome

    async def _refused(self, response: httpx.Response) -> BaseException:
        """The error for a handshake answered with an HTTP status instead of an upgrade."""
        detail = response.headers.get("dg-error")
        try:
            body: Any = json.loads(await response.aread())
            if isinstance(body, dict):
                detail = body.get("err_msg") or body.get("message") or detail
        except Exception:  # a body already closed, or not JSON: the header will do
            body = None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            return _Dropped(f"HTTP {status} at the handshake")
        error: ProviderHTTPError = status_error(
            status,
            self._ctx,
            detail=str(detail) if detail else None,
            request_id=response.headers.get("dg-request-id"),
            body=body,
        )
        return error

    async def _converse(
        self,
        ws: AsyncWebSocketSession,
        frames: ObjectReceiveStream[bytes],
        results: ObjectSendStream[Transcript | BaseException],
    ) -> None:
        """Send audio and read results on ``ws`` until the stream is complete; raises
        :class:`_Dropped` or a :class:`ProviderError` otherwise."""
        self._last_sent = anyio.current_time()
        closing = anyio.Event()
        received_all = anyio.Event()
        problems: list[BaseException] = []

        async def guarded(job: Callable[[], Awaitable[None]], *, last: bool) -> None:
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
            else:
                if not last:
                    return
            tg.cancel_scope.cancel()

        async def receive() -> None:
            try:
                await self._receive(ws, results, closing)
            finally:
                received_all.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(guarded, lambda: self._send_audio(ws, frames, closing), last=True)
            )
            tg.start_soon(
                functools.partial(guarded, lambda: self._keep_alive(ws, closing), last=False)
            )
            tg.start_soon(functools.partial(guarded, receive, last=True))
        if problems:  # the server's own reason first: it says whether to reconnect
            raise _first_cause(problems)

    async def _send(self, ws: AsyncWebSocketSession, data: bytes | str) -> None:
        """One frame, shielded (a half-written frame corrupts the stream) and bounded."""
        with anyio.move_on_after(self.options.connect_timeout, shield=True) as scope:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_text(data)
        if scope.cancelled_caught:
            raise _Dropped("a send timed out")
        self._last_sent = anyio.current_time()

    async def _resend(self, ws: AsyncWebSocketSession) -> None:
        """Send the audio that was not finalised on the previous connection."""
        if self._lost:
            logger.warning(
                "%s: %.1fs of audio before the drop exceeded replay_seconds and is not transcribed",
                self.provider,
                self._lost,
            )
            self._lost = 0.0
        data = bytes(self._replay)
        for i in range(0, len(data), _REPLAY_FRAME):
            await self._send(ws, data[i : i + _REPLAY_FRAME])

    async def _send_audio(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes], closing: anyio.Event
    ) -> None:
        """Re-send what was not finalised, then the caller's audio, then CloseStream; wait
        ``close_timeout`` for the server to close (returning ends the connection)."""
        await self._resend(ws)
        async for data in frames:
            self._keep(data)
            await self._send(ws, data)
        closing.set()
        await self._send(ws, CLOSE_STREAM)
        await anyio.sleep(self.options.close_timeout)
        logger.warning(
            "%s: no close within %gs of CloseStream; stopping",
            self.provider,
            self.options.close_timeout,
        )

    def _keep(self, data: bytes) -> None:
        """Remember ``data`` until a final result covers it (bounded by replay_seconds)."""
        self._replay += data
        self._sent += len(data) // 2
        limit = round(self.options.replay_seconds * self._rate) * 2
        if len(self._replay) > limit:
            extra = len(self._replay) - limit
            extra += extra % 2
            del self._replay[:extra]
            self._replay_start += extra // 2
            self._lost += extra / 2 / self._rate

    def _finalised(self) -> None:
        """A final result covers audio up to ``mapper.final_until``: stop keeping it."""
        done = round(self.mapper.offset * self._rate + self.mapper.final_until * self._rate)
        drop = min(done, self._sent) - self._replay_start
        if drop > 0:
            del self._replay[: 2 * drop]
            self._replay_start += drop

    async def _keep_alive(self, ws: AsyncWebSocketSession, closing: anyio.Event) -> None:
        interval = self.options.keepalive_interval
        while not closing.is_set():
            idle = anyio.current_time() - self._last_sent
            if idle >= interval:
                await self._send(ws, KEEP_ALIVE)
                continue
            await anyio.sleep(interval - idle)

    async def _receive(
        self,
        ws: AsyncWebSocketSession,
        results: ObjectSendStream[Transcript | BaseException],
        closing: anyio.Event,
    ) -> None:
        """Read results until the server closes after CloseStream; a close before is a drop."""
        while True:
            try:
                event = await ws.receive()
            except WebSocketDisconnect as exc:
                if closing.is_set() and exc.code in (1000, 1001, 1005):
                    return
                raise self._closed(exc) from None
            if isinstance(event, wsproto.events.TextMessage):
                await self._handle(event.data, results)

    def _closed(self, exc: WebSocketDisconnect) -> BaseException:
        reason = self._ctx.clean(exc.reason or "")
        said = f" ({reason})" if reason else ""
        if exc.code in _FATAL_CLOSE:
            return ProviderError(
                f"Deepgram closed the stream with code {exc.code}{said}: check the options "
                "(model, language, sample_rate)",
                provider=self.provider,
            )
        return _Dropped(
            f"Deepgram closed the WebSocket with code {exc.code}{said}", from_server=True
        )

    async def _handle(
        self, raw: str, results: ObjectSendStream[Transcript | BaseException]
    ) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            logger.debug("%s: ignoring a non-JSON message: %.200r", self.provider, raw)
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "Error":
            detail = message.get("description") or message.get("message") or message
            raise ProviderError(
                self._ctx.clean(f"Deepgram reported an error: {detail}"), provider=self.provider
            )
        # shielded: once the mapper counted a transcript, it must be out even if the
        # connection is being ended meanwhile
        with anyio.CancelScope(shield=True):
            for transcript in self.mapper.map(message):
                await results.send(transcript)
        if message.get("type") == "Results" and message.get("is_final"):
            self._finalised()
            self._attempts = 0  # progress: the reconnection budget starts again

    async def finalize(self) -> None:
        """Ask Deepgram to finalise what it has heard so far (``Finalize``)."""
        ws = self._ws
        if ws is not None:
            try:
                await self._send(ws, FINALIZE)
            except (HTTPXWSException, OSError, _Dropped) as exc:
                logger.debug("%s: Finalize not sent: %r", self.provider, exc)
