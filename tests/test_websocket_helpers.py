"""avatarkit.websocket's small helpers for WebSocket TTS plugins: base64 PCM split anywhere,
and the advice for a service's error message."""

from __future__ import annotations

import base64
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avatarkit.errors import ProviderError
from avatarkit.http import RequestContext
from avatarkit.websocket import Base64PCM, speech_service_error

KEY = "sk_live_0123456789abcdefSECRET"
CTX = RequestContext(
    provider="acme TTS",
    base_url="http://127.0.0.1:9",
    model="m",
    api_key=KEY,
    key_env_var="ACME_API_KEY",
    timeout=1.0,
    max_retries=0,
    key_pattern=re.compile(r"\bsk_[A-Za-z0-9]{8,}"),
)


@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_pieces_split_anywhere_give_the_whole_samples_once(data: bytes, cuts: list[int]) -> None:
    decoder = Base64PCM("acme TTS")
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [base64.b64encode(data[a:b]).decode() for a, b in itertools.pairwise(bounds)]
    out = [decoder.decode(piece) for piece in pieces]
    assert all(len(piece) % 2 == 0 for piece in out)  # whole samples only
    assert b"".join(out) == data[: len(data) - len(data) % 2]  # in order, none lost or repeated


def test_audio_that_is_not_base64_is_a_clear_error() -> None:
    with pytest.raises(ProviderError, match="not base64") as caught:
        Base64PCM("acme TTS").decode("not*base64!")
    assert caught.value.provider == "acme TTS"


@pytest.mark.parametrize(
    ("message", "code", "advice"),
    [
        ("Voice not found", None, "voice 'v1' was not found: check the voice_id option"),
        ("bad", "voice_not_found", "voice 'v1' was not found"),
        (f"Invalid API key {KEY}", None, "authentication failed: check the api_key option or "),
        ("denied", 401, "authentication failed"),
        ("model nope is not available", None, "model 'm2' was refused: check the model option"),
        ("something else", None, "the service ended the stream with an error"),
        ("", None, "the service ended the stream with an error (server said: no detail)"),
    ],
)
def test_service_errors_say_what_to_fix_without_the_key(
    message: str, code: object, advice: str
) -> None:
    error = speech_service_error(
        CTX, message, code, voice_id="v1", model="m2", auth_words=("api key", "401")
    )
    assert advice in str(error)
    assert error.provider == "acme TTS"
    assert KEY not in str(error)
    assert "server said:" in str(error)
