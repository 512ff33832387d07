"""avatarkit.http: the shared wording of HTTP failures, and that no secret survives in it."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

import anyio
import anyio.lowlevel
import pytest

from avatarkit.credentials import LOCAL_PLACEHOLDER_KEY
from avatarkit.errors import (
    ConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
)
from avatarkit.http import (
    KeyedClient,
    RequestContext,
    connection_error,
    keyed_context,
    status_error,
    streamed_response,
    timeout_error,
    unexpected_error,
)
from avatarkit.testing import Responder, loopback_server

KEY = "acme-secret-key-123"


def context(max_retries: int = 2) -> RequestContext:
    return RequestContext(
        provider="acme LLM",
        base_url="http://127.0.0.1:9/v1",
        model="acme-1",
        api_key=KEY,
        key_env_var="ACME_API_KEY",
        timeout=1.5,
        max_retries=max_retries,
        key_pattern=re.compile(r"\bak-[A-Za-z0-9*]{6,}"),
    )


@pytest.mark.parametrize(
    ("status", "advice", "retryable"),
    [
        (
            401,
            "authentication failed at http://127.0.0.1:9/v1: check the api_key option or "
            "ACME_API_KEY",
            False,
        ),
        (403, "permission denied: this key may not use model 'acme-1'", False),
        (404, "model 'acme-1' or the endpoint was not found at http://127.0.0.1:9/v1", False),
        (422, "the request was rejected: check the options", False),
        (429, "rate limited, still after 3 attempts: slow down", True),
        (503, "server error, still after 3 attempts: try again later", True),
        (418, "unexpected error status", False),
    ],
)
def test_status_advice(status: int, advice: str, retryable: bool) -> None:
    error = status_error(status, context(), detail="nope", request_id="req_1")
    assert isinstance(error, ProviderHTTPError)
    assert str(error).startswith(f"acme LLM: HTTP {status}: {advice}")
    assert str(error).endswith("(server said: nope)")
    assert (error.status_code, error.request_id, error.retryable) == (status, "req_1", retryable)


def test_provider_advice_and_retryable_override_the_standard_ones() -> None:
    error = status_error(429, context(), advice="quota exhausted", retryable=False)
    assert str(error) == "acme LLM: HTTP 429: quota exhausted"
    assert error.retryable is False


def test_secrets_are_scrubbed_from_message_and_body() -> None:
    body = {"error": {"message": f"bad key {KEY} (ak-ABCD****WXYZ)"}}
    error = status_error(401, context(), detail=f"bad key {KEY} ak-ABCD****WXYZ", body=body)
    assert KEY not in str(error)
    assert "ak-ABCD" not in str(error)
    assert error.body is not None
    assert KEY not in error.body
    assert "ak-ABCD" not in error.body
    assert "bad key ***" in error.body


def test_body_is_truncated_and_absent_when_empty() -> None:
    assert status_error(500, context(), body="x" * 5000).body == "x" * 2000
    assert status_error(500, context(), body=None).body is None


def test_timeout_names_the_setting_and_attempts() -> None:
    error = timeout_error(context(max_retries=0))
    assert isinstance(error, ProviderTimeout)
    assert error.retryable
    assert "within timeout=1.5s (max_retries is 0)" in str(error)


def test_connection_error_before_and_during_the_reply() -> None:
    cause = ConnectionRefusedError(f"refused, key={KEY}")
    before = connection_error(context(), cause)
    assert isinstance(before, ProviderConnectionError)
    assert before.retryable
    assert "cannot reach http://127.0.0.1:9/v1 after 3 attempts (ConnectionRefusedError" in str(
        before
    )
    assert KEY not in str(before)
    during = connection_error(context(), None, mid_stream=True)
    assert str(during) == (
        "acme LLM: the connection to http://127.0.0.1:9/v1 dropped in the middle of the reply"
    )


def test_unexpected_error_is_named_and_not_retryable() -> None:
    error = unexpected_error(context(), ValueError(f"odd {KEY}"))
    assert str(error) == "acme LLM: unexpected ValueError: odd ***"
    assert not error.retryable


# -- streamed_response: the client's errors mapped, the response always closed ----------------


class VendorError(Exception):
    """Stands in for an SDK's exception class."""


class Response:
    """A streamed response as SDKs give them: iterable, with an async close()."""

    def __init__(self, pieces: list[str], fail_after: int | None = None) -> None:
        self.pieces = pieces
        self.fail_after = fail_after
        self.closed = 0
        self.read = 0

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> str:  # not an async generator: nothing left for the GC to close
        await anyio.lowlevel.checkpoint()
        if self.read == self.fail_after:
            raise VendorError("connection reset")
        if self.read == len(self.pieces):
            raise StopAsyncIteration
        self.read += 1
        return self.pieces[self.read - 1]

    async def close(self) -> None:
        await anyio.lowlevel.checkpoint()  # a cancelled, unshielded close would stop here
        self.closed += 1


