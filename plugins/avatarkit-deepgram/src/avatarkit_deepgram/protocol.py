"""Deepgram's live transcription protocol: the URL, the control messages, and what the server's
messages mean as avatarkit :class:`~avatarkit.providers.Transcript` events. Pure: no I/O.

Wire summary (developers.deepgram.com, "listen-streaming"): ``GET /v1/listen?model=...&
encoding=linear16&sample_rate=...`` upgraded to a WebSocket with ``Authorization: Token KEY``;
the client sends binary PCM16 frames and the text messages ``KeepAlive``, ``Finalize`` and
``CloseStream``; the server sends ``Results`` (``is_final``: that stretch of audio will not
change; ``speech_final``: an endpoint), ``SpeechStarted``, ``UtteranceEnd`` and ``Metadata``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from avatarkit.providers import Transcript, WordTiming
from avatarkit_deepgram.options import DeepgramSTTOptions

__all__ = ["CLOSE_STREAM", "FINALIZE", "KEEP_ALIVE", "TranscriptMapper", "listen_url"]

logger = logging.getLogger(__name__)

KEEP_ALIVE = json.dumps({"type": "KeepAlive"})
FINALIZE = json.dumps({"type": "Finalize"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})


def _text(value: bool | int | str) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def listen_url(options: DeepgramSTTOptions) -> str:
    """The ``/v1/listen`` URL with its query, as an http(s) URL (httpx-ws upgrades it)."""
    o = options
    params: list[tuple[str, str]] = [
        ("model", o.model),
        ("encoding", "linear16"),
        ("sample_rate", str(o.sample_rate)),
        ("channels", "1"),
        ("interim_results", _text(o.interim_results)),
        ("punctuate", _text(o.punctuate)),
        ("smart_format", _text(o.smart_format)),
        ("vad_events", _text(o.vad_events)),
        ("endpointing", _text(o.endpointing)),
    ]
    if o.language:
        params.append(("language", o.language))
    if o.utterance_end_ms is not None:
        params.append(("utterance_end_ms", str(o.utterance_end_ms)))
    params += [("keyterm", term) for term in o.keyterms]
    for name, value in o.extra_query.items():
        values = value if isinstance(value, list) else [value]
        params += [(name, _text(v)) for v in values]
    scheme, netloc, path, _, _ = urlsplit(o.base_url.rstrip("/"))
    scheme = {"wss": "https", "ws": "http"}.get(scheme, scheme)
    return urlunsplit((scheme, netloc, f"{path}/v1/listen", urlencode(params), ""))


def _words(alternative: dict[str, Any], offset: float) -> tuple[WordTiming, ...]:
    words = []
    for w in alternative.get("words") or ():
        if isinstance(w, dict) and isinstance(w.get("start"), int | float):
            text = w.get("punctuated_word") or w.get("word") or ""
            words.append(WordTiming(str(text), offset + w["start"], offset + w["end"]))
    return tuple(words)


class TranscriptMapper:
    """Turns server messages of one stream into transcripts, across reconnections.

    ``offset`` is where the current connection's audio starts in the audio given to
    ``transcribe`` (a reconnected stream starts again at 0). Finals carry only their own stretch
    of text; ``end_of_turn`` is set on the final that Deepgram marked ``speech_final``, or on
    ``speech_ended`` (UtteranceEnd) when finals were left without an endpoint.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        #: end of the last final stretch, in seconds of the current connection
        self.final_until = 0.0
        self.finals = 0
        self._open_turn = False

    def map(self, message: dict[str, Any]) -> list[Transcript]:
        kind = message.get("type")
        if kind == "Results":
            return self._results(message)
        if kind == "SpeechStarted":
            at = message.get("timestamp")
            start = self.offset + at if isinstance(at, int | float) else None
            return [Transcript("speech_started", start=start)]
        if kind == "UtteranceEnd":
            at = message.get("last_word_end")
            end = self.offset + at if isinstance(at, int | float) and at >= 0 else None
            ended = Transcript("speech_ended", end=end, end_of_turn=self._open_turn)
            self._open_turn = False
            return [ended]
        if kind == "Metadata":
            logger.debug("deepgram: request %s", message.get("request_id"))
        else:
            logger.debug("deepgram: ignoring a %r message", kind)
        return []

    def _results(self, message: dict[str, Any]) -> list[Transcript]:
        try:
            alternative = message["channel"]["alternatives"][0]
            text = str(alternative.get("transcript") or "")
            start = float(message.get("start") or 0.0)
            duration = float(message.get("duration") or 0.0)
        except (KeyError, IndexError, TypeError, ValueError):
            logger.debug("deepgram: ignoring malformed Results: %.300r", message)
            return []
        begin, end = self.offset + start, self.offset + start + duration
        words = _words(alternative, self.offset)
        if not message.get("is_final"):
            return [Transcript("interim", text, begin, end, words)] if text.strip() else []
        self.final_until = max(self.final_until, start + duration)
        endpoint = bool(message.get("speech_final"))
        if text.strip():
            self.finals += 1
            self._open_turn = not endpoint
            return [Transcript("final", text, begin, end, words, end_of_turn=endpoint)]
        if endpoint and self._open_turn:  # an empty endpoint closing earlier finals
            self._open_turn = False
            return [Transcript("final", "", begin, end, end_of_turn=True)]
        return []
