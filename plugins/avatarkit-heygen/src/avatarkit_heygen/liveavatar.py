"""The ``liveavatar`` renderer: HeyGen's LiveAvatar, speaking text (FULL) or audio (LITE).

One renderer, both capabilities; the session's route picks the mode before start:

- ``text`` route -> FULL mode: ``speak_text`` publishes ``avatar.speak_text`` in the LiveKit
  room and LiveAvatar speaks with its own voice (no TTS needed);
- ``audio`` route -> LITE mode: ``speak`` streams the session's TTS audio, PCM16 24 kHz, as
  ``agent.speak`` messages over LiveAvatar's WebSocket.

Lifecycle: session token -> start -> connect the command channel; the session is stopped
exactly once, shielded, whatever happens (error, Ctrl-C, cancellation, a failed start).
"""

from __future__ import annotations

import collections
import functools
import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx
from pydantic import ValidationError

from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError, SessionError
from avatarkit.providers import AudioChunk, ViewerConnection
from avatarkit.text import estimate_speech_seconds
from avatarkit_heygen._background import Background, Inflight
from avatarkit_heygen.liveavatar_api import PROVIDER, LiveAvatarAPI, SessionInfo, SessionToken
from avatarkit_heygen.liveavatar_audio import BYTES_PER_SECOND, SAMPLE_RATE, To24k, speak_payloads
from avatarkit_heygen.liveavatar_full import (
    CONTROL_TOPIC,
    DataTransport,
    LiveKitDataTransport,
    encode_command,
    parse_event,
)
from avatarkit_heygen.liveavatar_lite import LiteLink
from avatarkit_heygen.liveavatar_options import LiveAvatarOptions

__all__ = ["LiveAvatarRenderer"]

logger = logging.getLogger(__name__)

Route = Literal["text", "audio"]
State = Literal["new", "starting", "ready", "ended", "closed"]


@dataclass(eq=False)
class _Utterance:
    """One ``speak``/``speak_text`` call waiting for LiveAvatar's speak-ended event."""

    event_id: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    started: bool = False
    end_sent: bool = False  # LITE: agent.speak_end is out (an idle avatar then means done)
    interrupted: bool = False
    failure: BaseException | None = None


