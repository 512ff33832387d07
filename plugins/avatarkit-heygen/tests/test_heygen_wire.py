"""HeyGen's wire as its official SDK speaks it (issue 15): the public fake accepts session tokens
from ``streaming.create_token`` as ``Authorization: Bearer``, and a 2xx is read as the SDK reads
it (``data``, whatever ``code`` says)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from avatarkit.errors import ProviderError
from avatarkit_heygen import HeyGenRenderer
from avatarkit_heygen.heygen_testing import API_KEY, AVATAR, FakeHeyGen


def make(heygen: FakeHeyGen, **options: Any) -> HeyGenRenderer:
    options.setdefault("retry_backoff", 0.0)
    options.setdefault("lead_time", 0.0)
    return HeyGenRenderer(
        api_key=SecretStr(API_KEY), base_url=heygen.base_url, avatar_id=AVATAR, **options
    )


def test_create_token_then_bearer_for_the_session(heygen: FakeHeyGen) -> None:
    with httpx.Client(base_url=heygen.base_url) as client:
        made = client.post("/v1/streaming.create_token", headers={"x-api-key": API_KEY}, json={})
        assert made.status_code == 200
        token = made.json()["data"]["token"]
        auth = {"Authorization": f"Bearer {token}"}
        new = client.post("/v1/streaming.new", headers=auth, json={"avatar_name": AVATAR})
        assert new.status_code == 200
        sid = new.json()["data"]["session_id"]
        for op in ("start", "keep_alive", "interrupt", "stop"):
            answer = client.post(f"/v1/streaming.{op}", headers=auth, json={"session_id": sid})
            assert answer.status_code == 200, (op, answer.text)
            assert answer.json()["code"] == 100
    assert heygen.open_sessions() == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "hg-session-x"},
        {"x-api-key": "wrong"},
    ],
)
def test_fake_rejects_what_heygen_rejects(heygen: FakeHeyGen, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=heygen.base_url) as client:
        answer = client.post("/v1/streaming.new", headers=headers, json={"avatar_name": AVATAR})
    assert answer.status_code == 401
    assert heygen.sessions == {}


def test_create_token_needs_the_api_key(heygen: FakeHeyGen) -> None:
    with httpx.Client(base_url=heygen.base_url) as client:
        token = client.post(
            "/v1/streaming.create_token", headers={"x-api-key": API_KEY}, json={}
        ).json()["data"]["token"]
        again = client.post(
            "/v1/streaming.create_token", headers={"Authorization": f"Bearer {token}"}, json={}
        )
    assert again.status_code == 401


async def test_a_2xx_with_another_code_and_data_is_success(heygen: FakeHeyGen) -> None:
    # HeyGen's SDK returns ``data`` of any 2xx, whatever ``code`` says
    heygen.fail(
        "new",
        200,
        {
            "code": 0,
            "message": "ok",
            "data": {
                "session_id": "sess-x",
                "url": "wss://127.0.0.1:7881",
                "access_token": "lk",
                "session_duration_limit": 600,
            },
        },
    )
    heygen.sessions["sess-x"] = "new"
    renderer = make(heygen)
    async with renderer:
        assert heygen.sessions["sess-x"] == "started"
    assert heygen.sessions["sess-x"] == "stopped"


async def test_a_2xx_with_another_code_and_no_data_is_an_error(heygen: FakeHeyGen) -> None:
    heygen.fail("new", 200, {"code": 40001, "message": "quota exhausted", "data": None})
    with pytest.raises(ProviderError, match="quota exhausted"):
        await make(heygen).start()


async def test_the_public_fake_is_a_context_manager() -> None:
    with FakeHeyGen() as fake:
        async with make(fake) as avatar:
            await avatar.speak_text("Hello.")
        assert fake.ops() == ["new", "start", "task", "stop"]
    assert fake.open_sessions() == []
