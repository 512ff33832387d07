"""One ``transcribe`` call: the audio pumped to Deepgram over a WebSocket that survives drops.

The reconnecting skeleton (pump, link, replay of audio not yet finalised, reconnect budget) is
:class:`avatarkit.stt_stream.ReconnectingSTTStream`'s; this module is Deepgram's side of it:
``Authorization: Token``, binary PCM16 frames, ``KeepAlive`` while no audio flows,
``CloseStream`` at the end, ``Finalize`` on request, and ``Results`` whose ``is_final`` stretches
say which audio need not be sent again. When reconnecting fails, the call raises a
:class:`~avatarkit.errors.ProviderConnectionError` saying how much was transcribed.

Built on httpx-ws (wsproto over anyio), so it runs on asyncio and trio alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import ObjectReceiveStream

from avatarkit.errors import ProviderError
from avatarkit.http import RequestContext
from avatarkit.providers import Transcript
from avatarkit.stt_stream import ConnectionDropped, Job, ReconnectingSTTStream
from avatarkit_deepgram.options import DeepgramSTTOptions
from avatarkit_deepgram.protocol import (
    CLOSE_STREAM,
    FINALIZE,
    KEEP_ALIVE,
    TranscriptMapper,
    listen_url,
)

if TYPE_CHECKING:
    from httpx_ws import AsyncWebSocketSession

__all__ = ["DeepgramStream"]


class DeepgramStream(ReconnectingSTTStream):
    """The state of one ``transcribe`` call; see the module docstring."""

    server_name = "Deepgram"
    fatal_close_advice = ": check the options (model, language, sample_rate)"
    request_id_header = "dg-request-id"
    #: 100 ms at 16 kHz
    replay_frame_bytes = 3200

    def __init__(
        self, options: DeepgramSTTOptions, api_key: str, ctx: RequestContext, provider: str
    ) -> None:
        super().__init__(
            url=listen_url(options),
            ctx=ctx,
            provider=provider,
            sample_rate=options.sample_rate,
            timeout=options.connect_timeout,
            max_reconnects=options.max_reconnects,
            replay_seconds=options.replay_seconds,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
        )
        self.options = options
        self._api_key = api_key
        self.mapper = TranscriptMapper()
        self._last_sent = 0.0
        self._closing = anyio.Event()  # CloseStream sent on this connection

    # -- the hooks -------------------------------------------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._api_key}"}

    def _connected(self) -> None:
        self.mapper.offset = self._offset
        self.mapper.final_until = 0.0
        self._last_sent = anyio.current_time()
        self._closing = anyio.Event()

    def _side_jobs(self, ws: AsyncWebSocketSession) -> Sequence[Job]:
        return [lambda: self._keep_alive(ws)]

    def _refusal_detail(self, response: httpx.Response, body: Any) -> str | None:
        detail = response.headers.get("dg-error")
        if isinstance(body, dict):
            detail = body.get("err_msg") or body.get("message") or detail
        return str(detail) if detail else None

    def _closed_normally(self, code: int) -> bool:
        return self._closing.is_set() and code in (1000, 1001, 1005)

    def _finals_delivered(self) -> int:
        return self.mapper.finals

    def _handle(self, message: dict[str, Any]) -> list[Transcript]:
        if message.get("type") == "Error":
            detail = message.get("description") or message.get("message") or message
            raise ProviderError(
                self._ctx.clean(f"Deepgram reported an error: {detail}"), provider=self.provider
            )
        return self.mapper.map(message)

    def _handled(self, message: dict[str, Any]) -> None:
        if message.get("type") == "Results" and message.get("is_final"):
            # a final result covers audio up to mapper.final_until: stop keeping it
            m = self.mapper
            self._forget(round(m.offset * self._rate + m.final_until * self._rate))
            self._progressed()

    # -- sending ---------------------------------------------------------------------------------

    async def _send(self, ws: AsyncWebSocketSession, data: bytes | str) -> None:
        await super()._send(ws, data)
        self._last_sent = anyio.current_time()

    async def _send_audio(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes]
    ) -> None:
        """Re-send what was not finalised, then the caller's audio, then CloseStream; wait
        ``close_timeout`` for the server to close (returning ends the connection)."""
        for frame in self._replay_frames():
            await self._send(ws, frame)
        async for data in frames:
            self._keep(data)
            await self._send(ws, data)
        self._closing.set()
        await self._send(ws, CLOSE_STREAM)
        await anyio.sleep(self.options.close_timeout)
        self._logger.warning(
            "%s: no close within %gs of CloseStream; stopping",
            self.provider,
            self.options.close_timeout,
        )

    async def _keep_alive(self, ws: AsyncWebSocketSession) -> None:
        interval = self.options.keepalive_interval
        while not self._closing.is_set():
            idle = anyio.current_time() - self._last_sent
            if idle >= interval:
                await self._send(ws, KEEP_ALIVE)
                continue
            await anyio.sleep(interval - idle)

    async def finalize(self) -> None:
        """Ask Deepgram to finalise what it has heard so far (``Finalize``)."""
        from httpx_ws import HTTPXWSException

        ws = self._ws
        if ws is not None:
            try:
                await self._send(ws, FINALIZE)
            except (HTTPXWSException, OSError, ConnectionDropped) as exc:
                self._logger.debug("%s: Finalize not sent: %r", self.provider, exc)
