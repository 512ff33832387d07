"""Other sites against ``avatarkit serve``, in real Chromium (Debian's, driven by Playwright):
a foreign page embedding the app in hidden iframes starts no session, a framed copy of the page
(headers stripped by a proxy) refuses to start one, and a rebound DNS name is refused."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from avatarkit import AvatarSession
from avatarkit.serve import create_app
from avatarkit.testing import FakeLLM, FakeTextRenderer

ServerThread = Any  # conftest.py: uvicorn serving an app in a thread
Page = Any  # playwright.sync_api.Page

FRAMING_HEADERS = {b"x-frame-options", b"content-security-policy"}


class Recorder:
    """Counts sessions built and WebSocket handshakes reaching the app."""

    def __init__(self) -> None:
        self.sessions: list[AvatarSession] = []
        self.sockets = 0

    def factory(self) -> AvatarSession:
        session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer())
        self.sessions.append(session)
        return session

    def wrap(self, app: Any, *, strip_framing_headers: bool = False) -> Any:
        """The app as served; optionally behind a "proxy" that drops the no-framing headers."""

        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "websocket":
                self.sockets += 1

            async def strip(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message = dict(message)
                    message["headers"] = [
                        (k, v) for k, v in message["headers"] if k.lower() not in FRAMING_HEADERS
                    ]
                await send(message)

            await app(scope, receive, strip if strip_framing_headers else send)

        return wrapped


def foreign_site(target: str, frames: int = 4) -> Starlette:
    """An attacker's page: the app in hidden (and one visible) iframes."""
    iframes = "".join(
        f'<iframe src="{target}" width="400" height="300" '
        f'style="{"opacity:0;position:absolute" if i else ""}"></iframe>'
        for i in range(frames)
    )

    async def index(request: Request) -> Response:
        return HTMLResponse(f"<!doctype html><title>free prizes</title>{iframes}")

    return Starlette(routes=[Route("/", index)])


def healthz(server: ServerThread) -> Any:
    return httpx.get(server.url + "/healthz", trust_env=False).json()


def test_a_foreign_page_framing_the_app_starts_nothing(
    serve_asgi: Callable[[Any], ServerThread], new_page: Callable[[], Page]
) -> None:
    recorder = Recorder()
    app = serve_asgi(recorder.wrap(create_app(recorder.factory, max_sessions=1)))
    attacker = serve_asgi(foreign_site(app.url + "/"))
    page = new_page()
    page.goto(attacker.url + "/")
    page.wait_for_load_state("load")  # every frame has loaded (or been blocked)
    children = [f for f in page.frames if f != page.main_frame]
    assert len(children) == 4
    for frame in children:  # X-Frame-Options: DENY: Chromium shows its error page instead
        assert frame.url.startswith("chrome-error://"), frame.url
        assert frame.evaluate("typeof window.avatarkit") == "undefined"
    page.wait_for_timeout(500)  # room for a late script to do anything
    assert recorder.sockets == 0
    assert recorder.sessions == []
    health = healthz(app)
    assert (health["sessions"], health["pages"], health["max_sessions"]) == (0, 0, 1)
    # The real user still gets the one slot.
    own = new_page()
    own.goto(app.url + "/")
    own.click("#start")
    own.wait_for_function("window.avatarkit.connection === 'connected'")
    assert len(recorder.sessions) == 1


def test_a_framed_copy_of_the_page_never_starts_a_session(
    serve_asgi: Callable[[Any], ServerThread], new_page: Callable[[], Page]
) -> None:
    """Defence in depth: should a proxy strip the no-framing headers, the framed page loads and
    connects (its socket carries the app's own origin) but never offers or sends ``start``,
    not even when its button is clicked (a clickjacked click)."""
    recorder = Recorder()
    app = serve_asgi(
        recorder.wrap(create_app(recorder.factory, max_sessions=1), strip_framing_headers=True)
    )
    attacker = serve_asgi(foreign_site(app.url + "/", frames=2))
    page = new_page()
    page.goto(attacker.url + "/")
    page.wait_for_load_state("load")
    children = [f for f in page.frames if f != page.main_frame]
    assert len(children) == 2
    for frame in children:
        frame.wait_for_function("window.avatarkit && window.avatarkit.connection !== 'connecting'")
        assert frame.is_disabled("#start")
        assert "cannot be used inside another page" in frame.inner_text("#stage-note")
        frame.click("#start", force=True)  # what a clickjacked click would do
    page.wait_for_timeout(500)
    assert recorder.sockets == 2  # they connected ...
    assert recorder.sessions == []  # ... and started nothing
    assert healthz(app)["sessions"] == 0


def test_a_rebound_dns_name_gets_no_page(chromium: Any, serve: Callable[..., ServerThread]) -> None:
    """``rebind.test`` resolves to 127.0.0.1 (as an attacker's DNS would make it): Chromium
    reaches the server, which refuses the foreign Host: no page, no socket, no session."""
    recorder = Recorder()
    server = serve(recorder.factory)
    executable = os.environ.get("AVATARKIT_CHROMIUM", "/usr/bin/chromium")
    browser = chromium.browser_type.launch(
        executable_path=executable,
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--host-resolver-rules=MAP rebind.test 127.0.0.1",
        ],
    )
    try:
        page = browser.new_page()
        response = page.goto(f"http://rebind.test:{server.port}/")
        assert response is not None
        assert response.status == 400
        assert page.inner_text("body").strip() == "Invalid Host header"
        # The attacker's own script, on that origin, tries the socket directly.
        outcome = page.evaluate(
            """(url) => new Promise((resolve) => {
                const ws = new WebSocket(url);
                ws.onopen = () => resolve("open");
                ws.onclose = (event) => resolve("closed " + event.code);
            })""",
            f"ws://rebind.test:{server.port}/ws",
        )
        assert outcome == "closed 1006"  # the handshake was refused (HTTP 403)
        # The same server, opened at its own address, works.
        own = page.goto(server.url + "/")
        assert own is not None
        assert own.status == 200
    finally:
        browser.close()
    assert recorder.sessions == []
    assert healthz(server)["sessions"] == 0
