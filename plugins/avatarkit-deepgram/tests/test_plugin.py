"""Registration, options and the URL of avatarkit-deepgram (no network)."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qsl, urlsplit

import pytest
from pydantic import SecretStr, ValidationError

from avatarkit.errors import ConfigError
from avatarkit.plugins import default_registry
from avatarkit.providers import STT, stt_sample_rate, stt_streams
from avatarkit_deepgram.options import DeepgramSTTOptions
from avatarkit_deepgram.protocol import TranscriptMapper, listen_url
from avatarkit_deepgram.stt import DeepgramSTT

KEY = "0123456789abcdef0123456789abcdef01234567"


def test_entry_point_registers_the_stt() -> None:
    spec = default_registry(refresh=True).get("stt", "deepgram")
    assert spec.source.distribution == "avatarkit-deepgram"
    assert spec.load_factory() is DeepgramSTT
    stt = DeepgramSTT(api_key=KEY)
    assert isinstance(stt, STT)
    assert stt_streams(stt) is True
    assert stt_sample_rate(DeepgramSTT(api_key=KEY, sample_rate=8000)) == 8000


def test_discovery_imports_no_network_client() -> None:
    code = (
        "import sys, avatarkit_deepgram.plugin\n"
        "from avatarkit.plugins import default_registry\n"
        "default_registry()\n"
        "bad = [m for m in ('httpx_ws', 'wsproto', 'websockets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_validated_and_the_key_is_secret() -> None:
    options = DeepgramSTTOptions.model_validate({"api_key": KEY})
    assert isinstance(options.api_key, SecretStr)
    assert KEY not in repr(options) + str(options.model_dump())
    with pytest.raises(ValidationError, match="endpointng"):
        DeepgramSTTOptions.model_validate({"endpointng": 10})
    with pytest.raises(ValidationError, match="milliseconds"):
        DeepgramSTTOptions.model_validate({"endpointing": True})
    with pytest.raises(ConfigError, match=r"(?s)deepgram STT: invalid options.*utterance_end_ms"):
        DeepgramSTT(api_key=KEY, utterance_end_ms=500)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("wss://api.deepgram.com", "https://api.deepgram.com/v1/listen"),
        ("ws://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/listen"),
        ("https://dg.example.internal/prefix", "https://dg.example.internal/prefix/v1/listen"),
    ],
)
def test_listen_url(base_url: str, expected: str) -> None:
    options = DeepgramSTTOptions(
        base_url=base_url,
        endpointing=False,
        keyterms=["avatarkit", "Deepgram"],
        extra_query={"diarize": True, "tag": ["a", "b"]},
        language=None,
        utterance_end_ms=None,
    )
    url = listen_url(options)
    assert url.split("?")[0] == expected
    query = parse_qsl(urlsplit(url).query)
    assert ("endpointing", "false") in query
    assert ("diarize", "true") in query
    assert [v for k, v in query if k == "keyterm"] == ["avatarkit", "Deepgram"]
    assert [v for k, v in query if k == "tag"] == ["a", "b"]
    names = [k for k, _ in query]
    assert "language" not in names
    assert "utterance_end_ms" not in names


def _results(text: str, start: float, duration: float, **flags: bool) -> dict[str, object]:
    return {
        "type": "Results",
        "start": start,
        "duration": duration,
        "is_final": flags.get("is_final", False),
        "speech_final": flags.get("speech_final", False),
        "channel": {"alternatives": [{"transcript": text, "words": []}]},
    }


def test_mapper_marks_the_turn_end_once() -> None:
    mapper = TranscriptMapper()
    mapper.offset = 10.0
    out = mapper.map(_results("hello", 0.0, 1.0, is_final=True))
    assert [(t.kind, t.text, t.start, t.end, t.end_of_turn) for t in out] == [
        ("final", "hello", 10.0, 11.0, False)
    ]
    # an empty speech_final closes the open turn; a second one does not
    assert [
        t.end_of_turn for t in mapper.map(_results("", 1.0, 0.3, is_final=True, speech_final=True))
    ] == [True]
    assert mapper.map(_results("", 1.3, 0.3, is_final=True, speech_final=True)) == []
    # UtteranceEnd after the endpoint: speech ended, no second end of turn
    [ended] = mapper.map({"type": "UtteranceEnd", "last_word_end": 0.9})
    assert (ended.kind, ended.end, ended.end_of_turn) == ("speech_ended", 10.9, False)
    # empty interims and unknown or malformed messages yield nothing
    assert mapper.map(_results("  ", 2.0, 0.1)) == []
    assert mapper.map({"type": "Results", "channel": {}}) == []
    assert mapper.map({"type": "Whatever"}) == []
