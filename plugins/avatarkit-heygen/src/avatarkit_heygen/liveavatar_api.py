"""LiveAvatar's HTTP API: session token, start, keep-alive, stop.

Every failure becomes an avatarkit error that says what to do; the API key never appears in one.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx

from avatarkit.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    redact,
)

__all__ = ["PROVIDER", "LiveAvatarAPI", "SessionInfo", "SessionToken"]

logger = logging.getLogger(__name__)

PROVIDER = "liveavatar"
Mode = Literal["FULL", "LITE"]

#: Words in an error body that mean "this session is already gone" (stop is then a success).
_ALREADY_ENDED = ("not found", "already", "ended", "closed", "stopped", "expired", "inactive")


@dataclass(frozen=True, slots=True)
class SessionToken:
    """What ``/v1/sessions/token`` returns."""

    session_id: str
    session_token: str

    def __repr__(self) -> str:
        return f"SessionToken(session_id={self.session_id!r}, session_token='***')"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ``/v1/sessions/start`` returns (tokens kept out of the repr)."""

    session_id: str
    livekit_url: str | None
    livekit_client_token: str | None
    livekit_agent_token: str | None
    ws_url: str | None
    max_session_duration: float | None

    def __repr__(self) -> str:
        return (
            f"SessionInfo(session_id={self.session_id!r}, livekit_url={self.livekit_url!r}, "
            f"ws_url={self.ws_url!r}, max_session_duration={self.max_session_duration!r})"
        )


def _error_message(response: httpx.Response) -> str:
    """The server's explanation, read defensively (JSON ``message``/``detail``/``error``)."""
    text = response.text
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("detail") or json.dumps(value)
            if isinstance(value, list):
                value = "; ".join(
                    str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value
                )
            if value:
                return str(value)
    snippet = " ".join(text.split())[:200]
    return snippet or response.reason_phrase or "no details"