class LiveAvatarRenderer:
    """A LiveAvatar session as an avatarkit renderer (see the module docstring).

    Options are those of :class:`~avatarkit_heygen.liveavatar_options.LiveAvatarOptions`.
    ``transport`` (a factory of FULL mode's room participant, also settable as
    ``renderer.transport_factory`` before start) and ``http_client`` are for embedding and tests.
    ``renderer.viewer`` holds the LiveKit URL and viewer token once started, and
    ``on_connection(viewer)`` is called then.
    """

    #: The engine resamples TTS audio to this rate before :meth:`speak` (LITE wants 24 kHz).
    sample_rate: int | None = SAMPLE_RATE
    #: LITE batches audio into messages itself: take what the TTS already made in blocks of up
    #: to 0.2 s (fewer wake-ups per second of speech; the engine never waits to fill one).
    max_chunk_seconds = 0.2

    def __init__(
        self,
        *,
        transport: Callable[[], DataTransport] | None = None,
        http_client: httpx.AsyncClient | None = None,
        on_connection: Callable[[ViewerConnection], Any] | None = None,
        **options: Any,
    ) -> None:
        try:
            self.options = LiveAvatarOptions.model_validate(options)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(
                f"{first['msg']} (liveavatar renderer)",
                field=".".join(str(p) for p in first["loc"]) or None,
            ) from None
        #: Builds FULL mode's room participant; replace before start() to embed or test.
        self.transport_factory: Callable[[], DataTransport] | None = transport
        self._http_client = http_client
        #: Called with :attr:`viewer` once started (as the heygen renderer does); may be async.
        self.on_connection = on_connection
        self.route: Route = "text"
        self.state: State = "new"
        self.viewer: ViewerConnection | None = None
        self.session_id: str | None = None
        self.end_reason: str | None = None
        self.session_ended = anyio.Event()
        self._api: LiveAvatarAPI | None = None
        self._token: SessionToken | None = None
        self._info: SessionInfo | None = None
        self._link: LiteLink | None = None
        self._transport: DataTransport | None = None
        self._background: list[Background] = []  # link, keep-alive, duration watch
        self._pending: dict[str, _Utterance] = {}
        self._speak_lock = anyio.Lock()
        self._send_lock = anyio.Lock()
        self._last_activity = 0.0
        self._closed: anyio.Event | None = None
        self._starting: anyio.Event | None = None
        self._start_scope: anyio.CancelScope | None = None
        self._start_task: int | None = None
        self._inflight = Inflight()
        self._link_task: Background | None = None
        self._viewer_allowed = True  # False when our backend took the viewer's token
        self._interrupts_unacked = 0  # LITE: agent.interrupt sent, audio_buffer_cleared not seen
        self._sent_ids: collections.deque[str] = collections.deque(maxlen=64)  # LITE utterances

    def __repr__(self) -> str:
        return (
            f"LiveAvatarRenderer(avatar_id={self.options.avatar_id!r}, mode={self.mode!r}, "
            f"state={self.state!r}, session_id={self.session_id!r})"
        )

    @property
    def mode(self) -> Literal["FULL", "LITE"]:
        """LiveAvatar's mode for the configured route."""
        return "LITE" if self.route == "audio" else "FULL"

    def configure_route(self, route: Route) -> None:
        """Called by the session before :meth:`start`: which capability it will use."""
        if route not in ("text", "audio"):
            raise ValueError(f"liveavatar: route must be 'text' or 'audio', not {route!r}")
        if self.state != "new":
            raise SessionError("liveavatar: configure_route() must come before start()")
        self.route = route

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> LiveAvatarRenderer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Token, start, connect. On any failure (or cancellation) the session is stopped.

        A close() from another task while this runs cancels it (the token request still gets
        its answer, so the session is known and stopped) and start raises SessionError.
        """
        if self.state != "new":
            raise SessionError(f"liveavatar: start() on a renderer that is {self.state}")
        self.state = "starting"
        self._starting = anyio.Event()
        self._start_task = anyio.get_current_task().id
        self._start_scope = anyio.CancelScope()
        try:
            with self._start_scope:
                await self._start()
            if self._closed is not None:
                raise SessionError("liveavatar: the renderer was closed while it was starting")
        except BaseException:
            self._starting.set()  # before close(): a close() already running waits for this
            await self.close()
            raise
        finally:
            self._starting.set()

    async def _start(self) -> None:
        opts = self.options
        api_key = opts.api_key.get_secret_value()
        self._api = LiveAvatarAPI(
            api_key,
            base_url=opts.base_url,
            timeout=opts.request_timeout,
            client=self._http_client,
        )
        try:
            # Shielded: once LiveAvatar has created the session we must learn its id to stop
            # it, so a cancellation waits for the answer (bounded by request_timeout).
            with anyio.CancelScope(shield=True):
                token = self._token = await self._api.create_token(
                    mode=self.mode,
                    avatar_id=opts.avatar_id,
                    quality=opts.quality,
                    is_sandbox=opts.sandbox,
                    voice_id=opts.voice_id,
                    context_id=opts.context_id,
                    language=opts.language,
                    voice_agent_id=opts.voice_agent_id,
                    max_session_duration=opts.max_session_duration,
                )
            await anyio.lowlevel.checkpoint_if_cancelled()
            self.session_id = token.session_id
            info = self._info = await self._api.start(token)
            self.session_id = info.session_id
            if self.mode == "LITE":
                await self._connect_lite(info)
            else:
                await self._connect_full(info)
            if info.livekit_url and info.livekit_client_token and self._viewer_allowed:
                self.viewer = ViewerConnection(
                    info.livekit_url, info.livekit_client_token, info.session_id
                )
            self._last_activity = anyio.current_time()
            if opts.keep_alive:
                self._spawn(self._keep_alive_loop)
            duration = info.max_session_duration or opts.max_session_duration
            if duration:
                self._spawn(functools.partial(self._duration_watch, float(duration)))
            if self.state == "starting":
                self.state = "ready"
            if self.on_connection is not None and self.viewer is not None:
                result = self.on_connection(self.viewer)
                if inspect.isawaitable(result):
                    await result
            logger.info(
                "liveavatar: session %s ready (%s mode, avatar %s)",
                self.session_id,
                self.mode,
                opts.avatar_id,
            )
        except BaseException:
            if self.state == "ready":
                self.state = "starting"  # not usable: close() follows
            raise

    async def _connect_lite(self, info: SessionInfo) -> None:
        if not info.ws_url:
            raise ProviderError(
                "LITE session started without a ws_url: the account or avatar may not support "
                "LITE mode (prefer: audio); try prefer: text",
                provider=PROVIDER,
            )
        assert self._api is not None
        self._link = LiteLink(
            info.ws_url,
            client=self._api.client,
            on_event=self._on_lite_event,
            on_end=self._on_session_end,
            on_reconnect=self._on_reconnect,
            connect_timeout=self.options.connect_timeout,
            ping_interval=self.options.ws_ping_interval,
            ping_timeout=self.options.ws_ping_timeout,
        )
        self._link_task = self._spawn(self._link.run)
        await self._link.wait_ready()

    def _full_token(self, info: SessionInfo) -> tuple[str, bool]:
        """The LiveKit token our backend joins with, and whether a viewer can still join (see
        ``full_join_token``): never the viewer's token twice, one identity evicts the other."""
        choice = self.options.full_join_token
        agent, client = info.livekit_agent_token, info.livekit_client_token
        if choice == "agent" or (choice == "auto" and agent):
            if not agent:
                raise ProviderError(
                    "FULL session started without livekit_agent_token (full_join_token: agent); "
                    "try full_join_token: auto",
                    provider=PROVIDER,
                )
            return agent, True
        if not client:
            raise ProviderError(
                "FULL session started without livekit_client_token or livekit_agent_token",
                provider=PROVIDER,
            )
        return client, False

    async def _connect_full(self, info: SessionInfo) -> None:
        if not info.livekit_url:
            raise ProviderError("FULL session started without livekit_url", provider=PROVIDER)
        token, viewer_can_join = self._full_token(info)
        if not viewer_can_join:
            logger.warning(
                "liveavatar: joining the room with the viewer's token (livekit_client_token); "
                "no viewer page can join this session"
            )
            self._viewer_allowed = False
        factory = self.transport_factory or (
            lambda: LiveKitDataTransport(connect_timeout=self.options.connect_timeout)
        )
        transport = self._transport = factory()
        await transport.connect(
            info.livekit_url,
            token,
            on_data=self._on_full_data,
            on_disconnected=self._on_session_end,
        )
        # A command sent before LiveAvatar's agent is in the room is lost (web SDK: waits 30 s
        # for "heygen" and "liveavatar-agent-<session_id>" before anything is sent).
        required = [p.format(session_id=info.session_id) for p in self.options.ready_participants]
        timeout = self.options.ready_timeout
        missing = await transport.wait_for_participants(required, timeout)
        if missing:
            raise ProviderConnectionError(
                f"LiveAvatar's participants did not join the room within {timeout:g}s "
                f"(missing: {', '.join(sorted(missing))}); nothing was sent. Raise "
                "renderer.ready_timeout, or check renderer.ready_participants",
                provider=PROVIDER,
            )

    async def close(self) -> None:
        """Stop the LiveAvatar session (exactly once, shielded) and release everything.

        Every step runs whatever the one before did (a stop answered with garbage included).
        When it returns nothing of the renderer runs any more: a start() in progress has
        finished, calls in flight were cut short, keep-alive, duration watch and the LITE link
        are stopped, the LiveKit transport is left and the HTTP client closed.
        """
        if self._closed is not None:
            with anyio.CancelScope(shield=True):
                await self._closed.wait()
            return
        self._closed = anyio.Event()
        with anyio.CancelScope(shield=True):
            try:
                for utterance in list(self._pending.values()):
                    utterance.interrupted = True
                    utterance.scope.cancel()
                starting, scope = self._starting, self._start_scope
                if starting is not None and self._start_task != anyio.get_current_task().id:
                    if scope is not None:
                        scope.cancel()
                    await starting.wait()
                await self._inflight.close()
                for task in self._background:  # keep-alive and duration watch first
                    if task is not self._link_task:
                        await task.stop()
                if self._link is not None:
                    await _quietly("closing the LITE link", self._link.close())
                if self._token is not None and self._api is not None:
                    await _quietly("stopping the session", self._stop_session(self._token))
                if self._transport is not None:
                    with anyio.move_on_after(5) as left:
                        await _quietly("leaving the LiveKit room", self._transport.close())
                    if left.cancelled_caught:
                        logger.warning("liveavatar: leaving the LiveKit room took over 5 s")
                for task in self._background:
                    await task.stop()
                if self._api is not None:
                    await _quietly("closing the HTTP client", self._api.aclose())
            finally:
                self.state = "closed"
                self.viewer = None
                self._closed.set()
                if self.session_id is not None:
                    logger.info("liveavatar: session %s stopped", self.session_id)

    async def _stop_session(self, token: SessionToken) -> None:
        assert self._api is not None
        # up to three requests (token, API key, one retry), 30 s at most in all
        limit = min(30.0, 3 * self.options.request_timeout + 1)
        with anyio.move_on_after(limit) as stop_scope:
            await self._api.stop(token)
        if stop_scope.cancelled_caught:
            logger.error(
                "liveavatar: stopping session %s timed out after %gs; it may be "
                "billed until LiveAvatar times it out",
                self.session_id,
                limit,
            )

    # -- session end and keep-alive ---------------------------------------------------------

    def _spawn(self, func: Callable[[], Awaitable[None]]) -> Background:
        """Run ``func`` until close(): detached from the caller's scopes (see _background)."""
        task = Background(func, name=f"liveavatar:{getattr(func, '__name__', 'task')}")
        self._background.append(task)
        task.start()
        return task

    def _on_session_end(self, reason: str) -> None:
        """LiveAvatar ended the session (max duration, idle, dropped link): not a crash."""
        if self.session_ended.is_set() or self.state in ("closed", "new"):
            return
        if self._closed is not None:  # our own close
            return
        self.end_reason = reason
        self.state = "ended"
        self.session_ended.set()
        logger.warning("liveavatar: session %s ended: %s", self.session_id, reason)
        for utterance in self._pending.values():
            utterance.failure = ProviderConnectionError(
                f"the LiveAvatar session ended while speaking: {reason}", provider=PROVIDER
            )
            utterance.done.set()

    def _on_reconnect(self, reason: str) -> None:
        """The LITE WebSocket dropped and was reopened: audio of the utterance in progress that
        went to the dead socket may never have reached LiveAvatar, and resending it on the new
        one could repeat some, so that utterance fails (the next one is fine)."""
        for utterance in self._pending.values():
            if utterance.interrupted or utterance.done.is_set():
                continue
            utterance.failure = ProviderConnectionError(
                f"the LITE WebSocket dropped mid-utterance ({reason}); what was sent before the "
                "drop may not have been played, so this utterance was abandoned (the connection "
                "was reopened for the next one)",
                provider=PROVIDER,
            )
            utterance.done.set()
            utterance.scope.cancel()

    async def _duration_watch(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self._on_session_end(f"its maximum duration of {seconds:g}s was reached")

    async def _keep_alive_loop(self) -> None:
        interval = self.options.keep_alive_interval
        while not self.session_ended.is_set():
            last = max(self._last_activity, self._link.last_sent if self._link else 0.0)
            wait = last + interval - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            self._last_activity = anyio.current_time()
            if self._pending:
                continue  # speaking: the audio/commands themselves keep the session alive
            try:
                if self._link is not None:
                    await self._link.send({"type": "session.keep_alive", "event_id": _new_id()})
                elif self._api is not None and self._token is not None:
                    await self._api.keep_alive(self._token)
                logger.debug("liveavatar: keep-alive sent")
            except ProviderError as exc:
                logger.warning("liveavatar: keep-alive failed: %s", exc)

    # -- events ----------------------------------------------------------------------------

    def _on_lite_event(self, message: dict[str, Any]) -> None:
        """LITE server events, in the shapes LiveKit's ``livekit-plugins-liveavatar`` handles."""
        kind = message["type"]
        if kind in ("agent.speak_started", "agent.speak_ended", "agent.speak_interrupted"):
            self._on_speech_event(kind.removeprefix("agent."), self._lite_utterance(message))
        elif kind == "agent.state_updated":
            # {"previous_state", "new_state"} (older shape: "state"): talking / idle / listening
            state = message.get("new_state", message.get("state"))
            utterance = self._lite_utterance(message)
            if state == "talking":
                self._on_speech_event("speak_started", utterance)
            elif state in ("idle", "listening") and utterance is not None:
                if utterance.started and utterance.end_sent:
                    self._on_speech_event("speak_ended", utterance)
        elif kind == "agent.audio_buffer_cleared":
            if self._interrupts_unacked > 0:  # the answer to our agent.interrupt
                self._interrupts_unacked -= 1
                return
            # LiveAvatar emptied the playback buffer on its own: nothing queued will play
            for utterance in list(self._pending.values()):
                utterance.interrupted = True
                utterance.done.set()
        elif kind == "error":
            self._on_server_error(message)
        elif kind == "warning":
            detail = _detail(message, "warning")
            logger.warning("liveavatar: LiveAvatar warns: %s", detail)
        elif kind == "session.state_updated":
            pass  # handled by the link (connected / closing / closed)
        elif kind in ("agent.audio_buffer_appended", "agent.audio_buffer_committed"):
            pass  # acknowledgements of agent.speak / agent.speak_end
        else:
            logger.debug("liveavatar: ignoring %s", kind)

    def _lite_utterance(self, message: dict[str, Any]) -> _Utterance | None:
        """The utterance an event is about: by ``event_id``; an id of an earlier utterance of
        ours (a late event after an interrupt) matches none; any other id, or none, matches the
        one being spoken (LITE speaks one at a time; the service's ids are not pinned down)."""
        event_id = message.get("event_id")
        if isinstance(event_id, str):
            if event_id in self._pending:
                return self._pending[event_id]
            if event_id in self._sent_ids:
                return None
        return next(iter(self._pending.values()), None)

    def _on_server_error(self, message: dict[str, Any]) -> None:
        """A server ``error`` event: the utterance waiting ends now with a clear error."""
        detail = _detail(message, "error")
        logger.error("liveavatar: LiveAvatar reported an error: %s", detail)
        event_id = message.get("event_id")
        if isinstance(event_id, str) and event_id in self._sent_ids:
            if event_id not in self._pending:
                return  # about an utterance that is over: logged, nothing waits for it
        for utterance in list(self._pending.values()):
            if utterance.failure is None:
                utterance.failure = ProviderError(
                    f"LiveAvatar reported an error while speaking: {detail}", provider=PROVIDER
                )
            utterance.done.set()
            utterance.scope.cancel()  # also stops streaming the rest of its audio

    def _on_full_data(self, topic: str, payload: bytes) -> None:
        message = parse_event(topic, payload)
        if message is None:
            return
        kind = message["event_type"]
        if kind in ("avatar.speak_started", "avatar.speak_ended", "avatar.speak_interrupted"):
            self._on_speech_event(kind.removeprefix("avatar."), self._full_utterance(message))
        elif kind in ("session.stopped", "session.ended") or (
            kind == "session.state_updated" and message.get("state") in ("closing", "closed")
        ):
            reason = message.get("stop_reason")
            self._on_session_end(f"LiveAvatar reported {kind}" + (f" ({reason})" if reason else ""))
        elif kind == "error":
            self._on_server_error(message)
        else:
            logger.debug("liveavatar: ignoring %s", kind)

    def _full_utterance(self, message: dict[str, Any]) -> _Utterance | None:
        """FULL events name the command they answer in ``source_event_id`` (their own
        ``event_id`` is new). One naming another command, or none (``null``: speech LiveAvatar
        started by itself), matches no utterance; only an event without the field (an older
        server) falls back to its ``event_id`` or the oldest utterance."""
        if "source_event_id" in message:
            source = message["source_event_id"]
            utterance = self._pending.get(source) if isinstance(source, str) else None
            if utterance is None:
                logger.debug("liveavatar: %s for command %r", message["event_type"], source)
            return utterance
        event_id = message.get("event_id")
        if isinstance(event_id, str) and event_id in self._pending:
            return self._pending[event_id]
        return next(iter(self._pending.values()), None)

    def _on_speech_event(self, kind: str, utterance: _Utterance | None) -> None:
        if utterance is None:
            logger.debug("liveavatar: %s for no pending utterance", kind)
            return
        if kind == "speak_started":
            utterance.started = True
        else:
            utterance.done.set()

    # -- speaking ------------------------------------------------------------------------------

    def _require(self, route: Route) -> None:
        if self.state == "ended":
            raise ProviderConnectionError(
                f"the LiveAvatar session has ended ({self.end_reason}); start a new session",
                provider=PROVIDER,
            )
        if self.state != "ready":
            raise SessionError(f"liveavatar: cannot speak, the renderer is {self.state}")
        if self.route != route:
            method = "speak_text" if route == "text" else "speak"
            raise SessionError(
                f"liveavatar: {method}() needs the {route} route but this session started in "
                f"{self.mode} mode (the session must call configure_route() before start())"
            )

    def _timeout_for_text(self, text: str) -> float:
        # twice the usual duration: LiveAvatar's voice may be slower than the estimate
        return 2 * estimate_speech_seconds(text) + self.options.speak_timeout_grace

    async def speak_text(self, text: str) -> None:
        """FULL mode: one ``avatar.speak_text``; returns on its ``avatar.speak_ended``."""
        self._require("text")
        with self._inflight.track():  # close() cuts it short and waits for it
            async with self._speak_lock:
                utterance = _Utterance(_new_id())
                self._pending[utterance.event_id] = utterance
                self._last_activity = anyio.current_time()
                try:
                    with utterance.scope:
                        await self._publish(
                            "avatar.speak_text", utterance.event_id, utterance, text=text
                        )
                        await self._wait_ended(utterance, self._timeout_for_text(text))
                finally:
                    del self._pending[utterance.event_id]
                    self._last_activity = anyio.current_time()
                if utterance.failure is not None and not utterance.interrupted:
                    raise utterance.failure

    async def _publish(
        self, event_type: str, event_id: str, utterance: _Utterance | None, **fields: Any
    ) -> None:
        assert self._transport is not None
        assert self.session_id is not None
        payload = encode_command(
            event_type, session_id=self.session_id, event_id=event_id, **fields
        )
        async with self._send_lock:
            if utterance is not None and utterance.interrupted:
                return
            # shielded (a message is sent whole or not at all) but bounded
            limit = self.options.connect_timeout
            with anyio.move_on_after(limit, shield=True) as scope:
                await self._transport.publish_data(CONTROL_TOPIC, payload)
            if scope.cancelled_caught:
                raise ProviderConnectionError(
                    f"publishing {event_type} in the LiveKit room took over {limit:g}s",
                    provider=PROVIDER,
                )

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        """LITE mode: stream the audio as ``agent.speak`` messages, ``agent.speak_end``, and
        return on ``agent.speak_ended`` (or on interrupt, or after the audio's duration plus
        ``speak_timeout_grace``)."""
        self._require("audio")
        with self._inflight.track():  # close() cuts it short and waits for it
            async with self._speak_lock:
                utterance = _Utterance(_new_id())
                self._pending[utterance.event_id] = utterance
                self._sent_ids.append(utterance.event_id)
                try:
                    with utterance.scope:
                        first_sent, seconds = await self._stream_audio(utterance, audio)
                        if first_sent is not None:
                            await self._send_lite(
                                {"type": "agent.speak_end", "event_id": utterance.event_id},
                                utterance,
                            )
                            utterance.end_sent = True
                            remaining = first_sent + seconds - anyio.current_time()
                            await self._wait_ended(
                                utterance, max(0.0, remaining) + self.options.speak_timeout_grace
                            )
                finally:
                    del self._pending[utterance.event_id]
                    self._last_activity = anyio.current_time()
                if utterance.failure is not None and not utterance.interrupted:
                    raise utterance.failure

    async def _stream_audio(
        self, utterance: _Utterance, audio: AsyncIterator[AudioChunk]
    ) -> tuple[float | None, float]:
        """Send the audio as it comes; returns (time of the first message, seconds sent).

        The first message goes out, from this task (no hand-off on the latency path), once
        ``first_chunk_seconds`` of audio is there (or the TTS has finished). After that, audio
        is batched into messages of about ``chunk_seconds`` while the avatar has at least half
        that queued; a watcher task flushes what is held when the avatar's
        queue runs low while the TTS is between chunks, so a slow TTS is never held back.
        """
        chunk_seconds = self.options.chunk_seconds
        low_water = chunk_seconds / 2
        target = int(chunk_seconds * SAMPLE_RATE) * 2
        first_target = int(self.options.first_chunk_seconds * SAMPLE_RATE) * 2
        converter = To24k()
        held = bytearray()
        first_sent: float | None = None
        sent_seconds = 0.0
        flush_lock = anyio.Lock()
        changed = anyio.Event()

        def ahead() -> float:
            """Seconds of audio the avatar still has queued (an estimate)."""
            assert first_sent is not None
            return first_sent + sent_seconds - anyio.current_time()

        async def flush(limit: int | None = None) -> None:
            nonlocal first_sent, sent_seconds
            async with flush_lock:  # bytes are taken in order under the lock
                data = bytes(held if limit is None else held[:limit])
                del held[: len(data)]
                for payload in speak_payloads(data, chunk_seconds):
                    message = {
                        "type": "agent.speak",
                        "event_id": utterance.event_id,
                        "audio": payload,
                    }
                    await self._send_lite(message, utterance)
                    if first_sent is None:
                        first_sent = anyio.current_time()
                sent_seconds += len(data) / BYTES_PER_SECOND

        async def watch() -> None:
            nonlocal changed
            while True:
                wait = None if not held or first_sent is None else max(0.0, ahead() - low_water)
                with anyio.move_on_after(wait):
                    await changed.wait()
                    changed = anyio.Event()
                    continue
                if held:
                    await flush()

        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                async for chunk in audio:
                    held += converter.convert(chunk)
                    if not held:
                        continue
                    if first_sent is None:
                        if len(held) < first_target:
                            continue
                        await flush()
                    while len(held) >= target:
                        await flush(target)
                    if held and ahead() < low_water:
                        await flush()
                    changed.set()  # the watcher re-arms its deadline
                held += converter.flush()
                if held:
                    await flush()
            except Exception as exc:  # kept out of the task group: raised unwrapped below
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return first_sent, sent_seconds

    async def _send_lite(self, message: dict[str, Any], utterance: _Utterance | None) -> None:
        """Send on the WebSocket; nothing of an interrupted utterance goes out after the
        interrupt (the flag is checked under the lock the interrupt also takes)."""
        assert self._link is not None
        async with self._send_lock:
            if utterance is not None and utterance.interrupted:
                utterance.scope.cancel()
                await anyio.lowlevel.checkpoint()
                return
            if message["type"] == "agent.speak":
                if not await self._link.send(message, at_most_once=True):
                    logger.warning(
                        "liveavatar: the WebSocket dropped while sending audio of %s; that "
                        "audio is not resent (it may have reached LiveAvatar)",
                        message.get("event_id"),
                    )
            else:
                await self._link.send(message)
        self._last_activity = anyio.current_time()

    async def _wait_ended(self, utterance: _Utterance, seconds: float) -> None:
        with anyio.move_on_after(seconds) as scope:
            await utterance.done.wait()
        if scope.cancelled_caught:
            logger.warning(
                "liveavatar: no speak_ended for %s within %.1fs; going on",
                utterance.event_id,
                seconds,
            )

    async def interrupt(self) -> None:
        """Stop the avatar now: pending ``speak``/``speak_text`` return at once."""
        for utterance in list(self._pending.values()):
            utterance.interrupted = True
            utterance.scope.cancel()
        if self.state != "ready":
            return
        with self._inflight.track():  # racing close(): close stops the session, we return
            try:
                if self._link is not None:
                    async with self._send_lock:
                        # counted first: the server's audio_buffer_cleared may beat our resumption
                        self._interrupts_unacked += 1
                        try:
                            await self._link.send(
                                {"type": "agent.interrupt", "event_id": _new_id()}
                            )
                        except BaseException:
                            self._interrupts_unacked -= 1
                            raise
                elif self._transport is not None:
                    await self._publish("avatar.interrupt", _new_id(), None)
            except ProviderError as exc:
                logger.warning("liveavatar: interrupt not delivered: %s", exc)
            self._last_activity = anyio.current_time()


def _new_id() -> str:
    return uuid.uuid4().hex


async def _quietly(what: str, step: Awaitable[Any]) -> None:
    """One step of close(): a failure is logged, and the steps after it still run."""
    try:
        await step
    except Exception as exc:
        logger.warning("liveavatar: %s failed: %s", what, exc)


def _detail(message: dict[str, Any], key: str) -> str:
    """What a server ``error``/``warning`` event says (its shape is not documented: the
    ``error``/``warning`` field as text or an object with a message, else the whole event)."""
    value = message.get(key, message.get("message"))
    if isinstance(value, dict):
        value = value.get("message") or value.get("detail") or json.dumps(value)
    if not value:
        value = json.dumps({k: v for k, v in message.items() if k != "type"})
    return str(value)[:500]
