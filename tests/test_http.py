"""avatarkit.http: the shared wording of HTTP failures, and that no secret survives in it."""

from __future__ import annotations

import re

import pytest

from avatarkit.errors import ProviderConnectionError, ProviderHTTPError, ProviderTimeout
from avatarkit.http import (
    RequestContext,
    connection_error,
    status_error,
    timeout_error,
    unexpected_error,
)

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
