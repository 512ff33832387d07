"""HeyGen's streaming API v1 over httpx: requests, retries, and errors that say what to do.

Two services speak JSON over HTTP to this plugin: HeyGen itself (:class:`HeyGenAPI`) and, in
backend mode, the application's own backend (``backend.py``). Both share :class:`JSONService`,
which owns the retry policy and turns every failure into an avatarkit error.

Retries use tenacity (well kept, async, takes ``anyio.sleep`` so it runs on asyncio and trio;
httpx's own transport retries only cover connect errors). What is retried depends on whether the
request can have had an effect: a connect error, 429 or 503 means HeyGen did nothing, so every
call is retried; after a 500/502/504 or a read timeout HeyGen may have acted, so only calls that
are safe to repeat are (``start``, ``interrupt``, ``keep_alive``, ``stop``), never ``new`` (a
second session would be billed) or ``task`` (the avatar would say the sentence twice).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from avatarkit.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    redact,
)
from avatarkit_heygen.heygen_options import DEFAULT_BASE_URL

__all__ = [
    "DEFAULT_BASE_URL",
    "HeyGenAPI",
    "HeyGenSessionEnded",
    "JSONService",
    "RetryPolicy",
]

logger = logging.getLogger(__name__)

PROVIDER = "heygen"

#: Phrases HeyGen uses when a session no longer exists (stopped, idled out, over its limit).
_ENDED = (
    "not found",
    "closed",
    "expired",
    "not exist",
    "does not exist",
    "ended",
    "invalid session",
)


class HeyGenSessionEnded(ProviderHTTPError):
    """HeyGen no longer knows the session: it was stopped, idled out or hit its duration limit."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0


