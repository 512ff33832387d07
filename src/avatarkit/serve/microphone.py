"""The page's microphone: binary WebSocket frames of PCM16 turned into ``session.listen()``.

The page sends ``{"type": "mic_start", "sample_rate": 16000}``, then binary messages, each a
frame of 16-bit little-endian mono PCM at that rate (the page sends 20 ms frames), then
``{"type": "mic_stop"}``. One stream at a time per page: the frames go through a bounded queue
into the session's :meth:`~avatarkit.AvatarSession.listen`, which ends its user turns with its
STT (and VAD) and interrupts the avatar when the user speaks over it.

The receive loop never waits on the microphone: a frame that finds the queue full (the listener
is more than :data:`BACKLOG_FRAMES` behind real time) is dropped and counted, and the page is
told once per stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from avatarkit.errors import AvatarKitError, ProviderError
from avatarkit.providers import AudioChunk
from avatarkit.serve.protocol import ProtocolError, error_message

if TYPE_CHECKING:
    from avatarkit.listening import Turns

__all__ = ["BACKLOG_FRAMES", "MAX_FRAME_BYTES", "Microphone"]

logger = logging.getLogger(__name__)

#: Frames that may wait for the listener (250 x 20 ms = 5 s) before frames are dropped.
BACKLOG_FRAMES = 250
#: Largest binary frame accepted (about 0.5 s at 48 kHz).
MAX_FRAME_BYTES = 48_000

SendJson = Callable[[dict[str, Any]], Awaitable[None]]


class Microphone:
    """The page's microphone stream into one session; see the module docstring."""

    def __init__(self, session: Any, send_json: SendJson, *, turns: Turns | None = None) -> None:
        self.session = session
        self._send_json = send_json
        #: where ``listen`` hands its turns (serve's queue); None: straight to the session
        self.turns = turns
        self._frames: MemoryObjectSendStream[bytes] | None = None
        self._listening = False
        self.dropped = 0
        self.frames = 0

    @property
    def available(self) -> bool:
        """Whether the session can listen (it has an STT)."""
        return getattr(self.session, "stt", None) is not None and callable(
            getattr(self.session, "listen", None)
        )

    @property
    def active(self) -> bool:
        return self._frames is not None

    async def start(self, sample_rate: int, tg: TaskGroup) -> None:
        """Open a stream at ``sample_rate``; ``listen`` runs in ``tg`` until :meth:`stop`."""
        if not self.available:
            await self._send_json(
                error_message(
                    "config",
                    "this session cannot listen: add an stt: section (and a vad: for a "
                    "whole-utterance STT) to its YAML to talk to the avatar by voice",
                    code="no_stt",
                )
            )
            return
        if self._frames is not None:
            raise ProtocolError("mic_on", "the microphone is already on; send mic_stop first")
        if self._listening:
            raise ProtocolError(
                "mic_finishing",
                'the last microphone stream is still finishing its turn; wait for {"type": '
                '"mic", "state": "off"}',
            )
        send, receive = anyio.create_memory_object_stream[bytes](BACKLOG_FRAMES)
        self._frames = send
        self._listening = True
        self.dropped = self.frames = 0
        tg.start_soon(self._listen, send, receive, sample_rate)
        await self._send_json({"type": "mic", "state": "on", "sample_rate": sample_rate})

    async def stop(self) -> None:
        """End the stream: ``listen`` finishes the turn in progress, then returns."""
        frames, self._frames = self._frames, None
        if frames is not None:
            await frames.aclose()

    async def frame(self, data: bytes) -> None:
        """One binary message from the page."""
        frames = self._frames
        if frames is None:
            raise ProtocolError(
                "binary",
                'binary messages are microphone audio: send {"type": "mic_start", '
                '"sample_rate": 16000} first',
            )
        if len(data) % 2 or len(data) > MAX_FRAME_BYTES:
            raise ProtocolError(
                "bad_frame",
                f"a microphone frame must be whole 16-bit samples, at most {MAX_FRAME_BYTES} "
                f"bytes; got {len(data)} bytes",
            )
        self.frames += 1
        try:
            frames.send_nowait(data)
        except anyio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("the listener is behind real time: dropping microphone frames")
                await self._send_json(
                    error_message(
                        "limit",
                        "the avatar cannot keep up with the microphone; audio was lost",
                        code="mic_behind",
                    )
                )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the listener has just ended; it clears the stream itself

    async def _listen(
        self,
        send: MemoryObjectSendStream[bytes],
        frames: MemoryObjectReceiveStream[bytes],
        rate: int,
    ) -> None:
        async def audio() -> AsyncGenerator[AudioChunk, None]:
            async with frames:
                async for data in frames:
                    yield AudioChunk(data, rate)

        try:
            async with aclosing(audio()) as chunks:  # closed even when listen() fails midway
                if self.turns is None:
                    await self.session.listen(chunks)
                else:
                    await self.session.listen(chunks, turns=self.turns)
        except Exception as exc:
            # the details (which may name URLs or upstream answers) go to the server log only
            if isinstance(exc, AvatarKitError):
                logger.error("listening failed: %s", exc)
            else:
                logger.exception("listening failed")
            fields: dict[str, Any] = {}
            if isinstance(exc, ProviderError):
                fields = {"provider": exc.provider, "retryable": exc.retryable}
            await self._send_json(
                error_message(
                    "session",
                    "listening to the microphone failed; the server log says why",
                    code="listen_failed",
                )
                | fields
            )
        finally:
            frames.close()
            if self._frames is send:  # ended by itself (an error): refuse further frames
                self._frames = None
                send.close()
            self._listening = False
            with anyio.CancelScope(shield=True):
                await self._send_json({"type": "mic", "state": "off", "dropped": self.dropped})