def to_error(exc: BaseException, mid_stream: bool) -> ProviderError:
    return ProviderError(f"{exc} (mid_stream={mid_stream})", provider="acme")


async def opened(response: Response) -> Response:
    return response


async def failing() -> Response:
    raise VendorError("refused")


async def read(response: Response) -> list[str]:
    async with streamed_response(opened(response), errors=VendorError, to_error=to_error) as r:
        return [piece async for piece in r]


async def test_reads_the_whole_response_and_closes_it() -> None:
    response = Response(["a", "b"])
    assert await read(response) == ["a", "b"]
    assert response.closed == 1


async def test_an_error_while_opening_is_not_mid_stream() -> None:
    with pytest.raises(ProviderError, match=r"refused \(mid_stream=False\)"):
        async with streamed_response(failing(), errors=VendorError, to_error=to_error):
            raise AssertionError("the block must not run")


async def test_an_error_while_reading_is_mid_stream_and_the_response_is_closed() -> None:
    response = Response(["a", "b"], fail_after=1)
    with pytest.raises(ProviderError, match=r"reset \(mid_stream=True\)") as info:
        await read(response)
    assert info.value.__cause__ is None
    assert response.closed == 1


async def test_other_exceptions_pass_through_unmapped() -> None:
    response = Response(["a"])
    with pytest.raises(KeyError):
        async with streamed_response(opened(response), errors=VendorError, to_error=to_error):
            raise KeyError("ours")
    assert response.closed == 1


async def test_closed_when_cancelled_mid_stream() -> None:
    response = Response(["a"] * 1000)
    with anyio.CancelScope() as scope:
        async with streamed_response(opened(response), errors=VendorError, to_error=to_error) as r:
            async for _ in r:
                scope.cancel()
    assert response.closed == 1


async def test_closed_when_the_consumer_stops_early() -> None:
    response = Response(["a", "b", "c"])

    async def deltas() -> AsyncGenerator[str, None]:
        async with streamed_response(opened(response), errors=VendorError, to_error=to_error) as r:
            async for piece in r:
                yield piece

    stream = deltas()
    assert await anext(stream) == "a"
    await stream.aclose()  # what an interrupt does
    assert response.closed == 1


def _keyed(api_key: str | None, base_url: str = "https://api.acme.test/v1") -> RequestContext:
    return keyed_context(
        provider="acme TTS",
        api_key=api_key,
        env_var="ACME_API_KEY",
        key_pattern=re.compile(r"\bak-[A-Za-z0-9*]{6,}"),
        base_url=base_url,
        model="voice-2",
        timeout=7.0,
    )


def test_keyed_context_takes_the_option_first_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACME_API_KEY", "ak-from-env-0000")
    ctx = _keyed("ak-from-option-1111")
    assert ctx == RequestContext(
        provider="acme TTS",
        base_url="https://api.acme.test/v1",
        model="voice-2",
        api_key="ak-from-option-1111",
        key_env_var="ACME_API_KEY",
        timeout=7.0,
        max_retries=0,
        key_pattern=ctx.key_pattern,
    )
    assert _keyed(None).api_key == "ak-from-env-0000"
    # the context scrubs its own key and anything shaped like the service's keys
    assert ctx.clean("sent ak-from-option-1111, echoed ak-ab***cd") == "sent ***, echoed ***"


def test_keyed_context_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    assert _keyed(None, "http://127.0.0.1:9").api_key == LOCAL_PLACEHOLDER_KEY
    with pytest.raises(ConfigError, match=r"acme TTS: no API key: set the ACME_API_KEY"):
        _keyed(None)


class _Keyed(KeyedClient):
    def __init__(self) -> None:
        self._ctx = context()
        self._timeout = 1.0


@pytest.mark.anyio
async def test_a_keyed_client_closes_its_connections_even_when_cancelled() -> None:
    def handler(r: Responder) -> None:
        r.send(200, {})

    provider = _Keyed()
    await provider.start()
    client = provider._client
    assert client is not None
    assert provider.secrets == (KEY,)
    with loopback_server(handler) as server:
        await client.get(server.url)  # a pooled keep-alive connection to close
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool.connections
        with anyio.CancelScope() as scope:
            scope.cancel()
            await provider.close()  # from a cancelled scope: still closed
        assert client.is_closed
        assert not pool.connections  # not leaked
    await provider.close()  # idempotent
