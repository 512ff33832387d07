"""One realtime ``transcribe`` call: OpenAI's transcription WebSocket, surviving drops.

Wire (``/v1/realtime?intent=transcription``, ``Authorization: Bearer``): the client sends
``session.update`` (a ``transcription`` session: PCM16 at 24 kHz, the model, the server's VAD),
then ``input_audio_buffer.append`` with base64 audio, and ``input_audio_buffer.commit`` for
speech still open when the audio ends (known once the server answered a second
``session.update``, sent after the last audio as a barrier). The server answers
``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed`` and, per item,
``conversation.item.input_audio_transcription.delta`` then ``.completed`` (or ``.failed``);
``error`` events carry problems.

Completions of different items may arrive out of order: finals are handed on in the order the
items were committed. Audio since the end of the last completed item is kept; after a dropped
connection it is sent again on a new one, so no words are lost and none repeated (the
reconnecting skeleton is :class:`avatarkit.stt_stream.ReconnectingSTTStream`'s). Built on
httpx-ws (wsproto over anyio), so it runs on asyncio and trio alike; the SDK's own realtime
client is built on ``websockets``' asyncio API and cannot run under trio.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import ObjectReceiveStream

from avatarkit.errors import ProviderError
from avatarkit.http import RequestContext
from avatarkit.providers import Transcript
from avatarkit.stt_stream import ReconnectingSTTStream
from avatarkit_openai.options import OpenAISTTOptions

if TYPE_CHECKING:
    from httpx_ws import AsyncWebSocketSession

__all__ = ["REALTIME_RATE", "RealtimeStream", "realtime_url", "session_update"]

#: The realtime API's PCM rate.
REALTIME_RATE = 24000
_EMPTY_COMMIT = "input_audio_buffer_commit_empty"


def realtime_url(base_url: str) -> str:
    """``{base_url}/realtime?intent=transcription`` (an http(s) URL; httpx-ws upgrades it)."""
    return f"{base_url.rstrip('/')}/realtime?intent=transcription"


def session_update(options: OpenAISTTOptions) -> dict[str, Any]:
    """The first message: a transcription session taking 24 kHz PCM16."""
    transcription: dict[str, Any] = {"model": options.model}
    if options.language:
        transcription["language"] = options.language
    if options.prompt:
        transcription["prompt"] = options.prompt
    vad = options.turn_detection
    noise = options.noise_reduction
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                    "transcription": transcription,
                    "turn_detection": vad.wire() if vad is not None else None,
                    "noise_reduction": {"type": noise} if noise else None,
                }
            },
        },
    }


@dataclass
class _Item:
    """A committed stretch of the user's audio and its transcription so far."""

    start: float | None = None  # seconds of the current connection
    end: float | None = None
    text: str = ""
    done: str | None = None  # the completed transcript


