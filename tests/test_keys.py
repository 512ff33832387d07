"""No secret leaves a session: not in a raised error, its cause chain, an event, or the JSON
``serve`` sends (asyncio and trio).

The secrets are those the configuration resolved (``AvatarSession(secrets=...)``, filled in by
``load_session``) and those providers declare (``api_key``, ``secrets``).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import BaseModel, SecretStr

from avatarkit import (
    AvatarSession,
    ErrorEvent,
    Message,
    ProviderError,
    ProviderHTTPError,
    hookimpl,
    load_session,
)
from avatarkit.errors import RedactedError, redact, redact_exception
from avatarkit.events import Event, event_to_dict
from avatarkit.testing import FakeLLM, FakeTextRenderer, registered

KEY = "sk-live-7f3a/9Q+zz=="  # has characters a URL percent-encodes
DIGITS = 424242424242  # an unquoted all-digit secret arrives as an int


class VendorError(Exception):
    """Like an SDK's HTTP error: the request URL (with the key in its query) in the message."""

    def __init__(self, url: str) -> None:
        super().__init__(f"401 Unauthorized for url {url}")
        self.url = url


def url_with(key: object) -> str:
    return f"https://api.example.test/v1/chat?key={quote(str(key), safe='')}&raw={key}"


class LeakyLLM(FakeLLM):
    """Fails the way a vendor SDK does; ``how`` picks where the key sits."""

    def __init__(self, how: str, key: object = KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.how = how
        self.key = key

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        if self.how == "call":  # raises before streaming, from the call itself
            raise VendorError(url_with(self.key))
        return self._stream()

    async def _stream(self) -> AsyncIterator[str]:
        yield f"Your key is {self.key}. "
        try:
            raise OSError(f"connection to {url_with(self.key)} reset")
        except OSError as cause:
            if self.how == "avatarkit":
                raise ProviderHTTPError(
                    f"rejected {url_with(self.key)}",
                    provider="Leaky",
                    status_code=401,
                    body=f'{{"error": "bad key {self.key}"}}',
                ) from cause
            raise VendorError(url_with(self.key)) from cause


class DeclaringLLM(LeakyLLM):
    """Declares its key as an ``api_key`` attribute, the way most providers hold it."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.api_key = SecretStr(KEY)


class TokenLLM(LeakyLLM):
    """Obtains a session token at start and declares it through ``secrets``."""

    def __init__(self, how: str) -> None:
        super().__init__(how, key="tok-unknown-until-start")
        self._token: str | None = None

    async def start(self) -> None:
        await super().start()
        self._token = self.key = "tok-9a8b7c6d5e"

    @property
    def secrets(self) -> list[str | None]:
        return [self._token]


def leaked(text: str, key: object) -> bool:
    return str(key) in text or quote(str(key), safe="") in text


def everything_said(error: BaseException, events: list[Event]) -> str:
    parts = ["".join(traceback.format_exception(error)), repr(error), str(error)]
    for event in events:
        parts.append(repr(event))
        parts.append(json.dumps(event_to_dict(event)))
        if isinstance(event, ErrorEvent) and event.error is not None:
            parts.append("".join(traceback.format_exception(event.error)))
    return "\n".join(parts)


@pytest.mark.parametrize("how", ["call", "stream", "avatarkit"])
@pytest.mark.parametrize("source", ["session", "declared-api_key", "declared-secrets", "int"])
async def test_no_secret_in_errors_events_or_their_causes(how: str, source: str) -> None:
    key: object = KEY
    if source == "session":
        llm: LeakyLLM = LeakyLLM(how)
        session = AvatarSession(llm=llm, renderer=FakeTextRenderer(), secrets=[KEY])
    elif source == "int":
        key = DIGITS
        llm = LeakyLLM(how, key=DIGITS)
        session = AvatarSession(llm=llm, renderer=FakeTextRenderer(), secrets=[DIGITS])
    elif source == "declared-api_key":
        llm = DeclaringLLM(how)
        session = AvatarSession(llm=llm, renderer=FakeTextRenderer())
    else:
        llm = TokenLLM(how)
        session = AvatarSession(llm=llm, renderer=FakeTextRenderer())
    events: list[Event] = []
    session.on_event(events.append)
    async with session:
        key = llm.key
        with pytest.raises(ProviderError) as info:
            await session.send("hi")
    error = info.value
    assert not leaked(everything_said(error, events), key)
    assert "***" in str(error)
    if how == "avatarkit":
        assert isinstance(error, ProviderHTTPError)  # still catchable as what it is
        assert error.body is not None
        assert not leaked(error.body, key)
    assert [e.stage for e in events if isinstance(e, ErrorEvent)] == ["llm"]


# -- through the configuration ------------------------------------------------------------------


class KeyedOptions(BaseModel):
    api_key: SecretStr


class KeyedLLM(LeakyLLM):
    """Keeps its key private (``_key``): only the configuration knows it is a secret."""

    def __init__(self, api_key: SecretStr) -> None:
        super().__init__("stream", key=api_key.get_secret_value())


class KeyedPlugin:
    __name__ = "keyed"

    @hookimpl
    def register_providers(self, registry: Any) -> None:
        registry.llm("keyed", KeyedLLM, options=KeyedOptions)
        registry.renderer("quiet", FakeTextRenderer)


async def test_the_secrets_config_resolved_are_kept_out() -> None:
    config = {
        "llm": {"provider": "keyed", "api_key": "${KEYED_API_KEY}"},
        "renderer": {"provider": "quiet"},
    }
    with registered(KeyedPlugin()) as registry:
        session = load_session(config, registry=registry, env={"KEYED_API_KEY": KEY})
    events: list[Event] = []
    session.on_event(events.append)
    async with session:
        with pytest.raises(ProviderError) as info:
            await session.send("hi")
    assert not leaked(everything_said(info.value, events), KEY)


async def test_a_failing_close_or_interrupt_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Leaky(FakeTextRenderer):
        async def interrupt(self) -> None:
            raise VendorError(url_with(KEY))

        async def close(self) -> None:
            await super().close()
            raise VendorError(url_with(KEY))

    with caplog.at_level(logging.DEBUG, logger="avatarkit"):
        async with AvatarSession(llm=LeakyLLM("stream"), renderer=Leaky(), secrets=[KEY]) as s:
            with pytest.raises(ProviderError):
                await s.send("hi")
    assert "closing Leaky failed" in caplog.text
    assert not leaked(caplog.text, KEY)


# -- the rule itself -----------------------------------------------------------------------------


def test_redact_rule() -> None:
    assert redact(f"a {KEY} b {quote(KEY, safe='')}", [KEY]) == "a *** b ***"
    assert redact("id 424242424242 x", [DIGITS]) == "id *** x"
    assert redact("key abc", [SecretStr("abc")]) == "key ***"
    # A short secret is redacted where it stands alone, not inside every word.
    assert redact("abc abcdef", ["abc"]) == "*** abcdef"
    assert redact("nothing", ["", None]) == "nothing"


def test_redact_exception_replaces_a_vendor_error_and_cleans_the_chain() -> None:
    try:
        try:
            raise VendorError(url_with(KEY))
        except VendorError as cause:
            raise ProviderError(f"failed: {KEY}", provider="p") from cause
    except ProviderError as exc:
        error = exc
    cleaned = redact_exception(error, [KEY])
    assert cleaned is error
    assert isinstance(cleaned.__cause__, RedactedError)
    assert cleaned.__cause__.original_type == "VendorError"
    assert not leaked("".join(traceback.format_exception(cleaned)), KEY)


def test_notes_on_an_exception_are_cleaned_too() -> None:
    error = ValueError("nothing secret here")
    error.add_note(f"while calling {url_with(KEY)}")
    wrapped = ProviderError("failed", provider="p")
    wrapped.__cause__ = error
    wrapped.add_note(f"key was {KEY}")
    cleaned = redact_exception(wrapped, [KEY])
    assert not leaked("".join(traceback.format_exception(cleaned)), KEY)
