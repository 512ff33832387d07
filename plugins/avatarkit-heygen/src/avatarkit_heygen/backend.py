"""Reaching HeyGen through the application's own backend, the way browser apps do.

The backend holds the HeyGen API key; this process only sees session ids and LiveKit viewer
credentials. Embedders pass async callables (:class:`HeyGenCallbacks`); YAML users give a
``backend_url`` whose endpoints take the same JSON shapes (:class:`BackendClient`):

======================  =================================  ======================================
endpoint (POST)         request body                       answer (2xx, JSON)
======================  =================================  ======================================
``{url}/session``       ``{}``                             ``{"session_id", "livekit_url",
                                                           "livekit_token"}`` (a started session)
``{url}/task``          ``{"session_id", "text"}``         ``{"task_id", "duration_ms"}``
                                                           (both may be null)
``{url}/interrupt``     ``{"session_id"}``                 anything
``{url}/keep_alive``    ``{"session_id"}``                 anything
``{url}/close``         ``{"session_id"}``                 anything; 404/410 count as closed
======================  =================================  ======================================
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from avatarkit.errors import ProviderError, ProviderHTTPError
from avatarkit_heygen.api import PROVIDER, HeyGenSessionEnded, JSONService, RetryPolicy

__all__ = [
    "BackendClient",
    "CreateSession",
    "HeyGenCallbacks",
    "HeyGenSession",
    "HeyGenTaskResult",
    "SendTask",
    "SessionCall",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HeyGenSession:
    """A started HeyGen streaming session, as the backend hands it out."""

    session_id: str
    livekit_url: str
    livekit_token: str

    def __repr__(self) -> str:  # the token admits anyone to the room: keep it out of logs
        return (
            f"HeyGenSession(session_id={self.session_id!r}, livekit_url={self.livekit_url!r}, "
            "livekit_token='***')"
        )


@dataclass(frozen=True, slots=True)
class HeyGenTaskResult:
    """What HeyGen said about one queued ``repeat`` task (either may be unknown)."""

    task_id: str | None = None
    duration_ms: float | None = None


CreateSession = Callable[[], Awaitable[HeyGenSession]]
SendTask = Callable[[str, str], Awaitable[HeyGenTaskResult]]
SessionCall = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HeyGenCallbacks:
    """The application's own way to run HeyGen sessions (its backend holds the API key)."""

    create_session: CreateSession
    send_task: SendTask
    interrupt_session: SessionCall | None = None
    close_session: SessionCall | None = None
    keep_alive_session: SessionCall | None = None


def session_from_json(data: Any, *, source: str) -> HeyGenSession:
    """Validate a ``{"session_id", "livekit_url", "livekit_token"}`` answer."""
    if not isinstance(data, Mapping):
        raise ProviderError(f"{source} must answer a JSON object, got {data!r}", provider=PROVIDER)
    missing = [k for k in ("session_id", "livekit_url", "livekit_token") if not data.get(k)]
    if missing:
        raise ProviderError(
            f"{source} answered without {', '.join(missing)}: it must return "
            '{"session_id", "livekit_url", "livekit_token"}',
            provider=PROVIDER,
        )
    return HeyGenSession(
        str(data["session_id"]), str(data["livekit_url"]), str(data["livekit_token"])
    )


def task_from_json(data: Any) -> HeyGenTaskResult:
    """Read ``{"task_id", "duration_ms"}`` leniently: both are hints."""
    if not isinstance(data, Mapping):
        return HeyGenTaskResult()
    task_id = data.get("task_id")
    duration = data.get("duration_ms")
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
        duration = None
    return HeyGenTaskResult(None if task_id is None else str(task_id), duration)


class BackendClient(JSONService):
    """The ``backend_url`` endpoints above, as :class:`HeyGenCallbacks`."""

    service = "the HeyGen backend"

    def __init__(
        self,
        backend_url: str,
        *,
        token: str | None = None,
        timeout: float = 15.0,
        session_timeout: float = 60.0,
        task_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        super().__init__(
            backend_url,
            headers=headers,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            secrets=(token,) if token else (),
            transport=transport,
        )
        self.service = f"the HeyGen backend at {self.base_url}"
        self.session_timeout = session_timeout
        self.task_timeout = task_timeout

    def classify(
        self, op: str, status: int, message: str, context: Mapping[str, Any]
    ) -> ProviderHTTPError:
        lowered = message.lower()
        if status in (401, 403):
            return ProviderHTTPError(
                f"{self.service} refused /{op} ({message}): check backend_token",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        if "concurrent" in lowered:
            return ProviderHTTPError(
                f"HeyGen's concurrent-session limit is reached ({message}, via {self.service}): "
                "stop the account's other sessions or wait for their idle timeout, then retry",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        if op != "session" and status in (404, 410):
            return HeyGenSessionEnded(
                f"the HeyGen session {context.get('session_id')!r} has ended ({message}, via "
                f"{self.service}); start a new session",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        hint = "; try again later" if status >= 500 or status == 429 else ""
        return ProviderHTTPError(
            f"{self.service} failed /{op} ({message}){hint}", provider=PROVIDER, status_code=status
        )

    async def create_session(self) -> HeyGenSession:
        data = await self.call("session", {}, idempotent=False, time_limit=self.session_timeout)
        try:
            return session_from_json(data, source=f"{self.service} /session")
        except ProviderError:
            # a session id with the rest missing: the backend started a session we cannot use
            if isinstance(data, Mapping) and data.get("session_id"):
                with anyio.CancelScope(shield=True):
                    try:
                        await self.close_session(str(data["session_id"]))
                    except ProviderError as exc:
                        logger.error(
                            "could not close HeyGen session %s via %s: %s",
                            data["session_id"],
                            self.service,
                            exc,
                        )
            raise

    async def send_task(self, session_id: str, text: str) -> HeyGenTaskResult:
        data = await self.call(
            "task",
            {"session_id": session_id, "text": text},
            idempotent=False,
            time_limit=self.task_timeout,
            context={"session_id": session_id},
        )
        return task_from_json(data)

    async def interrupt_session(self, session_id: str) -> None:
        await self._session_call("interrupt", session_id)

    async def keep_alive_session(self, session_id: str) -> None:
        await self._session_call("keep_alive", session_id)

    async def close_session(self, session_id: str) -> None:
        await self._session_call("close", session_id)

    async def _session_call(self, op: str, session_id: str) -> None:
        await self.call(
            op, {"session_id": session_id}, idempotent=True, context={"session_id": session_id}
        )

    def callbacks(self) -> HeyGenCallbacks:
        return HeyGenCallbacks(
            create_session=self.create_session,
            send_task=self.send_task,
            interrupt_session=self.interrupt_session,
            close_session=self.close_session,
            keep_alive_session=self.keep_alive_session,
        )
