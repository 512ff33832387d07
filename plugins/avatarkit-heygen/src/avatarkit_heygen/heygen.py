"""The ``heygen`` renderer: HeyGen's streaming avatar says each sentence itself.

It implements ``speak_text``, so a session with it needs no TTS: every sentence becomes one
``repeat`` task (the avatar says exactly our words), and HeyGen streams lip-synced video and audio
through a LiveKit room that a web page joins with :attr:`HeyGenRenderer.viewer`.

Timing. HeyGen queues tasks: one sent while the avatar speaks plays right after. ``speak_text``
returns when the avatar has (nearly) finished: from the avatar's own ``avatar_start_talking`` /
``avatar_stop_talking`` data messages when the media connection is up, otherwise from the
task's ``duration_ms``, otherwise from a words-per-minute estimate. It returns ``lead_time``
seconds *before* the estimated end, so that the session sends the next sentence while this one is
still playing and HeyGen has it queued in time: waiting for the exact end would leave a gap of one
request round trip plus HeyGen's speech start-up between sentences. The cost is that the last
sentence of a turn is reported finished up to ``lead_time`` early.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
from pydantic import SecretStr

from avatarkit.errors import (
    AvatarKitError,
    ConfigError,
    ProviderError,
    ProviderTimeout,
    SessionError,
)
from avatarkit.providers import ViewerConnection
from avatarkit.text import estimate_speech_seconds
from avatarkit_heygen._background import Background, Inflight
from avatarkit_heygen.api import (
    DEFAULT_BASE_URL,
    PROVIDER,
    HeyGenAPI,
    HeyGenSessionEnded,
    RetryPolicy,
)
from avatarkit_heygen.backend import (
    BackendClient,
    CreateSession,
    HeyGenCallbacks,
    HeyGenSession,
    HeyGenTaskResult,
    SendTask,
    SessionCall,
    task_from_json,
)
from avatarkit_heygen.heygen_options import (
    Emotion,
    HeyGenRendererOptions,
    Quality,
    mode_problem,
)
from avatarkit_heygen.media import LiveKitRoom, MediaState, TrackKind

__all__ = ["HeyGenRenderer", "HeyGenRendererOptions"]

logger = logging.getLogger(__name__)

#: How long after its estimated end an utterance is forgotten if no talking event ends it.
_FORGET_AFTER = 30.0

#: The longest text sent as one ``repeat`` task. HeyGen documents no limit for streaming tasks;
#: 1500 characters is the limit its video API documents for one voice input (same TTS), far
#: above a sentence, so only runaway text (no sentence boundary) reaches it.
MAX_TASK_CHARS = 1500


@dataclass
class _Utterance:
    """One sentence handed to HeyGen, tracked until the avatar has said it."""

    text: str
    task_id: str | None
    duration: float
    expected_start: float
    started_at: float | None = None
    finished: bool = False
    interrupted: bool = False
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def expected_end(self) -> float:
        start = self.started_at if self.started_at is not None else self.expected_start
        return start + self.duration

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def finish(self, *, interrupted: bool = False) -> None:
        if not self.finished:
            self.finished = True
            self.interrupted = interrupted
            self.wake()


class _Channel(Protocol):
    """One way of reaching HeyGen (directly, or through the application's backend)."""

    can_keep_alive: bool

    async def open(self) -> HeyGenSession: ...
    async def task(self, session_id: str, text: str) -> HeyGenTaskResult: ...
    async def interrupt(self, session_id: str) -> None: ...
    async def keep_alive(self, session_id: str) -> None: ...
    async def stop(self, session_id: str) -> None: ...
    async def aclose(self) -> None: ...


class _DirectChannel:
    """HeyGen's API with our key: ``new`` + ``start``; a failed start is stopped at once."""

    can_keep_alive = True

    def __init__(
        self,
        api: HeyGenAPI,
        new_body: dict[str, Any],
        *,
        start_timeout: float,
        task_timeout: float,
    ) -> None:
        self.api = api
        self.new_body = new_body
        self.start_timeout = start_timeout
        self.task_timeout = task_timeout

    async def open(self) -> HeyGenSession:
        logger.info(
            "creating a HeyGen streaming session for avatar %r (this can take several seconds)",
            self.new_body.get("avatar_id"),
        )
        # Shielded: once HeyGen has created (and bills) the session we must learn its id to
        # stop it, so a cancellation waits for the answer (bounded by start_timeout per try).
        with anyio.CancelScope(shield=True):
            data = await self.api.new(self.new_body, time_limit=self.start_timeout)
        session_id = str(data["session_id"])
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            for key in ("url", "access_token"):
                if not data.get(key):
                    raise ProviderError(
                        f"HeyGen streaming.new answered without {key!r}; only version v2 "
                        "(LiveKit) sessions are supported",
                        provider=PROVIDER,
                    )
            await self.api.start(session_id, time_limit=self.start_timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _stop_quietly(self, session_id)
            raise
        logger.info(
            "HeyGen session %s started (duration limit %s s)",
            session_id,
            data.get("session_duration_limit", "unknown"),
        )
        return HeyGenSession(session_id, str(data["url"]), str(data["access_token"]))

    async def task(self, session_id: str, text: str) -> HeyGenTaskResult:
        return task_from_json(await self.api.task(session_id, text, time_limit=self.task_timeout))

    async def interrupt(self, session_id: str) -> None:
        await self.api.interrupt(session_id)

    async def keep_alive(self, session_id: str) -> None:
        await self.api.keep_alive(session_id)

    async def stop(self, session_id: str) -> None:
        await self.api.stop(session_id)

    async def aclose(self) -> None:
        await self.api.aclose()


class _CallbackChannel:
    """The application's callables (or our ``backend_url`` client presenting as them)."""

    def __init__(
        self,
        callbacks: HeyGenCallbacks,
        *,
        task_timeout: float,
        start_timeout: float,
        client: BackendClient | None = None,
    ) -> None:
        self.callbacks = callbacks
        self.task_timeout = task_timeout
        self.start_timeout = start_timeout
        self.client = client
        self.can_keep_alive = callbacks.keep_alive_session is not None

    async def _run(self, name: str, call: Awaitable[Any], limit: float | None = None) -> Any:
        try:
            if limit is None:
                return await call
            with anyio.fail_after(limit):
                return await call
        except AvatarKitError:
            raise
        except TimeoutError:
            raise ProviderTimeout(
                f"the {name} callback did not finish within {limit:g} s", provider=PROVIDER
            ) from None
        except Exception as exc:
            raise ProviderError(
                f"the {name} callback failed: {type(exc).__name__}: {exc}", provider=PROVIDER
            ) from exc

    async def open(self) -> HeyGenSession:
        # Shielded as in direct mode: the backend may have created the session already.
        with anyio.CancelScope(shield=True):
            session = await self._run(
                "create_session", self.callbacks.create_session(), self.start_timeout
            )
        if isinstance(session, HeyGenSession):
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _stop_quietly(self, session.session_id)
                raise
        if not isinstance(session, HeyGenSession):
            raise ProviderError(
                f"create_session must return a HeyGenSession, got {type(session).__name__}",
                provider=PROVIDER,
            )
        return session

    async def task(self, session_id: str, text: str) -> HeyGenTaskResult:
        result = await self._run(
            "send_task", self.callbacks.send_task(session_id, text), self.task_timeout
        )
        return result if isinstance(result, HeyGenTaskResult) else HeyGenTaskResult()

    async def interrupt(self, session_id: str) -> None:
        if self.callbacks.interrupt_session is not None:
            await self._run("interrupt_session", self.callbacks.interrupt_session(session_id))

    async def keep_alive(self, session_id: str) -> None:
        if self.callbacks.keep_alive_session is not None:
            await self._run("keep_alive_session", self.callbacks.keep_alive_session(session_id))

    async def stop(self, session_id: str) -> None:
        if self.callbacks.close_session is not None:
            await self._run("close_session", self.callbacks.close_session(session_id))
        else:
            logger.warning(
                "no close_session callback: HeyGen session %s is left to your backend", session_id
            )

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def _stop_quietly(channel: _Channel, session_id: str) -> None:
    """Stop a session; one HeyGen already ended counts as stopped. Never raises."""
    try:
        await channel.stop(session_id)
        logger.info("HeyGen session %s stopped", session_id)
    except HeyGenSessionEnded:
        logger.info("HeyGen session %s had already ended", session_id)
    except Exception as exc:
        logger.error(
            "could not stop HeyGen session %s (%s): it keeps billing until HeyGen's idle "
            "timeout ends it",
            session_id,
            exc,
        )


async def _quietly(what: str, step: Awaitable[None]) -> None:
    """One step of close(): a failure is logged, and the steps after it still run."""
    try:
        await step
    except Exception as exc:
        logger.warning("HeyGen renderer: %s failed: %s", what, exc)


def _secret(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value or None


class HeyGenRenderer:
    """HeyGen's streaming avatar as an avatarkit renderer (speaks text itself; needs no TTS).

    Reach HeyGen one of three ways: ``api_key`` (direct), ``backend_url`` (your backend's HTTP
    endpoints) or ``create_session`` + ``send_task`` callables (optionally
    ``interrupt_session``, ``close_session``, ``keep_alive_session``). After :meth:`start`,
    :attr:`viewer` holds the LiveKit URL, viewer token and session id for a web page, and
    ``on_connection(viewer)`` is called. With ``connect_media`` the renderer joins the room
    itself (asyncio only) and hands the avatar's tracks to ``on_video_stream`` /
    ``on_audio_stream`` (None when lost) and its state to ``on_state_change``.
    """

    def __init__(
        self,
        *,
        api_key: SecretStr | str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        backend_url: str | None = None,
        backend_token: SecretStr | str | None = None,
        create_session: CreateSession | None = None,
        send_task: SendTask | None = None,
        interrupt_session: SessionCall | None = None,
        close_session: SessionCall | None = None,
        keep_alive_session: SessionCall | None = None,
        avatar_id: str | None = None,
        quality: Quality | None = None,
        voice_id: str | None = None,
        voice_rate: float | None = None,
        voice_emotion: Emotion | None = None,
        language: str | None = None,
        video_encoding: Literal["H264", "VP8"] | None = None,
        activity_idle_timeout: int | None = None,
        disable_idle_timeout: bool = False,
        keep_alive: bool = True,
        keep_alive_interval: float | None = None,
        connect_media: bool = False,
        lead_time: float = 0.5,
        words_per_minute: float = 160.0,
        timeout: float = 15.0,
        start_timeout: float = 60.0,
        task_timeout: float = 10.0,
        close_timeout: float = 15.0,
        max_attempts: int = 3,
        retry_backoff: float = 0.5,
        on_connection: Callable[[ViewerConnection], Any] | None = None,
        on_video_stream: Callable[[Any], None] | None = None,
        on_audio_stream: Callable[[Any], None] | None = None,
        on_state_change: Callable[[MediaState], None] | None = None,
    ) -> None:
        key = _secret(api_key)
        callbacks_given = create_session is not None or send_task is not None
        problem = mode_problem(
            api_key=key is not None,
            backend=backend_url is not None,
            callbacks=callbacks_given,
            avatar_id=avatar_id,
        )
        if problem:
            raise ConfigError(problem, field="renderer (heygen)")
        if callbacks_given and (create_session is None or send_task is None):
            raise ConfigError(
                "backend callbacks need both create_session and send_task",
                field="renderer (heygen)",
            )
        retry = RetryPolicy(attempts=max_attempts, backoff=retry_backoff)
        self._channel: _Channel
        if key is not None:
            self._channel = _DirectChannel(
                HeyGenAPI(key, base_url=base_url, timeout=timeout, retry=retry),
                self._new_body(
                    avatar_id=avatar_id,
                    quality=quality,
                    voice_id=voice_id,
                    voice_rate=voice_rate,
                    voice_emotion=voice_emotion,
                    language=language,
                    video_encoding=video_encoding,
                    activity_idle_timeout=activity_idle_timeout,
                    disable_idle_timeout=disable_idle_timeout,
                ),
                start_timeout=start_timeout,
                task_timeout=task_timeout,
            )
        elif backend_url is not None:
            client = BackendClient(
                backend_url,
                token=_secret(backend_token),
                timeout=timeout,
                session_timeout=start_timeout,
                task_timeout=task_timeout,
                retry=retry,
            )
            self._channel = _CallbackChannel(
                client.callbacks(),
                task_timeout=task_timeout + 1,
                start_timeout=start_timeout + 1,
                client=client,
            )
        else:
            assert create_session is not None
            assert send_task is not None
            self._channel = _CallbackChannel(
                HeyGenCallbacks(
                    create_session,
                    send_task,
                    interrupt_session,
                    close_session,
                    keep_alive_session,
                ),
                task_timeout=task_timeout,
                start_timeout=start_timeout,
            )
        self.keep_alive = keep_alive and not disable_idle_timeout
        idle = activity_idle_timeout or 120
        self.keep_alive_interval = keep_alive_interval or idle / 2
        self.connect_media = connect_media
        self.lead_time = lead_time
        self.words_per_minute = words_per_minute * (voice_rate or 1.0)
        self.close_timeout = close_timeout
        self.on_connection = on_connection
        self.on_video_stream = on_video_stream
        self.on_audio_stream = on_audio_stream
        self.on_state_change = on_state_change
        #: LiveKit connection info for viewers; set by :meth:`start`, cleared by :meth:`close`.
        self.viewer: ViewerConnection | None = None
        self.session: HeyGenSession | None = None
        self.media: LiveKitRoom | None = None
        self._closed = False
        self._close_done: anyio.Event | None = None
        self._starting: anyio.Event | None = None
        self._start_scope: anyio.CancelScope | None = None
        self._start_task: int | None = None
        self._inflight = Inflight()
        self._keep_alive_task: Background | None = None
        self._pending: list[_Utterance] = []
        self._timeline_end = 0.0
        self._last_sent = 0.0
        self._talking_events = False
        self._generation = 0

    @staticmethod
    def _new_body(
        *,
        avatar_id: str | None,
        quality: str | None,
        voice_id: str | None,
        voice_rate: float | None,
        voice_emotion: str | None,
        language: str | None,
        video_encoding: str | None,
        activity_idle_timeout: int | None,
        disable_idle_timeout: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"avatar_id": avatar_id, "version": "v2"}
        voice = {
            k: v
            for k, v in (("voice_id", voice_id), ("rate", voice_rate), ("emotion", voice_emotion))
            if v is not None
        }
        optional = {
            "quality": quality,
            "voice": voice or None,
            "language": language,
            "video_encoding": video_encoding,
            "activity_idle_timeout": activity_idle_timeout,
            "disable_idle_timeout": disable_idle_timeout or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    def __repr__(self) -> str:
        session = self.session.session_id if self.session else None
        return f"HeyGenRenderer(session={session!r}, closed={self._closed})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> HeyGenRenderer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create and start the HeyGen session; on any failure nothing is left running.

        A close() from another task while this runs cancels it: the session it created is
        stopped (with the HTTP client still open) and start raises :class:`SessionError`.
        """
        if self._closed:
            raise SessionError("this HeyGen renderer is closed; create a new one")
        if self._starting is not None:  # started, or another task is starting it
            await self._starting.wait()
            if self.session is None:
                raise SessionError("the HeyGen renderer's start failed or it was closed")
            return
        self._starting = anyio.Event()
        self._start_task = anyio.get_current_task().id
        self._start_scope = anyio.CancelScope()
        try:
            with self._start_scope:
                await self._open()
            if self._closed:
                raise SessionError("the HeyGen renderer was closed while it was starting")
        except BaseException:
            self._starting.set()  # before close(): a close() already running waits for this
            await self.close()
            raise
        finally:
            self._starting.set()

    async def _open(self) -> None:
        self.session = await self._channel.open()
        self.viewer = ViewerConnection(
            self.session.livekit_url, self.session.livekit_token, self.session.session_id
        )
        self._last_sent = anyio.current_time()
        if self.connect_media:
            self.media = LiveKitRoom(
                provider=PROVIDER,
                on_track=self._on_track,
                on_data=self._on_data,
                on_state_change=self._on_media_state,
            )
            await self.media.connect(self.viewer.url, self.viewer.token)
        if self.keep_alive and self._channel.can_keep_alive:
            self._keep_alive_task = Background(self._keep_alive_loop, name="heygen-keep-alive")
            self._keep_alive_task.start()
        if self.on_connection is not None:
            result = self.on_connection(self.viewer)
            if inspect.isawaitable(result):
                await result

    async def close(self) -> None:
        """Stop the HeyGen session, exactly once, even when cancelled or after errors.

        When it returns nothing of the renderer runs: a start() in progress has finished (its
        session stopped), calls in flight were cut short, keep-alive and media are stopped and
        the HTTP client is closed.
        """
        if self._close_done is not None:
            with anyio.CancelScope(shield=True):
                await self._close_done.wait()
            return
        self._closed = True
        self._close_done = anyio.Event()
        with anyio.CancelScope(shield=True):
            try:
                self._release_all(interrupted=True)
                starting, scope = self._starting, self._start_scope
                if starting is not None and self._start_task != anyio.get_current_task().id:
                    if scope is not None:
                        scope.cancel()
                    await starting.wait()
                await self._inflight.close()
                if self._keep_alive_task is not None:
                    await self._keep_alive_task.stop()
                if self.media is not None:
                    with anyio.move_on_after(5) as left:
                        await _quietly("leaving the LiveKit room", self.media.disconnect())
                    if left.cancelled_caught:
                        logger.warning("HeyGen renderer: leaving the LiveKit room took over 5 s")
                session, self.session = self.session, None
                self.viewer = None
                if session is not None:
                    with anyio.move_on_after(self.close_timeout) as scope:
                        await _stop_quietly(self._channel, session.session_id)
                    if scope.cancelled_caught:
                        logger.error(
                            "stopping HeyGen session %s took longer than %g s: it keeps billing "
                            "until HeyGen's idle timeout ends it",
                            session.session_id,
                            self.close_timeout,
                        )
            finally:
                await _quietly("closing the HTTP client", self._channel.aclose())
                self._close_done.set()

    # -- speaking ----------------------------------------------------------------------------

    async def speak_text(self, text: str) -> None:
        """Have the avatar say ``text`` (one ``repeat`` task); returns when it has (nearly)
        finished saying it, or at once when interrupted."""
        session = self._require_session()
        text = text.strip()
        if not text:
            return
        if len(text) > MAX_TASK_CHARS:
            raise ProviderError(
                f"HeyGen repeat task of {len(text)} characters; at most {MAX_TASK_CHARS} are "
                f"sent in one task (the text starts {text[:40]!r}): split it into sentences",
                provider=PROVIDER,
            )
        generation = self._generation
        with self._inflight.track():  # close() cuts it short: then return as interrupted
            result = await self._channel.task(session.session_id, text)
            now = anyio.current_time()
            self._last_sent = now
            if generation != self._generation:
                # interrupt() ran while the task was on its way: HeyGen may have queued it
                # after the interrupt, so silence it too.
                await self._channel.interrupt(session.session_id)
                return
        if self._closed:
            return
        if result.duration_ms is not None:
            duration = result.duration_ms / 1000
        else:
            duration = estimate_speech_seconds(text, self.words_per_minute)
        self._forget_stale(now)
        utterance = _Utterance(text, result.task_id, duration, max(now, self._timeline_end))
        self._timeline_end = utterance.expected_end
        self._pending.append(utterance)
        logger.debug("HeyGen task %s: %.2f s, %r", result.task_id, duration, text)
        while not utterance.finished:
            changed = utterance.changed
            remaining = self._deadline(utterance) - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(remaining):
                await changed.wait()

    def _deadline(self, utterance: _Utterance) -> float:
        """When ``speak_text`` may return: ``lead_time`` before the utterance's expected end.

        With talking events flowing, an utterance not yet started is timed from its real start;
        until then it waits on a generous bound, so a lost message cannot hang the session.
        """
        if self._media_timing() and utterance.started_at is None:
            return utterance.expected_end + max(5.0, utterance.duration)
        return utterance.expected_end - self.lead_time

    def _media_timing(self) -> bool:
        return self.media is not None and self.media.connected and self._talking_events

    async def interrupt(self) -> None:
        """Stop the avatar now (HeyGen drops its queue too); a pending ``speak_text`` returns."""
        self._generation += 1
        self._release_all(interrupted=True)
        self._timeline_end = anyio.current_time()
        session = self.session
        if session is None or self._closed:
            return
        with self._inflight.track():  # racing close(): close stops the session, we return
            await self._channel.interrupt(session.session_id)
            self._last_sent = anyio.current_time()

    def _release_all(self, *, interrupted: bool) -> None:
        pending, self._pending = self._pending, []
        for utterance in pending:
            utterance.finish(interrupted=interrupted)

    def _forget_stale(self, now: float) -> None:
        self._pending = [u for u in self._pending if u.expected_end + _FORGET_AFTER > now]

    def _require_session(self) -> HeyGenSession:
        if self._closed:
            raise SessionError("this HeyGen renderer is closed")
        if self.session is None:
            raise SessionError("start the HeyGen renderer first (or use it in a session)")
        return self.session

    # -- keep-alive --------------------------------------------------------------------------

    async def _keep_alive_loop(self) -> None:
        while self.session is not None:
            wait = self._last_sent + self.keep_alive_interval - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            session = self.session
            try:
                await self._channel.keep_alive(session.session_id)
                logger.debug("HeyGen keep-alive sent for %s", session.session_id)
            except HeyGenSessionEnded as exc:
                logger.warning("HeyGen session ended while idle: %s", exc)
                return
            except ProviderError as exc:
                logger.warning("HeyGen keep-alive failed (will retry): %s", exc)
            self._last_sent = anyio.current_time()

    # -- media events ------------------------------------------------------------------------

    def _on_track(self, kind: TrackKind, track: Any, participant: str | None) -> None:
        callback = self.on_video_stream if kind == "video" else self.on_audio_stream
        if callback is not None:
            callback(track)

    def _on_media_state(self, state: MediaState) -> None:
        if self.on_state_change is not None:
            self.on_state_change(state)

    def _on_data(self, message: dict[str, Any], participant: str | None) -> None:
        kind = message.get("type")
        task_id = message.get("task_id")
        task_id = None if task_id is None else str(task_id)
        if kind == "avatar_start_talking":
            self._talking_events = True
            self._on_start_talking(task_id)
        elif kind == "avatar_stop_talking":
            self._talking_events = True
            self._on_stop_talking(task_id)

    def _find(self, task_id: str | None, *, unstarted: bool) -> int | None:
        """The pending utterance a talking event is about: by task id, else the oldest."""
        if task_id is not None:
            for i, utterance in enumerate(self._pending):
                if utterance.task_id == task_id:
                    return i
            if any(u.task_id is not None for u in self._pending):
                return None  # a task we did not send (or already forgot)
        for i, utterance in enumerate(self._pending):
            if not unstarted or utterance.started_at is None:
                return i
        return None

    def _on_start_talking(self, task_id: str | None) -> None:
        index = self._find(task_id, unstarted=True)
        if index is None:
            return
        now = anyio.current_time()
        for earlier in self._pending[:index]:  # the avatar moved on: those are done
            earlier.finish()
        self._pending = self._pending[index:]
        utterance = self._pending[0]
        utterance.started_at = now
        self._timeline_end = max(self._timeline_end, utterance.expected_end)
        utterance.wake()

    def _on_stop_talking(self, task_id: str | None) -> None:
        index = self._find(task_id, unstarted=False)
        if index is None:
            return
        done, self._pending = self._pending[: index + 1], self._pending[index + 1 :]
        for utterance in done:
            utterance.finish()
        if not self._pending:
            self._timeline_end = anyio.current_time()
