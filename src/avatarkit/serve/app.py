"""The ASGI app: the page, its static files, ``livekit-client`` and the ``/ws`` endpoint."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketState

from avatarkit.serve.assets import LIVEKIT_CLIENT_HINT, STATIC_DIR, find_livekit_client
from avatarkit.serve.connection import Limits, SessionFactory, serve_page
from avatarkit.serve.protocol import error_message

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: WebSocket close codes the page understands.
CLOSE_POLICY = 1008  # foreign origin
CLOSE_ERROR = 1011  # the session could not be built or started
CLOSE_TRY_LATER = 1013  # over the concurrent-session limit


class _Capacity:
    """Counts live sessions. One event loop, no await between check and increment: no race."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


def _same_origin(websocket: WebSocket) -> bool:
    """Browsers send ``Origin``; refuse other sites' pages (they could spend your avatar
    credits through your local server). Clients without ``Origin`` are not browsers."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


def create_app(
    factory: SessionFactory,
    *,
    max_sessions: int = 4,
    limits: Limits | None = None,
    title: str = "avatarkit",
) -> Starlette:
    """The ``avatarkit serve`` app; ``factory`` builds one fresh session per page."""
    if max_sessions < 1:
        raise ValueError("max_sessions must be at least 1")
    capacity = _Capacity(max_sessions)
    page_limits = limits or Limits()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def livekit_client(request: Request) -> Response:
        bundle = find_livekit_client()
        if bundle is None:
            return PlainTextResponse(LIVEKIT_CLIENT_HINT, status_code=404)
        return FileResponse(bundle, media_type="text/javascript")

    async def health(request: Request) -> Response:
        return JSONResponse({"sessions": capacity.active, "max_sessions": capacity.limit})

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            if not _same_origin(websocket):
                await websocket.send_json(
                    error_message("origin", "this page's origin may not use this server")
                )
                await websocket.close(CLOSE_POLICY)
                return
            if not capacity.try_acquire():
                await websocket.send_json(
                    error_message(
                        "limit",
                        f"this server already runs {capacity.limit} avatar session(s), its "
                        "limit (--max-sessions); close another tab or try again later",
                    )
                )
                await websocket.close(CLOSE_TRY_LATER)
                return
            try:
                await serve_page(websocket, factory, limits=page_limits, title=title)
            finally:
                capacity.release()
            await _close(websocket, CLOSE_ERROR)
        except Exception:
            logger.exception("page connection failed")
            await _close(websocket, CLOSE_ERROR)

    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/vendor/livekit-client.mjs", livekit_client),
        WebSocketRoute("/ws", websocket_endpoint),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes)


async def _close(websocket: WebSocket, code: int) -> None:
    """Close the socket unless the page already did."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    try:
        await websocket.close(code)
    except Exception as exc:
        logger.debug("closing the page's socket failed: %s", exc)