class RealtimeStream(ReconnectingSTTStream):
    """The state of one realtime ``transcribe`` call; see the module docstring."""

    audio_wanted = "the realtime API takes mono PCM16 at"
    link_name = "realtime connection"
    cannot_connect = "cannot open the realtime WebSocket at"
    #: 100 ms at 24 kHz (4800 samples)
    replay_frame_bytes = 9600

    def __init__(
        self,
        options: OpenAISTTOptions,
        *,
        url: str,
        headers: Mapping[str, str],
        ctx: RequestContext,
        provider: str,
    ) -> None:
        super().__init__(
            url=url,
            ctx=ctx,
            provider=provider,
            sample_rate=REALTIME_RATE,
            timeout=options.timeout,
            max_reconnects=options.max_reconnects,
            replay_seconds=options.replay_seconds,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
        )
        self.options = options
        self._headers = dict(headers)
        self._server_vad = options.turn_detection is not None
        self.finals = 0
        self._reset()

    def _reset(self) -> None:
        """Forget the server-side state of a connection (a new one starts from nothing)."""
        self._items: dict[str, _Item] = {}
        self._order: list[str] = []  # committed items not yet handed on, in commit order
        self._speaking: str | None = None  # the item of speech that has not stopped
        self._uncommitted = 0  # samples appended since the last commit (no server VAD)
        self._committing = False  # a commit of ours awaits its answer
        self._commit_at = 0  # samples of this connection when we committed
        self._changed = anyio.Event()
        self._updates = 0  # session.updated events received

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- the hooks -------------------------------------------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        return {**self._headers, "Authorization": f"Bearer {self._ctx.api_key}"}

    def _connected(self) -> None:
        self._reset()

    def _refusal_detail(self, response: httpx.Response, body: Any) -> str | None:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        return None

    def _handled(self, message: dict[str, Any]) -> None:
        self._notify()

    def _finals_delivered(self) -> int:
        return self.finals

    # -- sending ---------------------------------------------------------------------------------

    async def _send_json(self, ws: AsyncWebSocketSession, message: dict[str, Any]) -> None:
        await self._send(ws, json.dumps(message, separators=(",", ":")))

    async def _append(self, ws: AsyncWebSocketSession, data: bytes) -> None:
        await self._send_json(
            ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
        )
        self._uncommitted += len(data) // 2

    async def _send_audio(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes]
    ) -> None:
        """Configure the session, re-send what was not transcribed, send the caller's audio,
        commit open speech at its end and wait for the last transcripts (returning ends the
        connection)."""
        await self._send_json(ws, session_update(self.options))
        for frame in self._replay_frames():
            await self._append(ws, frame)
        async for data in frames:
            self._keep(data)
            await self._append(ws, data)
        if self._server_vad and self._uncommitted:
            # a barrier: once the server answers this, its VAD has seen every append before
            # it, so whether speech is still open is known
            await self._send_json(ws, session_update(self.options))
            with anyio.move_on_after(self.options.close_timeout):
                while self._updates < 2:  # the first update's answer, then this one's
                    await self._changed.wait()
        if self._speaking is not None or (not self._server_vad and self._uncommitted):
            self._committing = True
            self._commit_at = self._uncommitted
            await self._send_json(ws, {"type": "input_audio_buffer.commit"})
        with anyio.move_on_after(self.options.close_timeout):
            while self._committing or self._order:
                await self._changed.wait()
            return
        self._logger.warning(
            "%s: the last transcripts did not come within %gs of the end of the audio",
            self.provider,
            self.options.close_timeout,
        )

    def _transcribed(self, until: float) -> None:
        """Audio up to ``until`` (seconds of this connection) is transcribed: stop keeping it."""
        self._forget(round((self._offset + until) * self._rate))

    # -- server events ---------------------------------------------------------------------------

    def _seconds(self, value: object) -> float | None:
        return self._offset + value / 1000 if isinstance(value, int | float) else None

    def _item(self, message: dict[str, Any]) -> tuple[str, _Item]:
        item_id = str(message.get("item_id"))
        return item_id, self._items.setdefault(item_id, _Item())

    def _handle(self, message: dict[str, Any]) -> list[Transcript]:
        """The transcripts one server event means (finals in commit order)."""
        kind = message.get("type")
        if kind == "input_audio_buffer.speech_started":
            item_id, item = self._item(message)
            self._speaking = item_id
            item.start = self._seconds(message.get("audio_start_ms"))
            return [Transcript("speech_started", start=item.start)]
        if kind == "input_audio_buffer.speech_stopped":
            item_id, item = self._item(message)
            if self._speaking == item_id:
                self._speaking = None
            item.end = self._seconds(message.get("audio_end_ms"))
            return [Transcript("speech_ended", end=item.end)]
        if kind == "input_audio_buffer.committed":
            item_id, item = self._item(message)
            if self._speaking == item_id:
                self._speaking = None
            if self._committing:  # ours: it holds everything appended so far
                self._committing = False
                if item.end is None:
                    item.end = self._offset + self._commit_at / self._rate
            self._uncommitted = 0
            if item_id not in self._order:
                self._order.append(item_id)
            return []
        if kind == "conversation.item.input_audio_transcription.delta":
            item_id, item = self._item(message)
            item.text += str(message.get("delta") or "")
            if self._order and self._order[0] == item_id and item.text.strip():
                return [Transcript("interim", item.text, item.start, item.end)]
            return []
        if kind == "conversation.item.input_audio_transcription.completed":
            item_id, item = self._item(message)
            item.done = str(message.get("transcript") or "")
            if item_id not in self._order:
                self._order.append(item_id)
            return self._finals()
        if kind == "conversation.item.input_audio_transcription.failed":
            error = message.get("error") or {}
            detail = error.get("message") if isinstance(error, dict) else error
            raise ProviderError(
                self._ctx.clean(f"transcribing an utterance failed: {detail}"),
                provider=self.provider,
            )
        if kind == "error":
            return self._error(message)
        if kind == "session.updated":
            self._updates += 1
        self._logger.debug("%s: %s", self.provider, kind)
        return []

    def _finals(self) -> list[Transcript]:
        """Completed items at the head of the commit order, as finals, in that order."""
        out = []
        while self._order and self._items[self._order[0]].done is not None:
            item = self._items.pop(self._order.pop(0))
            text = item.done or ""
            self.finals += 1
            self._progressed()
            out.append(
                Transcript("final", text, item.start, item.end, end_of_turn=self._server_vad)
            )
            if item.end is not None:
                self._transcribed(item.end - self._offset)
        return out

    def _error(self, message: dict[str, Any]) -> list[Transcript]:
        error = message.get("error") or {}
        code = error.get("code") if isinstance(error, dict) else None
        if code == _EMPTY_COMMIT:  # our end-of-audio commit found nothing to commit
            self._committing = False
            return []
        detail = error.get("message") if isinstance(error, dict) else error
        raise ProviderError(
            self._ctx.clean(f"the server reported an error ({code or 'no code'}): {detail}"),
            provider=self.provider,
        )
