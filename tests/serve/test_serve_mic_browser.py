"""The microphone in real headless Chromium (Debian's, via Playwright): Chromium's fake capture
device plays a WAV of Piper speech (led by silence; browser echo cancellation, noise suppression
and gain control on) into getUserMedia; the page's AudioWorklet streams 20 ms PCM16 frames to
``avatarkit serve``, whose session listens with the offline stack (Silero VAD, Whisper tiny.en
from avatarkit-whisper), answers by voice through the browser renderer, and is interrupted by the
second utterance."""

from __future__ import annotations

import os
import re
import shutil
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from avatarkit import AvatarSession
from avatarkit.builtins.browser import BrowserRenderer
from avatarkit.testing import FakeLLM, FakeTTS

from .conftest import CHROMIUM, CHROMIUM_ARGS, _poll_function

ServerThread = Any
RATE = 22050

FIRST = "Hello avatar how are you today"  # no commas: one VAD segment each
SECOND = "Stop please stop talking"
LONG_REPLY = (
    "I am fine, thank you for asking. " + "Let me tell you about the sea and its waves. " * 5
)
SHORT_REPLY = "All right, I will stop."


async def _speech(text: str) -> np.ndarray:
    from avatarkit_piper.tts import PiperTTS

    # no generator noise: the same speech every run (Piper samples noise by default)
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    pcm = b"".join([c.data async for c in tts.synthesize(text)])
    assert tts.sample_rate == RATE
    return np.frombuffer(pcm, "<i2")


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.5 s of silence, FIRST, 5 s of silence (the avatar starts its long reply), SECOND
    spoken over the reply, 4 s of silence."""
    first, second = anyio.run(_speech, FIRST), anyio.run(_speech, SECOND)
    samples = np.concatenate([_silence(1.5), first, _silence(5.0), second, _silence(4.0)]).astype(
        "<i2"
    )
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def mic_chromium(speech_wav: Path) -> Iterator[Any]:
    """Chromium whose microphone is the WAV (played once, from when the page opens it)."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: apt-get install chromium (scripts/check does it in CI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


class VoiceFactory:
    def __init__(self) -> None:
        self.sessions: list[AvatarSession] = []

    def __call__(self) -> AvatarSession:
        from avatarkit_whisper.stt import WhisperSTT
        from avatarkit_whisper.vad import SileroVAD

        session = AvatarSession(
            llm=FakeLLM([LONG_REPLY, SHORT_REPLY], token_delay=0.01),
            tts=FakeTTS(ms_per_char=40),
            renderer=BrowserRenderer(),
            stt=WhisperSTT(language="en"),
            vad=SileroVAD(),
        )
        self.sessions.append(session)
        return session


def test_talking_to_the_avatar_and_over_its_reply(
    serve: Callable[..., ServerThread], mic_chromium: Any
) -> None:
    factory = VoiceFactory()
    server = serve(factory, title="voice.yaml")
    context = mic_chromium.new_context(permissions=["microphone"])
    try:
        page = context.new_page()
        page.set_default_timeout(30000)
        page.wait_for_function = _poll_function(page)  # as conftest's pages: the CSP forbids eval
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + "/")
        page.wait_for_function("window.avatarkit && window.avatarkit.connection === 'waiting'")
        page.click("#start")
        page.wait_for_function("window.avatarkit.connection === 'connected'")
        try:
            _converse(page, errors)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{_dump(page, factory)}") from exc
    finally:
        context.close()
    session = factory.sessions[0]
    said = [words(m.content) for m in session.history if m.role == "user"]
    assert said == [words(FIRST), words(SECOND), ["and", "typing"]]
    first_reply = session.history[1].content
    assert 0 < len(first_reply) < len(LONG_REPLY)  # only what was spoken
    assert LONG_REPLY.startswith(first_reply.strip())


def words(text: str) -> list[str]:
    """Lower-case words, without punctuation (Whisper writes "Hello avatar, how...?")."""
    return re.findall(r"[a-z']+", text.lower())


def _dump(page: Any, factory: VoiceFactory) -> str:
    """What the page and the session were doing, for a failure's message."""
    entries = page.eval_on_selector_all(
        "#transcript li", "(items) => items.map((li) => `${li.className}: ${li.textContent}`)"
    )
    mic = page.evaluate("window.avatarkit.mic")
    history = factory.sessions[0].history if factory.sessions else []
    return f"transcript={entries}\nmic={mic}\nhistory={history}"


def _converse(page: Any, errors: list[str]) -> None:
    def wait(expression: str) -> None:
        page.wait_for_function(expression, timeout=30000)

    assert page.is_visible("#mic")
    page.click("#mic")
    wait("window.avatarkit.mic.state === 'on'")
    # the first utterance is heard, shown as the user's message, and answered by voice
    wait("window.avatarkit.mic.transcripts.some((t) => t.final)")
    wait("window.avatarkit.audio.played > 0 || window.avatarkit.audio.buffers > 0")
    # speaking over the reply interrupts it, and the second utterance gets its answer
    wait("document.querySelectorAll('#transcript li.user:not(.interim)').length >= 2")
    wait("document.querySelector('#transcript li.avatar.interrupted') !== null")
    wait(
        "[...document.querySelectorAll('#transcript li.avatar')]"
        f".some((li) => li.textContent === {SHORT_REPLY!r})"
    )
    users = page.eval_on_selector_all(
        "#transcript li.user", "(items) => items.map((li) => li.textContent)"
    )
    assert [words(u) for u in users] == [words(FIRST), words(SECOND)]
    transcripts = page.evaluate("window.avatarkit.mic.transcripts")
    finals = [t["text"] for t in transcripts if t["final"]]
    assert finals == users
    stats = page.evaluate("window.avatarkit.micStats")
    assert stats["frames"] > 100  # 20 ms frames for several seconds
    assert stats["bytes"] == stats["frames"] * 640  # 16 kHz, 20 ms, PCM16
    # typing still works with the microphone on
    page.fill("#text", "and typing?")
    page.press("#text", "Enter")
    wait(
        "document.querySelectorAll('#transcript li.user').length === 3"
        " && window.avatarkit.state === 'idle'"
    )
    page.click("#mic")
    wait("window.avatarkit.mic.server === 'off'")
    assert errors == []
    assert page.evaluate("window.avatarkit.errors") == []
