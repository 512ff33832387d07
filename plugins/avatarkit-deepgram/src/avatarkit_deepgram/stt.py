"""The ``deepgram`` STT: Deepgram's live transcription over a WebSocket, interim results and
endpointing included (``streaming = True``: one call over the whole microphone stream)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import SecretStr, ValidationError

from avatarkit.errors import ConfigError
from avatarkit.http import keyed_context
from avatarkit.providers import AudioChunk, Transcript
from avatarkit_deepgram.options import DeepgramSTTOptions
from avatarkit_deepgram.stream import DeepgramStream

__all__ = ["DeepgramSTT"]

PROVIDER = "deepgram STT"
ENV_KEY = "DEEPGRAM_API_KEY"
#: Deepgram keys are 40 hex digits; scrubbed from messages even when not ours.
_KEY_LIKE = re.compile(r"\b[0-9a-f]{40}\b")


class DeepgramSTT:
    """Transcribes a live audio stream with Deepgram (``/v1/listen`` over a WebSocket).

    Each :meth:`transcribe` call is one Deepgram stream: it yields ``interim`` text for the
    stretch being spoken, a ``final`` for each stretch Deepgram fixes (``end_of_turn`` on the one
    it marks ``speech_final``), ``speech_started`` (SpeechStarted) and ``speech_ended``
    (UtteranceEnd). A dropped connection is reconnected and the audio not yet finalised is sent
    again, so nothing said is lost; see :mod:`avatarkit_deepgram.stream`. Iterate it with
    ``contextlib.aclosing`` when you may stop early.
    """

    streaming = True

    def __init__(self, **fields: Any) -> None:
        if isinstance(fields.get("api_key"), str):
            fields["api_key"] = SecretStr(fields["api_key"])
        try:
            self.options = DeepgramSTTOptions(**fields)
        except ValidationError as exc:
            raise ConfigError(f"{PROVIDER}: invalid options: {exc}") from None
        self.sample_rate = self.options.sample_rate
        o = self.options
        self._ctx = keyed_context(
            provider=PROVIDER,
            api_key=o.api_key,
            env_var=ENV_KEY,
            key_pattern=_KEY_LIKE,
            base_url=o.base_url.rstrip("/"),
            model=o.model,
            timeout=o.connect_timeout,
        )
        self._api_key = self._ctx.api_key
        self._streams: set[DeepgramStream] = set()

    def __repr__(self) -> str:
        o = self.options
        return f"DeepgramSTT(model={o.model!r}, language={o.language!r}, base_url={o.base_url!r})"

    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        """Yield transcripts of ``audio`` (mono PCM16 at :attr:`sample_rate`) as they come; ends
        once the audio has ended and Deepgram has answered for all of it."""
        stream = DeepgramStream(self.options, self._api_key, self._ctx, PROVIDER)
        self._streams.add(stream)
        try:
            async with aclosing(stream.run(audio)) as transcripts:
                async for transcript in transcripts:
                    yield transcript
        finally:
            self._streams.discard(stream)

    async def finalize(self) -> None:
        """Ask Deepgram for the final text of what it heard so far (its ``Finalize`` message),
        e.g. when a local VAD says the user stopped speaking; no-op when nothing is streaming."""
        for stream in list(self._streams):
            await stream.finalize()

    async def close(self) -> None:
        """Nothing to release between calls (each call owns its connection); idempotent."""
