"""What the page receives over the WebSocket holds no secret, even one the LLM streamed in
pieces (uvicorn on 127.0.0.1, the ``websockets`` client)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from websockets.sync.client import connect

from avatarkit import AvatarSession
from avatarkit._secrets import SPOKEN_MASK
from avatarkit.testing import FakeLLM, FakeTextRenderer

ServerThread = Any  # tests/serve/conftest.py

KEY = "sk-live-7f3a/9Q+zz=="
# the key in the reply as two forms, each cut across deltas
REPLY = [
    "Your key is sk-li",
    "ve-7f3a/9",
    "Q+zz==, or ",
    quote(KEY, safe="")[:9],
    quote(KEY, safe="")[9:],
    " in a URL.",
]


def test_the_page_never_receives_a_secret_split_across_deltas(
    serve: Callable[..., ServerThread],
) -> None:
    renderers: list[FakeTextRenderer] = []

    def factory() -> AvatarSession:
        renderers.append(FakeTextRenderer())
        return AvatarSession(llm=FakeLLM([REPLY]), renderer=renderers[-1], secrets=[KEY])

    server = serve(factory, title="secrets")
    raw: list[str] = []
    with connect(server.ws_url, proxy=None, open_timeout=10) as ws:
        raw.append(str(ws.recv(timeout=10)))  # hello
        ws.send(json.dumps({"type": "start"}))
        raw.append(str(ws.recv(timeout=10)))  # ready
        ws.send(json.dumps({"type": "send", "text": "what is my key?"}))
        for _ in range(200):
            raw.append(str(ws.recv(timeout=10)))
            if json.loads(raw[-1])["type"] == "metrics":
                break
    page = "\n".join(raw)
    assert KEY not in page
    assert quote(KEY, safe="") not in page
    messages = [json.loads(m) for m in raw]
    deltas = "".join(m["text"] for m in messages if m["type"] == "delta")
    assert KEY not in deltas  # as the page joins them
    assert quote(KEY, safe="") not in deltas
    assert deltas == f"Your key is {SPOKEN_MASK}, or {SPOKEN_MASK} in a URL."
    assert renderers[0].spoken == [deltas]
