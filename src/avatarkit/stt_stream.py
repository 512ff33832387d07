"""A live STT call over a WebSocket that survives dropped connections, for plugin authors.

Streaming STT services (Deepgram, OpenAI's realtime transcription) take the user's audio over a
WebSocket for a whole ``transcribe`` call and answer with transcripts. Connections drop; words
must not. :class:`ReconnectingSTTStream` is what such a call shares, whatever the protocol:

- three jobs run side by side: the *pump* reads the caller's audio into a buffer (so a reconnect
  never cancels the caller's iterator midway), the *link* keeps a connection open, sending audio
  and reading results, and :meth:`~ReconnectingSTTStream.run` hands the results on;
- audio sent since the service last said "transcribed up to here" is kept (up to
  ``replay_seconds``) and sent again on a new connection, so the words being spoken when a
  connection dropped are still transcribed and no final is delivered twice;
- reconnections in a row are bounded (``max_reconnects``, reset by every final), with backoff;
  when they run out the call raises a :class:`~avatarkit.errors.ProviderConnectionError` saying
  how much was transcribed; a refused handshake is :func:`~avatarkit.http.status_error`'s advice.

A subclass speaks its protocol through a few hooks: the handshake headers, what to do on a new
connection, how to send the audio, what each JSON message means. Built on httpx-ws (wsproto over
anyio: asyncio and trio alike); a plugin using this module depends on ``httpx-ws``, which the
core does not import at start-up.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import httpx
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from avatarkit.errors import ProviderConnectionError, ProviderError
from avatarkit.http import RequestContext, status_error
from avatarkit.providers import AudioChunk, Transcript
from avatarkit.websocket import read_refused_handshake

if TYPE_CHECKING:
    from httpx_ws import AsyncWebSocketSession

__all__ = ["ConnectionDropped", "ReconnectingSTTStream"]

#: Close codes after which reconnecting cannot help: the request itself was refused.
_FATAL_CLOSE = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
#: Seconds a failed send waits for the receiver to read the server's close reason.
_CLOSE_REASON_WAIT = 1.0

Results = ObjectSendStream[Transcript | BaseException]
Job = Callable[[], Awaitable[None]]


class ConnectionDropped(Exception):
    """The connection ended before the stream was complete (carries why); the link reconnects.

    ``from_server``: the server closed it and said why (more telling than a failed send).
    """

    def __init__(self, why: str, *, from_server: bool = False) -> None:
        super().__init__(why)
        self.from_server = from_server


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return ", ".join(_describe(e) for e in exc.exceptions)
    return type(exc).__name__


def _first_cause(problems: list[BaseException]) -> BaseException:
    """The server's refusal, else its close, else whatever failed first."""
    for wanted in (ProviderError, ConnectionDropped):
        for problem in problems:
            if isinstance(problem, wanted) and getattr(problem, "from_server", True):
                return problem
    return problems[0]


