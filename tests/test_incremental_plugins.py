"""ElevenLabs and Cartesia on the incremental route, end to end: the session, the real plugin
and its httpx-ws client, a fake service on 127.0.0.1, a real-time fake renderer.

Both fakes speak ``ms_per_char`` of audio per character they were sent (spaces included) and
time each word from its first to its last letter, so the words heard are computed here from the
text the fake received and the audio the renderer took, independently of the session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from avatarkit import AvatarSession
from avatarkit.events import Event, TextDelta
from avatarkit.testing import FakeAudioRenderer, FakeLLM, wait_until
from avatarkit_cartesia.testing import KEY as CARTESIA_KEY
from avatarkit_cartesia.testing import VOICE as CARTESIA_VOICE
from avatarkit_cartesia.testing import FakeCartesia
from avatarkit_cartesia.tts import CartesiaTTS
from avatarkit_elevenlabs.testing import KEY as ELEVEN_KEY
from avatarkit_elevenlabs.testing import VOICE as ELEVEN_VOICE
from avatarkit_elevenlabs.testing import FakeElevenLabs
from avatarkit_elevenlabs.tts import ElevenLabsTTS

REPLY = (
    "Well, the quick brown fox jumps over the lazy dog near the river bank today, "
    "and then it rests. It sleeps well."
)


def heard_words(sent: str, taken: float, ms: float = 10.0) -> list[str]:
    words: list[str] = []
    clock = 0.0
    for match in re.finditer(r"\s*\S+\s*", sent):
        lead = len(match.group()) - len(match.group().lstrip())
        word = match.group().strip()
        start = clock + lead * ms / 1000
        if start + len(word) * ms / 1000 > taken + 1e-6:
            break
        words.append(word)
        clock += len(match.group()) * ms / 1000
    return words


class Service:
    def __init__(self, name: str) -> None:
        self.name = name
        self.fake: Any = None

    def tts(self) -> Any:
        if self.name == "elevenlabs":
            return ElevenLabsTTS(
                api_key=ELEVEN_KEY, voice_id=ELEVEN_VOICE, base_url=self.fake.ws_url
            )
        return CartesiaTTS(
            api_key=CARTESIA_KEY, voice_id=CARTESIA_VOICE, base_url=self.fake.base_url
        )

    def sent(self) -> str:
        if self.name == "elevenlabs":
            return self.fake.texts()[1:]  # all but the opening " "
        return self.fake.transcript()


@pytest.fixture(params=["elevenlabs", "cartesia"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    svc = Service(request.param)
    fake = FakeElevenLabs() if request.param == "elevenlabs" else FakeCartesia()
    with fake:
        svc.fake = fake
        yield svc


async def test_first_audio_before_the_first_sentence_ends(service: Service) -> None:
    llm = FakeLLM([REPLY], token_delay=0.03)
    renderer = FakeAudioRenderer()
    events: list[tuple[float, Event]] = []
    async with AvatarSession(llm=llm, tts=service.tts(), renderer=renderer) as s:
        assert s.incremental
        s.on_event(lambda e: events.append((anyio.current_time(), e)))
        reply = await s.send("Hi")
    first_stop = next(t for t, e in events if isinstance(e, TextDelta) and "rests." in e.text)
    first_audio = renderer.utterances[0].first_audio_at
    assert first_audio is not None
    assert first_audio < first_stop
    assert reply.split() == REPLY.split()


async def test_interrupt_keeps_exactly_the_words_heard(service: Service) -> None:
    llm = FakeLLM([REPLY], token_delay=0.01)
    renderer = FakeAudioRenderer(realtime=True)
    async with AvatarSession(llm=llm, tts=service.tts(), renderer=renderer) as s:
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.send, "Hi")
            # Once 0.3 s of the 1.08 s reply were heard (after a fixed 0.6 s, a loaded machine
            # could have played nothing yet). The reply was written in 0.2 s, so the words
            # heard by then have their timings (a word whose timing has not come yet is
            # rightly not counted as heard).
            await wait_until(lambda: sum(u.duration for u in renderer.utterances) >= 0.3)
            await s.interrupt()
        taken = sum(u.duration for u in renderer.utterances)
        said = " ".join(m.content for m in s.history if m.role == "assistant").split()
    expected = heard_words(service.sent(), taken)
    assert 0 < len(expected) < len(REPLY.split())
    assert said == expected


def test_providers_lists_the_incremental_capability_without_importing_the_plugins() -> None:
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from avatarkit.cli import provider_table\n"
        "from avatarkit.plugins import load_registry\n"
        "table = provider_table(load_registry())\n"
        "caps = {(p['kind'], p['name']): p['capabilities'] for p in table['providers']}\n"
        "names = ('elevenlabs', 'cartesia', 'elevenlabs-http')\n"
        "print(json.dumps([caps[('tts', n)] for n in names]))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('httpx_ws', "
        "'avatarkit_elevenlabs.tts', 'avatarkit_cartesia.tts')))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert (
        out[0] == '[["synthesize", "open_stream"], ["synthesize", "open_stream"], ["synthesize"]]'
    )
    assert out[1] == "[]"