class _Transient(Exception):
    """A failure worth another attempt. ``delivered=False``: the service surely did nothing."""

    def __init__(
        self, error: ProviderError, *, delivered: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.delivered = delivered
        self.retry_after = retry_after


def _message_of(response: httpx.Response) -> tuple[str, Any]:
    """The error text of a response, whatever its shape; never echoes an HTML page."""
    text = response.text
    content_type = response.headers.get("content-type", "")
    if "html" in content_type or text.lstrip().startswith("<"):
        return "the gateway answered with an HTML error page", None
    try:
        body = json.loads(text) if text else None
    except ValueError:
        return (text.strip()[:200] or response.reason_phrase or "no details"), None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            code = error.get("code")
            return (f"{error['message']} ({code})" if code else str(error["message"])), body
        for key in ("message", "detail", "msg"):
            if isinstance(body.get(key), str) and body[key]:
                code = body.get("code")
                return (f"{body[key]} (code {code})" if code else body[key]), body
        if isinstance(error, str) and error:
            return error, body
    return (text.strip()[:200] or response.reason_phrase or "no details"), body


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class JSONService:
    """POSTs JSON to one service with retries; subclasses say how to read its answers."""

    #: Shown in errors: who answered.
    service = "HeyGen"

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        retry: RetryPolicy,
        secrets: tuple[str, ...] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._secrets = secrets
        # 0.5, 1, 2, 4 ... s (capped), plus up to `backoff` of jitter so clients spread out.
        self._backoff = wait_exponential_jitter(
            multiplier=retry.backoff, max=retry.max_backoff, jitter=retry.backoff
        )
        self._http = httpx.AsyncClient(
            headers=dict(headers), timeout=httpx.Timeout(timeout), transport=transport
        )

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._http.aclose()

    # -- subclass hooks ----------------------------------------------------------------------

    def url(self, op: str) -> str:
        return f"{self.base_url}/{op}"

    def unwrap(self, op: str, response: httpx.Response, body: Any) -> Any:
        """The payload of a successful answer."""
        return body

    def classify(
        self, op: str, status: int, message: str, context: Mapping[str, Any]
    ) -> ProviderHTTPError:
        """The error for an error answer (retries are decided separately, by status)."""
        return ProviderHTTPError(
            f"{self.service} {op} failed: {message}", provider=PROVIDER, status_code=status
        )

    # -- requests ----------------------------------------------------------------------------

    async def call(
        self,
        op: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotent: bool,
        time_limit: float | None = None,
        context: Mapping[str, Any] | None = None,
        method: str = "POST",
    ) -> Any:
        """Send one request (retrying transient failures) and return the answer's payload."""
        limit = self.timeout if time_limit is None else time_limit
        context = context or {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=self._wait,
            retry=retry_if_exception(
                lambda e: isinstance(e, _Transient) and (idempotent or not e.delivered)
            ),
            sleep=anyio.sleep,
            before_sleep=lambda state: self._log_retry(op, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(op, body, limit, context, method)
        except _Transient as failure:
            attempts = retrying.statistics.get("attempt_number", 1)
            error = failure.error
            if attempts > 1:
                error.args = (f"{error.args[0]} (after {attempts} attempts)",)
            raise error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(max(exc.retry_after, backoff), self.retry.max_backoff)
        return backoff

    def _log_retry(self, op: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "%s %s failed (attempt %d), retrying: %s", self.service, op, state.attempt_number, exc
        )

    async def _once(
        self,
        op: str,
        body: Mapping[str, Any] | None,
        limit: float,
        context: Mapping[str, Any],
        method: str,
    ) -> Any:
        url = self.url(op)
        if self._http.is_closed:
            raise self._closed_error(op)
        try:
            with anyio.fail_after(limit):
                if method == "GET":
                    response = await self._http.get(url)
                else:
                    response = await self._http.post(url, json=dict(body or {}))
        except RuntimeError:
            if self._http.is_closed:  # closed under the request: httpx says so with RuntimeError
                raise self._closed_error(op) from None
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(
                ProviderConnectionError(
                    f"cannot reach {self.service} at {self.base_url} ({type(exc).__name__}: "
                    f"{self._redact(str(exc))}): check the network and the URL",
                    provider=PROVIDER,
                ),
                delivered=False,
            ) from None
        except (httpx.TimeoutException, TimeoutError):
            raise _Transient(
                ProviderTimeout(
                    f"{self.service} {op} did not answer within {limit:g} s", provider=PROVIDER
                ),
                delivered=True,
            ) from None
        except httpx.TransportError as exc:
            raise _Transient(
                ProviderConnectionError(
                    f"{self.service} {op}: connection failed ({type(exc).__name__}: "
                    f"{self._redact(str(exc))})",
                    provider=PROVIDER,
                ),
                delivered=True,
            ) from None
        return self._read(op, response, context)

    def _closed_error(self, op: str) -> ProviderConnectionError:
        return ProviderConnectionError(
            f"{self.service} {op}: the HTTP client is closed (the renderer was closed)",
            provider=PROVIDER,
        )

    def _read(self, op: str, response: httpx.Response, context: Mapping[str, Any]) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json() if response.content else None
            except ValueError:
                # a gateway's or proxy's page, not the service's answer: whether the request
                # had its effect is unknown, so only calls safe to repeat are retried
                kind = response.headers.get("content-type", "").split(";")[0] or "no type"
                raise _Transient(
                    ProviderError(
                        f"{self.service} {op} answered HTTP {status} with a body that is not "
                        f"JSON ({kind}): a proxy or gateway may be in the way",
                        provider=PROVIDER,
                    ),
                    delivered=True,
                ) from None
            return self.unwrap(op, response, body)
        message, _ = _message_of(response)
        error = self.classify(op, status, self._redact(message), context)
        if status in (429, 503):
            raise _Transient(error, delivered=False, retry_after=_retry_after(response))
        if status >= 500 or status == 408:
            raise _Transient(error, delivered=True, retry_after=_retry_after(response))
        raise error

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


class HeyGenAPI(JSONService):
    """HeyGen's streaming endpoints, authenticated with the account's API key.

    The key is sent only in the ``x-api-key`` header to ``base_url`` and never appears in errors
    or logs.
    """

    service = "HeyGen"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            headers={"x-api-key": api_key, "accept": "application/json"},
            timeout=timeout,
            retry=retry or RetryPolicy(),
            secrets=(api_key,),
            transport=transport,
        )

    def url(self, op: str) -> str:
        return f"{self.base_url}/v1/streaming.{op}"

    def unwrap(self, op: str, response: httpx.Response, body: Any) -> Any:
        """``data`` of a 2xx answer. HeyGen's SDK reads ``data`` whatever ``code`` says, so a
        ``code`` other than 100 alongside data is success (logged); only one with no data to
        act on is an error, carrying HeyGen's message."""
        if isinstance(body, Mapping):
            code = body.get("code")
            data = body.get("data")
            if code is not None and code != 100:
                message = body.get("message") or "no message"
                if not data:
                    raise self.classify(op, response.status_code, f"{message} (code {code})", {})
                logger.info("HeyGen streaming.%s answered code %s (%s)", op, code, message)
            return data
        return body

    def classify(
        self, op: str, status: int, message: str, context: Mapping[str, Any]
    ) -> ProviderHTTPError:
        lowered = message.lower()
        where = f"streaming.{op}"
        if status in (401, 403):
            return ProviderHTTPError(
                f"HeyGen rejected the API key on {where} ({message}): check the renderer's "
                "api_key (e.g. api_key: ${HEYGEN_API_KEY}) and that the key is active",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        if "concurrent" in lowered:
            return ProviderHTTPError(
                f"HeyGen's concurrent-session limit is reached ({message}): stop the account's "
                "other streaming sessions (or wait for their idle timeout to end them), or raise "
                "the plan's limit, then try again",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        if op == "new" and "avatar" in lowered and status < 500:
            avatar = context.get("avatar_id")
            return ProviderHTTPError(
                f"HeyGen does not accept avatar {avatar!r} ({message}): set avatar_id to an "
                "interactive avatar of your account or a public one",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        if (
            op != "new"
            and status < 500
            and status != 429
            and "session" in lowered
            and any(p in lowered for p in _ENDED)
        ):
            return HeyGenSessionEnded(
                f"the HeyGen session {context.get('session_id')!r} has ended ({message}): it was "
                "stopped, idled out (activity_idle_timeout) or reached its "
                "session_duration_limit; start a new session",
                provider=PROVIDER,
                status_code=status,
                retryable=False,
            )
        if status == 429:
            return ProviderHTTPError(
                f"HeyGen is rate limiting {where} ({message}): slow down and try again later",
                provider=PROVIDER,
                status_code=status,
            )
        if status >= 500:
            return ProviderHTTPError(
                f"HeyGen server error on {where} ({message}): HeyGen may be having trouble; "
                "try again later",
                provider=PROVIDER,
                status_code=status,
            )
        return ProviderHTTPError(
            f"HeyGen refused {where} ({message})", provider=PROVIDER, status_code=status
        )

    # -- the operations ----------------------------------------------------------------------

    async def new(self, body: Mapping[str, Any], *, time_limit: float) -> dict[str, Any]:
        """Create a session; the answer has a ``session_id`` (the caller, holding it, checks
        ``url``/``access_token`` so that a session created with them missing is stopped)."""
        context = {"avatar_id": body.get("avatar_id") or body.get("avatar_name")}
        data = await self.call(
            "new", body, idempotent=False, time_limit=time_limit, context=context
        )
        if not isinstance(data, Mapping) or not data.get("session_id"):
            raise ProviderError(
                "HeyGen streaming.new answered without a session_id", provider=PROVIDER
            )
        return dict(data)

    async def start(self, session_id: str, *, time_limit: float) -> None:
        await self.call(
            "start",
            {"session_id": session_id},
            idempotent=True,
            time_limit=time_limit,
            context={"session_id": session_id},
        )

    async def task(self, session_id: str, text: str, *, time_limit: float) -> dict[str, Any]:
        body = {"session_id": session_id, "text": text, "task_type": "repeat", "task_mode": "async"}
        data = await self.call(
            "task",
            body,
            idempotent=False,
            time_limit=time_limit,
            context={"session_id": session_id},
        )
        return dict(data) if isinstance(data, Mapping) else {}

    async def interrupt(self, session_id: str) -> None:
        await self.call(
            "interrupt",
            {"session_id": session_id},
            idempotent=True,
            context={"session_id": session_id},
        )

    async def keep_alive(self, session_id: str) -> None:
        await self.call(
            "keep_alive",
            {"session_id": session_id},
            idempotent=True,
            context={"session_id": session_id},
        )

    async def stop(self, session_id: str) -> None:
        await self.call(
            "stop",
            {"session_id": session_id},
            idempotent=True,
            context={"session_id": session_id},
        )

    async def list_sessions(self) -> list[dict[str, Any]]:
        data = await self.call("list", idempotent=True, method="GET")
        sessions = data.get("sessions") if isinstance(data, Mapping) else None
        return [dict(s) for s in sessions or [] if isinstance(s, Mapping)]