class ReconnectingSTTStream(ABC):
    """The state of one ``transcribe`` call; see the module docstring.

    Subclasses implement :meth:`_handshake_headers`, :meth:`_send_audio` (send
    :meth:`_replay_frames`, then each frame of the caller's audio after :meth:`_keep`-ing it, then
    end the stream the protocol's way; returning ends the connection), :meth:`_handle` (one JSON
    message to transcripts; call :meth:`_forget` and :meth:`_progressed` when the service
    finalised audio) and :meth:`_finals_delivered`; the other hooks have defaults. The wording
    class attributes name the service in messages. Logs go to the subclass's module logger.
    """

    #: How the service is named at the start of a close message, e.g. ``"Deepgram"``.
    server_name: ClassVar[str] = "the server"
    #: Appended to the message of a close that reconnecting cannot help.
    fatal_close_advice: ClassVar[str] = ""
    #: "got 2-channel audio at 8000 Hz; {audio_wanted} 16000 Hz (the session resamples for it)".
    audio_wanted: ClassVar[str] = "this STT takes mono PCM16 at its sample_rate,"
    #: The connection, as named in "the {link_name} to URL dropped and ...".
    link_name: ClassVar[str] = "connection"
    #: "{cannot_connect} URL: why", when the first connection could not be made.
    cannot_connect: ClassVar[str] = "cannot connect to"
    #: Header of a refused handshake's request id.
    request_id_header: ClassVar[str] = "x-request-id"
    #: Largest frame, in bytes, when replaying buffered audio.
    replay_frame_bytes: ClassVar[int] = 3200

    def __init__(
        self,
        *,
        url: str,
        ctx: RequestContext,
        provider: str,
        sample_rate: int,
        timeout: float,
        max_reconnects: int,
        replay_seconds: float,
        ping_interval: float | None,
        ping_timeout: float,
    ) -> None:
        self.provider = provider
        self._url = url
        self._ctx = ctx
        self._rate = sample_rate
        #: bounds the handshake and every send
        self._timeout = timeout
        self._max_reconnects = max_reconnects
        self._replay_seconds = replay_seconds
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._logger = logging.getLogger(type(self).__module__)
        # audio: sample positions are counted from the start of the call
        self._replay = bytearray()  # samples [_replay_start, _sent) not yet finalised
        self._replay_start = 0
        self._sent = 0
        self._lost = 0.0  # seconds of unfinalised audio that did not fit the replay buffer
        self._offset = 0.0  # where the current connection's audio starts (s)
        self._ws: AsyncWebSocketSession | None = None
        #: connections opened so far in this call
        self.connections = 0
        self._attempts = 0  # reconnections since the last final result

    # -- hooks ---------------------------------------------------------------------------------

    @abstractmethod
    def _handshake_headers(self) -> dict[str, str]:
        """Headers of the WebSocket handshake (the key included)."""

    def _connected(self) -> None:
        """A new connection is open (``_offset`` says where its audio starts): reset per-
        connection state."""
        return

    @abstractmethod
    async def _send_audio(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes]
    ) -> None:
        """Send the replay, the caller's audio and the end of the stream; returning ends the
        connection (the receiver is cancelled)."""

    def _side_jobs(self, ws: AsyncWebSocketSession) -> Sequence[Job]:
        """Jobs that run beside sending and receiving (e.g. keep-alives); their end alone does
        not end the connection."""
        return ()

    @abstractmethod
    def _handle(self, message: dict[str, Any]) -> Iterable[Transcript]:
        """The transcripts one JSON message means; raise ProviderError for a fatal one."""

    def _handled(self, message: dict[str, Any]) -> None:
        """After ``message``'s transcripts were handed on."""
        return

    def _closed_normally(self, code: int) -> bool:
        """Whether a close with ``code`` ends the stream as it should (the receiver returns)."""
        return False

    def _refusal_detail(self, response: httpx.Response, body: Any) -> str | None:
        """The server's explanation of a refused handshake (``body``: parsed JSON or None)."""
        return None

    @abstractmethod
    def _finals_delivered(self) -> int:
        """Finals handed on so far (named when giving up)."""

    # -- the generator -------------------------------------------------------------------------

    async def run(self, audio: AsyncIterator[AudioChunk]) -> AsyncGenerator[Transcript, None]:
        """Yield transcripts until the audio ends and the service has answered for all of it."""
        frames_in, frames_out = anyio.create_memory_object_stream[bytes](math.inf)
        results_in, results_out = anyio.create_memory_object_stream[Transcript | BaseException](256)
        failure: BaseException | None = None
        hooks = {"response": [read_refused_handshake]}
        async with httpx.AsyncClient(timeout=self._timeout, event_hooks=hooks) as client:
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
        self, audio: AsyncIterator[AudioChunk], frames: ObjectSendStream[bytes], results: Results
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
                f"got {chunk.channels}-channel audio at {chunk.sample_rate} Hz; "
                f"{self.audio_wanted} {self._rate} Hz (the session resamples for it)",
                provider=self.provider,
            )
        return chunk.data

    # -- the connection ------------------------------------------------------------------------

    async def _link(
        self, client: httpx.AsyncClient, frames: ObjectReceiveStream[bytes], results: Results
    ) -> None:
        """Connect, and reconnect after drops, until the stream is complete; errors go to
        ``results`` (a background task has no caller to raise to)."""
        async with results, frames:
            while True:
                try:
                    await self._connection(client, frames, results)
                except ProviderError as exc:
                    with suppress(anyio.BrokenResourceError):
                        await results.send(exc)
                    return
                except ConnectionDropped as exc:
                    attempts = self._attempts
                    if self.connections == 0 or attempts >= self._max_reconnects:
                        with suppress(anyio.BrokenResourceError):
                            await results.send(self._gave_up(str(exc), attempts))
                        return
                    attempts = self._attempts = attempts + 1
                    self._logger.warning(
                        "%s: %s; reconnecting (%d of %d), re-sending %.2fs of audio",
                        self.provider,
                        exc,
                        attempts,
                        self._max_reconnects,
                        (self._sent - self._replay_start) / self._rate,
                    )
                    await anyio.sleep(min(0.1 * 2 ** (attempts - 1), 2.0))
                    continue
                return

    def _progressed(self) -> None:
        """A final result came: the reconnection budget starts again."""
        self._attempts = 0

    def _gave_up(self, why: str, attempts: int) -> ProviderConnectionError:
        pending = (self._sent - self._replay_start) / self._rate
        if self.connections == 0:
            message = f"{self.cannot_connect} {self._ctx.base_url}: {why}"
        else:
            message = (
                f"the {self.link_name} to {self._ctx.base_url} dropped and {attempts} "
                f"reconnection(s) failed: {why}; {self._finals_delivered()} final transcript(s) "
                f"were delivered, the last {pending:.1f}s of audio were not transcribed"
            )
        return ProviderConnectionError(self._ctx.clean(message), provider=self.provider)

    async def _connection(
        self, client: httpx.AsyncClient, frames: ObjectReceiveStream[bytes], results: Results
    ) -> None:
        """One connection from handshake to the end of the stream (raises if it ended sooner).

        Nothing may propagate out of httpx-ws's ``async with`` (it would come wrapped in an
        ExceptionGroup), so the outcome is carried out in variables.
        """
        from httpx_ws import HTTPXWSException, WebSocketUpgradeError, aconnect_ws

        outcome: BaseException | None = None
        opened = finished = False
        headers = self._handshake_headers()
        try:
            # the handshake is bounded by the client's timeout
            connecting: AbstractAsyncContextManager[AsyncWebSocketSession] = aconnect_ws(
                self._url,
                client,
                headers=headers,
                keepalive_ping_interval_seconds=self._ping_interval,
                keepalive_ping_timeout_seconds=self._ping_timeout,
            )
            async with connecting as ws:
                opened = True
                self.connections += 1
                self._ws = ws
                self._offset = self._replay_start / self._rate
                self._connected()
                try:
                    await self._converse(ws, frames, results)
                    finished = True
                except (ConnectionDropped, ProviderError) as exc:
                    outcome = exc
                finally:
                    self._ws = None
        except WebSocketUpgradeError as exc:
            outcome = await self._refused(exc.response)
        except (HTTPXWSException, httpx.HTTPError, OSError, ExceptionGroup) as exc:
            if opened and finished:  # closing a connection that had already died
                self._logger.debug("%s: closing the WebSocket: %r", self.provider, exc)
            elif opened:  # the connection failed under us (e.g. no answer to a ping)
                outcome = ConnectionDropped(f"the WebSocket failed ({_describe(exc)})")
            elif isinstance(exc, httpx.TimeoutException):
                outcome = ConnectionDropped(f"no handshake within {self._timeout:g}s")
            else:
                outcome = ConnectionDropped(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if outcome is not None:
            raise outcome

    async def _refused(self, response: httpx.Response) -> BaseException:
        """The error for a handshake answered with an HTTP status instead of an upgrade."""
        try:
            body: Any = json.loads(await response.aread())
        except Exception:  # a body already closed, or not JSON
            body = None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            return ConnectionDropped(f"HTTP {status} at the handshake")
        return status_error(
            status,
            self._ctx,
            detail=self._refusal_detail(response, body),
            request_id=response.headers.get(self.request_id_header),
            body=body,
        )

    async def _converse(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes], results: Results
    ) -> None:
        """Send audio and read results on ``ws`` until the stream is complete; raises
        :class:`ConnectionDropped` or a :class:`~avatarkit.errors.ProviderError` otherwise."""
        from httpx_ws import HTTPXWSException
        from wsproto.utilities import LocalProtocolError

        problems: list[BaseException] = []
        received_all = anyio.Event()

        async def guarded(job: Job, *, last: bool) -> None:
            try:
                await job()
            except (ConnectionDropped, ProviderError) as exc:
                problems.append(exc)
            except (HTTPXWSException, LocalProtocolError, OSError) as exc:
                problems.append(ConnectionDropped(f"the WebSocket dropped ({type(exc).__name__})"))
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
                await self._receive(ws, results)
            finally:
                received_all.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(guarded, lambda: self._send_audio(ws, frames), last=True)
            )
            for job in self._side_jobs(ws):
                tg.start_soon(functools.partial(guarded, job, last=False))
            tg.start_soon(functools.partial(guarded, receive, last=True))
        if problems:  # the server's own reason first: it says whether to reconnect
            raise _first_cause(problems)

    async def _receive(self, ws: AsyncWebSocketSession, results: Results) -> None:
        """Read messages until the server closes; a close that is not normal raises."""
        from httpx_ws import WebSocketDisconnect
        from wsproto.events import TextMessage

        while True:
            try:
                event = await ws.receive()
            except WebSocketDisconnect as exc:
                if self._closed_normally(exc.code):
                    return
                raise self._closed(exc.code, exc.reason) from None
            if not isinstance(event, TextMessage):
                continue
            try:
                message = json.loads(event.data)
            except ValueError:
                self._logger.debug(
                    "%s: ignoring a non-JSON message: %.200r", self.provider, event.data
                )
                continue
            if isinstance(message, dict):
                # shielded: once the state says a transcript is out, it must be out even if the
                # connection is being ended meanwhile
                with anyio.CancelScope(shield=True):
                    for transcript in self._handle(message):
                        await results.send(transcript)
                self._handled(message)

    def _closed(self, code: int, reason: str | None) -> BaseException:
        cleaned = self._ctx.clean(reason or "")
        said = f" ({cleaned})" if cleaned else ""
        if code in _FATAL_CLOSE:
            return ProviderError(
                f"{self.server_name} closed the stream with code {code}{said}"
                f"{self.fatal_close_advice}",
                provider=self.provider,
            )
        return ConnectionDropped(
            f"{self.server_name} closed the WebSocket with code {code}{said}", from_server=True
        )

    # -- sending and the replay buffer ----------------------------------------------------------

    async def _send(self, ws: AsyncWebSocketSession, data: bytes | str) -> None:
        """One frame, shielded (a half-written frame corrupts the stream) and bounded."""
        with anyio.move_on_after(self._timeout, shield=True) as scope:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_text(data)
        if scope.cancelled_caught:
            raise ConnectionDropped("a send timed out")

    def _replay_frames(self) -> list[bytes]:
        """The audio not finalised on the previous connection, in frames to send first."""
        if self._lost:
            self._logger.warning(
                "%s: %.1fs of audio before the drop exceeded replay_seconds and is not transcribed",
                self.provider,
                self._lost,
            )
            self._lost = 0.0
        data = bytes(self._replay)
        step = self.replay_frame_bytes
        return [data[i : i + step] for i in range(0, len(data), step)]

    def _keep(self, data: bytes) -> None:
        """Remember ``data`` until a final result covers it (bounded by replay_seconds)."""
        self._replay += data
        self._sent += len(data) // 2
        limit = round(self._replay_seconds * self._rate) * 2
        if len(self._replay) > limit:
            extra = len(self._replay) - limit
            extra += extra % 2
            del self._replay[:extra]
            self._replay_start += extra // 2
            self._lost += extra / 2 / self._rate

    def _forget(self, done: int) -> None:
        """The service finalised the audio before sample ``done`` (counted from the start of
        the call): stop keeping it."""
        drop = min(done, self._sent) - self._replay_start
        if drop > 0:
            del self._replay[: 2 * drop]
            self._replay_start += drop
