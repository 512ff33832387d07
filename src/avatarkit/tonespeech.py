"""Synthetic "speech" whose words are tones, and the streaming recogniser that reads it back.

For fake speech-to-text servers (the Deepgram and OpenAI fakes): a test sends audio made by
:func:`tone_speech`, and the fake *recognises* it from the samples it actually received, the way
the real service would transcribe real speech. So a client that drops, reorders, resends or
mis-encodes audio gets wrong words back, and a test can tell. Each word of :data:`VOCABULARY` is
a short sine burst at its own frequency; words are separated by short gaps, utterances by
longer silences.

Imports numpy lazily (only the recogniser and the synthesiser need it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["VOCABULARY", "RecognisedWord", "ToneRecogniser", "tone_speech"]

#: The words :func:`tone_speech` can say; word ``i`` is a tone at ``BASE_HZ + STEP_HZ * i``.
VOCABULARY: tuple[str, ...] = (
    "hello", "there", "how", "are", "you", "today", "what", "is", "the", "weather",
    "like", "tell", "me", "a", "joke", "please", "stop", "thanks", "good", "bye",
    "yes", "no", "maybe", "avatar", "listen", "speak", "again", "world", "one", "two",
    "three", "four",
)  # fmt: skip
BASE_HZ = 400.0
STEP_HZ = 110.0
WORD_SECONDS = 0.16
GAP_SECONDS = 0.06
LEVEL = 0.3
#: 10 ms analysis windows; a window is speech when its RMS (full scale 1.0) exceeds this.
_WINDOW = 0.01
_THRESHOLD = 0.03


def _frequency(word: str) -> float:
    try:
        index = VOCABULARY.index(word.lower())
    except ValueError:
        raise ValueError(f"{word!r} is not in tonespeech.VOCABULARY") from None
    return BASE_HZ + STEP_HZ * index


def tone_speech(
    utterances: Sequence[str],
    sample_rate: int = 16000,
    *,
    lead: float = 0.3,
    pause: float = 1.0,
    tail: float | None = None,
) -> bytes:
    """16-bit mono PCM saying each utterance (space-separated vocabulary words).

    ``lead`` seconds of silence come first, ``pause`` between utterances, ``tail`` (default
    ``pause``) at the end.
    """
    import numpy as np

    def silence(seconds: float) -> Any:
        return np.zeros(round(seconds * sample_rate), dtype=np.float64)

    parts = [silence(lead)]
    for n, utterance in enumerate(utterances):
        if n:
            parts.append(silence(pause))
        for k, word in enumerate(utterance.split()):
            if k:
                parts.append(silence(GAP_SECONDS))
            t = np.arange(round(WORD_SECONDS * sample_rate)) / sample_rate
            burst = LEVEL * np.sin(2 * np.pi * _frequency(word) * t)
            ramp = min(len(t) // 10, round(0.005 * sample_rate))  # no clicks
            if ramp:
                envelope = np.ones(len(t))
                envelope[:ramp] = np.linspace(0, 1, ramp)
                envelope[-ramp:] = np.linspace(1, 0, ramp)
                burst *= envelope
            parts.append(burst)
    parts.append(silence(pause if tail is None else tail))
    samples = np.concatenate(parts)
    return bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@dataclass(frozen=True)
class RecognisedWord:
    """A word heard, with its place in the audio fed so far (seconds)."""

    word: str
    start: float
    end: float


class ToneRecogniser:
    """Reads :func:`tone_speech` back from a stream of PCM16 mono bytes.

    :meth:`feed` returns the words completed by the new audio; :attr:`time` is the audio fed
    so far (seconds), :attr:`speech_started` the start of a word being heard (None in silence),
    :attr:`last_word_end` when the last completed word ended.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._window = max(1, round(_WINDOW * sample_rate))
        self._pending = b""
        self._samples = 0  # samples analysed (whole windows)
        self._word: list[Any] = []  # the windows of the word being heard
        self.speech_started: float | None = None
        self.last_word_end: float | None = None

    @property
    def time(self) -> float:
        return self._samples / self.sample_rate

    def feed(self, pcm: bytes) -> list[RecognisedWord]:
        import numpy as np

        data = self._pending + pcm
        size = 2 * self._window
        whole = len(data) - len(data) % size
        self._pending = data[whole:]
        words: list[RecognisedWord] = []
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64) / 32768
        for window in samples.reshape(-1, self._window):
            loud = float(np.sqrt(np.mean(window * window))) > _THRESHOLD
            if loud:
                if self.speech_started is None:
                    self.speech_started = self.time
                self._word.append(window)
            elif self._word:
                words.append(self._close_word())
            self._samples += self._window
        return words

    def flush(self) -> list[RecognisedWord]:
        """The word being heard, if any (at the end of the stream)."""
        return [self._close_word()] if self._word else []

    def _close_word(self) -> RecognisedWord:
        import numpy as np

        samples = np.concatenate(self._word)
        self._word = []
        start = self.speech_started if self.speech_started is not None else self.time
        self.speech_started = None
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        peak = float(np.argmax(spectrum)) * self.sample_rate / len(samples)
        index = round((peak - BASE_HZ) / STEP_HZ)
        word = VOCABULARY[index] if 0 <= index < len(VOCABULARY) else "<noise>"
        self.last_word_end = self.time
        return RecognisedWord(word, round(start, 3), round(self.time, 3))
