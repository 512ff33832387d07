"""The built-in ``browser`` renderer: speaks through the web page of ``avatarkit serve``.

It is an audio renderer (``speak`` only), so any TTS feeds it. Each utterance goes to the page
over the session's WebSocket: a JSON ``audio_start``, binary frames of PCM, a JSON ``audio_end``
(see :func:`audio_frame` for the binary layout). The page plays the frames back to back with Web
Audio and answers ``played`` when the last one has finished, which is when ``speak`` returns, so
the engine's timing follows what the person actually hears. Audio is pulled from the TTS at
playback speed, at most ``buffer_ahead`` seconds ahead, so an interrupted reply's history holds
about what was heard. If the page never answers (a background tab whose audio is suspended),
``speak`` gives up after the audio's own length plus ``playback_grace`` seconds.

The server attaches the page with :meth:`BrowserRenderer.attach_page` before the session starts;
outside ``avatarkit serve`` there is no page, and ``start`` says so.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field

from avatarkit.audio import to_mono
from avatarkit.errors import SessionError
from avatarkit.hookspecs import hookimpl
from avatarkit.plugins import ProviderRegistry
from avatarkit.providers import AudioChunk

__all__ = [
    "AUDIO_HEADER",
    "BrowserRenderer",
    "BrowserRendererOptions",
    "PageLink",
    "audio_frame",
]

logger = logging.getLogger(__name__)

#: Binary frame header: utterance id and sample rate, both unsigned 32-bit little-endian.
#: The PCM that follows is mono 16-bit little-endian; 8 bytes keep it 2-byte aligned.
AUDIO_HEADER = struct.Struct("<II")


def audio_frame(utterance: int, chunk: AudioChunk) -> bytes:
    """One binary WebSocket frame: the header, then ``chunk`` as mono PCM16."""
    mono = to_mono(chunk)
    return AUDIO_HEADER.pack(utterance, mono.sample_rate) + mono.data


class PageLink(Protocol):
    """The page's end of the connection, as the server gives it to the renderer.

    Sends do not raise once the page has gone: the server notices the disconnect itself and
    closes the session (and so this renderer).
    """

    async def send_json(self, message: dict[str, Any]) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class BrowserRendererOptions(BaseModel):
    """Options of the ``browser`` renderer."""

    model_config = ConfigDict(extra="forbid")
    sample_rate: int | None = Field(
        None,
        ge=8000,
        le=96000,
        description="Rate to send audio at (the engine resamples to it); default: the TTS's own.",
    )
    playback_grace: float = Field(
        2.0,
        ge=0,
        description="Seconds past the audio's length to wait for the page to report playback.",
    )
    buffer_ahead: float = Field(
        0.5,
        ge=0.05,
        description="Seconds of audio sent ahead of playback: more rides out network hiccups, "
        "less keeps an interrupted reply's history closer to what was heard.",
    )


class _Utterance:
    def __init__(self, number: int) -> None:
        self.number = number
        self.finished = anyio.Event()


class BrowserRenderer:
    """Plays the avatar's speech in the ``avatarkit serve`` page (which also draws the face)."""

    # Audio already synthesised comes in blocks of up to 0.1 s: a WebSocket message and a
    # wake-up per block rather than per TTS chunk (often 20-40 ms), never waiting for more.
    max_chunk_seconds = 0.1

    def __init__(
        self,
        sample_rate: int | None = None,
        playback_grace: float = 2.0,
        buffer_ahead: float = 0.5,
    ) -> None:
        options = BrowserRendererOptions(
            sample_rate=sample_rate, playback_grace=playback_grace, buffer_ahead=buffer_ahead
        )
        self.sample_rate = options.sample_rate
        self.playback_grace = options.playback_grace
        self.buffer_ahead = options.buffer_ahead
        self._page: PageLink | None = None
        self._current: _Utterance | None = None
        self._utterances = 0
        self._closed = False

    def attach_page(self, page: PageLink) -> None:
        """Send audio to ``page`` (called by the server for the connection that owns us)."""
        self._page = page

    async def start(self) -> None:
        if self._page is None:
            raise SessionError(
                "the browser renderer plays audio in the page of `avatarkit serve`; "
                "run this session with `avatarkit serve FILE` and open the address it prints"
            )

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        """Stream ``audio`` to the page; return once the page has played it (or on interrupt)."""
        page = self._page
        if page is None or self._closed:
            raise SessionError("the browser renderer has no page to speak to")
        self._utterances += 1
        utterance = _Utterance(self._utterances)
        self._current = utterance
        await page.send_json({"type": "audio_start", "utterance": utterance.number})
        seconds = 0.0
        first_sent: float | None = None
        async for chunk in audio:
            if utterance.finished.is_set():
                return  # interrupted while the TTS was still producing
            if not chunk.data:
                continue
            if first_sent is not None:
                # Pull audio at playback speed: the engine counts what we pulled as spoken.
                # (this chunk included: the page never holds more than `buffer_ahead`)
                ahead = seconds + chunk.duration - (anyio.current_time() - first_sent)
                if ahead > self.buffer_ahead:
                    with anyio.move_on_after(ahead - self.buffer_ahead):
                        await utterance.finished.wait()
                    if utterance.finished.is_set():
                        return
            await page.send_bytes(audio_frame(utterance.number, chunk))
            if first_sent is None:
                first_sent = anyio.current_time()
            seconds += chunk.duration
        if utterance.finished.is_set():
            return
        await page.send_json(
            {"type": "audio_end", "utterance": utterance.number, "duration": round(seconds, 3)}
        )
        if first_sent is None:
            return  # nothing to play
        remaining = first_sent + seconds - anyio.current_time()
        with anyio.move_on_after(max(remaining, 0.0) + self.playback_grace):
            await utterance.finished.wait()
        if not utterance.finished.is_set():
            logger.warning(
                "the page did not report playing utterance %d (%.1f s of audio) in time; "
                "is its audio suspended?",
                utterance.number,
                seconds,
            )
        if self._current is utterance:
            self._current = None

    def played(self, utterance: int) -> None:
        """The page reports that ``utterance`` finished playing."""
        current = self._current
        if current is not None and current.number == utterance:
            current.finished.set()

    async def interrupt(self) -> None:
        """Stop now: the current ``speak`` returns and the page drops what it has queued."""
        current, self._current = self._current, None
        if current is not None:
            current.finished.set()
        page = self._page
        if page is not None and not self._closed:
            await page.send_json({"type": "audio_stop"})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        current, self._current = self._current, None
        if current is not None:
            current.finished.set()
        self._page = None


@hookimpl
def register_providers(registry: ProviderRegistry) -> None:
    registry.renderer(
        "browser",
        BrowserRenderer,
        options=BrowserRendererOptions,
        description="Speaks in the web page of `avatarkit serve`, which draws a talking face.",
    )