_ADVICE = {
    401: "the API key (or session token) was rejected: check renderer.api_key",
    402: "the account's plan or credits do not allow this session: check your LiveAvatar plan",
    403: "the account's plan or credits do not allow this: check your LiveAvatar plan and avatar",
    404: "not found: check renderer.avatar_id and renderer.base_url",
    422: "LiveAvatar rejected the request's fields: check the renderer options",
    429: "rate limited by LiveAvatar: wait and try again",
}


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~0.1 s per client."""
    return httpx.create_ssl_context()


class LiveAvatarAPI:
    """A thin client of LiveAvatar's session endpoints over one ``httpx.AsyncClient``."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), verify=_ssl_context()
        )

    def __repr__(self) -> str:
        return f"LiveAvatarAPI(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            with anyio.CancelScope(shield=True):
                await self.client.aclose()

    async def _post(
        self,
        path: str,
        *,
        what: str,
        json_body: dict[str, Any] | None = None,
        session_token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if session_token is not None:
            headers["Authorization"] = f"Bearer {session_token}"
        else:
            headers["X-API-KEY"] = self._api_key
        secrets = (self._api_key, session_token)
        if self.client.is_closed:
            raise ProviderConnectionError(f"{what}: the HTTP client is closed", provider=PROVIDER)
        try:
            response = await self.client.post(
                f"{self.base_url}{path}", headers=headers, json=json_body
            )
        except RuntimeError as exc:  # httpx's way of saying the client closed under the call
            if not self.client.is_closed:
                raise
            raise ProviderConnectionError(
                f"{what}: the HTTP client is closed", provider=PROVIDER
            ) from exc
        except httpx.TimeoutException as exc:
            message = f"{what}: no answer from {self.base_url}"
            raise ProviderTimeout(message, provider=PROVIDER) from exc
        except httpx.HTTPError as exc:
            message = redact(f"{what}: cannot reach {self.base_url}: {exc}", secrets)
            raise ProviderConnectionError(message, provider=PROVIDER) from exc
        if response.status_code >= 400:
            detail = redact(_error_message(response), secrets)
            advice = _ADVICE.get(response.status_code)
            if advice is None and response.status_code >= 500:
                advice = "LiveAvatar had a server error: try again"
            message = f"{what} failed: {detail}" + (f" ({advice})" if advice else "")
            raise ProviderHTTPError(
                message,
                provider=PROVIDER,
                status_code=response.status_code,
                request_id=response.headers.get("x-request-id"),
                body=redact(response.text[:1000], secrets),
            )
        try:
            body = response.json() if response.content else {}
        except ValueError:
            kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
            raise ProviderError(
                f"{what}: HTTP {response.status_code} with a body that is not JSON ({kind}): "
                "a proxy or gateway may be in the way",
                provider=PROVIDER,
            ) from None
        if not isinstance(body, dict):
            raise ProviderError(f"{what}: unexpected answer {body!r:.200}", provider=PROVIDER)
        return response.status_code, body

    @staticmethod
    def _data(body: dict[str, Any], what: str, *fields: str) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, dict) or any(not data.get(f) for f in fields):
            missing = ", ".join(fields)
            raise ProviderError(
                f"{what}: the answer lacks data.{{{missing}}} ({_error_message_from(body)})",
                provider=PROVIDER,
            )
        return data

    async def create_token(
        self,
        *,
        mode: Mode,
        avatar_id: str,
        quality: str,
        is_sandbox: bool,
        voice_id: str | None = None,
        context_id: str | None = None,
        language: str | None = None,
        voice_agent_id: str | None = None,
        max_session_duration: int | None = None,
    ) -> SessionToken:
        """``POST /v1/sessions/token``: a session id and its one-session bearer token.

        FULL mode names its persona with ``voice_agent`` (a stored voice agent) when
        ``voice_agent_id`` is given, else with the inline ``avatar_persona`` that LiveAvatar's
        API reference marks deprecated but still documents; the two are mutually exclusive.
        """
        body: dict[str, Any] = {
            "mode": mode,
            "avatar_id": avatar_id,
            "video_settings": {"encoding": "H264", "quality": quality},
            "is_sandbox": is_sandbox,
        }
        if mode == "FULL" and voice_agent_id is not None:
            agent = {"id": voice_agent_id, "language": language}
            body["voice_agent"] = {k: v for k, v in agent.items() if v is not None}
        elif mode == "FULL":
            persona = {"voice_id": voice_id, "context_id": context_id, "language": language}
            body["avatar_persona"] = {k: v for k, v in persona.items() if v is not None}
        if max_session_duration is not None:
            body["max_session_duration"] = max_session_duration
        _, answer = await self._post("/v1/sessions/token", what="session token", json_body=body)
        data = self._data(answer, "session token", "session_id", "session_token")
        return SessionToken(str(data["session_id"]), str(data["session_token"]))

    async def start(self, token: SessionToken) -> SessionInfo:
        """``POST /v1/sessions/start``: the avatar joins its room; returns where to connect."""
        _, answer = await self._post(
            "/v1/sessions/start", what="session start", session_token=token.session_token
        )
        data = self._data(answer, "session start")
        duration = data.get("max_session_duration")
        return SessionInfo(
            session_id=str(data.get("session_id") or token.session_id),
            livekit_url=data.get("livekit_url"),
            livekit_client_token=data.get("livekit_client_token"),
            livekit_agent_token=data.get("livekit_agent_token"),
            ws_url=data.get("ws_url"),
            max_session_duration=float(duration) if isinstance(duration, int | float) else None,
        )

    async def keep_alive(self, token: SessionToken) -> None:
        """``POST /v1/sessions/keep-alive``: reset the idle timer (FULL mode has no WebSocket).

        Not in our reference contract; public integrations use it with the session token.
        """
        await self._post(
            "/v1/sessions/keep-alive",
            what="keep-alive",
            json_body={"session_id": token.session_id},
            session_token=token.session_token,
        )

    async def stop(self, token: SessionToken) -> bool:
        """``POST /v1/sessions/stop``; True when the session is stopped (or was already).

        Tries the session token, then the API key (the token may have expired), and retries a
        transient failure once: a session left running costs money.
        """
        attempts: list[str | None] = [token.session_token, None]
        last: Exception | None = None
        transient_retry = True
        while attempts:
            bearer = attempts[0]
            try:
                await self._post(
                    "/v1/sessions/stop",
                    what="session stop",
                    json_body={"session_id": token.session_id},
                    session_token=bearer,
                )
                return True
            except ProviderHTTPError as exc:
                last = exc
                detail = str(exc).lower()
                if exc.status_code in (404, 410) or any(w in detail for w in _ALREADY_ENDED):
                    logger.debug("LiveAvatar session %s was already ended", token.session_id)
                    return True
                if exc.status_code in (401, 403) and len(attempts) > 1:
                    attempts.pop(0)
                    continue
                if not exc.retryable or not transient_retry:
                    break
            except ProviderError as exc:
                # timeouts, dropped connections, and 2xx answers that are not LiveAvatar's
                # (a gateway's HTML page): the stop may not have happened, so try once more
                last = exc
                if not transient_retry:
                    break
            transient_retry = False
            await anyio.sleep(0.2)
        logger.error(
            "could not stop LiveAvatar session %s (it may still be billed until it times out): %s",
            token.session_id,
            last,
        )
        return False


def _error_message_from(body: dict[str, Any]) -> str:
    for key in ("message", "detail", "error"):
        if body.get(key):
            return str(body[key])[:200]
    return "no message"
