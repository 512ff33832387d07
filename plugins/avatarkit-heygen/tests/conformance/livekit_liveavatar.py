"""Drives LiveKit's official LiveAvatar plugin (PyPI ``livekit-plugins-liveavatar``) against our
fake LiveAvatar: its HTTP flow (token, start, stop) and its LITE WebSocket flow (agent.speak,
agent.speak_end, interrupt, keep-alive, the server's events).

Runs in its own virtual environment (the plugin pulls in livekit-agents), not in the suite's:
``python livekit_liveavatar.py BASE_URL API_KEY``. The LiveKit room and the agent session are the
only stand-ins (no LiveKit server on loopback); the plugin's HTTP client, WebSocket task, audio
chunking and event handling are its own code. Prints one JSON line per step.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents.voice.avatar import QueueAudioOutput
from livekit.plugins.liveavatar import AvatarSession
from livekit.plugins.liveavatar.api import LiveAvatarAPI


def log(step: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"step": step, **data}) + "\n")
    sys.stdout.flush()


class _Room:
    name = "conformance-room"


def frames(seconds: float) -> list[rtc.AudioFrame]:
    """20 ms frames of a tone at 24 kHz."""
    out = []
    per = 480
    for n in range(int(seconds / 0.02)):
        samples = [int(8000 * math.sin((n * per + i) / 9)) for i in range(per)]
        data = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
        out.append(rtc.AudioFrame(data, 24000, 1, per))
    return out


async def main(base_url: str, api_key: str) -> None:
    async with aiohttp.ClientSession() as http:
        avatar = AvatarSession(avatar_id="av-livekit", api_key=api_key)
        api = LiveAvatarAPI(api_key, api_url=f"{base_url}/v1/sessions", session=http)
        avatar._api = api

        # HTTP: what AvatarSession.start() sends, with the plugin's own client
        created = await api.create_streaming_session(
            livekit_url="ws://127.0.0.1:9",
            livekit_token="lk-agent-token",
            room=_Room(),  # type: ignore[arg-type]
            avatar_id="av-livekit",
        )
        avatar._session_id = created["data"]["session_id"]
        avatar._session_token = created["data"]["session_token"]
        log("token", session_id=avatar._session_id)
        started = await api.start_streaming_session(avatar._session_id, avatar._session_token)
        avatar._ws_url = started["data"]["ws_url"]
        log("start", has_ws_url=bool(avatar._ws_url))

        # WebSocket: the plugin's own main task (audio forwarding, sending, receiving, stop)
        buffer = QueueAudioOutput(sample_rate=24000, wait_playback_start=True)
        await buffer.start()
        buffer.on("clear_buffer", avatar._on_clear_buffer)
        avatar._audio_buffer = buffer
        finished: asyncio.Queue[Any] = asyncio.Queue()
        buffer.on("playback_finished", lambda ev: finished.put_nowait(ev))
        main_task = asyncio.create_task(avatar._main_task())

        for frame in frames(1.5):
            await buffer.capture_frame(frame)
        buffer.flush()
        event = await asyncio.wait_for(finished.get(), 10)
        log("played", interrupted=event.interrupted, position=round(event.playback_position, 2))

        for frame in frames(3.0):
            await buffer.capture_frame(frame)
        await asyncio.sleep(0.5)  # the avatar starts speaking
        buffer.clear_buffer()  # barge-in: the plugin interrupts the avatar
        event = await asyncio.wait_for(finished.get(), 10)
        log("interrupted", interrupted=event.interrupted)

        avatar.send_event({"type": "session.keep_alive", "event_id": "keep-alive-1"})
        await asyncio.sleep(0.3)
        avatar._msg_ch.close()  # the agent session closes: the plugin stops the session
        await asyncio.wait_for(main_task, 10)
        log("stopped")
        await buffer.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
