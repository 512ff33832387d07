"""The page's microphone when the server drains, in real headless Chromium (Debian's, via
Playwright; its fake capture device plays a WAV of silence): the page stops capturing when it is
told ``going_away``, while the reply being said goes on to its end."""

from __future__ import annotations

import os
import shutil
import wave
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import CHROMIUM, CHROMIUM_ARGS, _poll_function
from .test_serve_voice_turns import Factory

ServerThread = Any


@pytest.fixture(scope="module")
def quiet_chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium whose microphone hears 60 s of silence."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: apt-get install chromium (scripts/check does it in CI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    path = tmp_path_factory.mktemp("mic") / "silence.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * 16000 * 60))
    from playwright.sync_api import sync_playwright

    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={path}%noloop",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


def test_the_page_stops_its_microphone_when_the_server_drains(
    serve: Callable[..., ServerThread], quiet_chromium: Any
) -> None:
    factory = Factory([], ["A reply that the drain lets finish."])
    server = serve(factory, title="voice.yaml")
    context = quiet_chromium.new_context(permissions=["microphone"])
    try:
        page = context.new_page()
        page.set_default_timeout(30000)
        page.wait_for_function = _poll_function(page)  # the CSP forbids eval
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + "/")
        page.wait_for_function("window.avatarkit && window.avatarkit.connection === 'waiting'")
        page.click("#start")
        page.wait_for_function("window.avatarkit.connection === 'connected'")
        page.click("#mic")
        page.wait_for_function(
            "window.avatarkit.mic.state === 'on' && window.avatarkit.mic.server === 'on'"
        )
        page.wait_for_function("window.avatarkit.micStats.frames > 10")  # frames flow
        page.fill("#text", "hello?")
        page.press("#text", "Enter")
        page.wait_for_function("window.avatarkit.state === 'speaking'")
        drained = factory.drain(server, 120)
        # Told going_away, the page stops capturing at once: the reply is still being said.
        page.wait_for_function("window.avatarkit.mic.state === 'off'")
        frames = page.evaluate("window.avatarkit.micStats.frames")
        assert page.is_disabled("#mic")
        assert "restarting" in page.inner_text("#stage-note")
        assert page.evaluate("window.avatarkit.state") == "speaking"
        factory.renderer.release()
        drained.result(timeout=60)
        page.wait_for_function("window.avatarkit.closeCode === 1012")
        assert page.evaluate("window.avatarkit.micStats.frames") == frames  # none since
        assert errors == []
    finally:
        context.close()
    assert [m.content for m in factory.sessions[0].history] == [
        "hello?",
        "A reply that the drain lets finish.",
    ]
