"""Who may start a paid session, at the provider's end: for every way of saying who (a token, a
signed link, a trusted proxy's header, an embedding app's hook, plain or async), a socket
without a valid identity creates nothing at the fake HeyGen API on 127.0.0.1; and the client
behind a proxy is the one the proxy names, however the proxy writes it."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from avatarkit import AvatarSession, load_session
from avatarkit.serve.auth import Auth, Credentials, StartLimiter, sign_link, verify_link
from avatarkit.serve.protocol import Start
from avatarkit.testing import FakeLLM, FakeTextRenderer
from avatarkit_heygen.heygen_testing import AVATAR, FakeHeyGen

ServerThread = Any

TOKEN = "serve-token-0123456789abcdef"
LINK_SECRET = b"link-secret-0123456789"


@pytest.fixture
def heygen() -> Iterator[FakeHeyGen]:
    with FakeHeyGen() as server:
        server.max_sessions = 50
        yield server


def heygen_factory(heygen: FakeHeyGen) -> Callable[[], AvatarSession]:
    config = {
        "llm": {"provider": "scripted", "replies": ["Hello."]},
        "renderer": {
            "provider": "heygen",
            "api_key": heygen.api_key,
            "base_url": heygen.base_url,
            "avatar_id": AVATAR,
        },
    }
    return lambda: load_session(config)


def start(
    server: ServerThread, token: str | None = None, headers: Any = None
) -> tuple[dict[str, Any], int | None]:
    """A page's start: its answer (``ready`` or ``error``) and the close code, if it closed."""
    with connect(
        server.ws_url, proxy=None, open_timeout=10, additional_headers=headers or {}
    ) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello"
        ws.send(json.dumps({"type": "start"} | ({"token": token} if token is not None else {})))
        while True:
            answer = json.loads(ws.recv(timeout=20))
            if answer["type"] in ("ready", "error"):
                break
        if answer["type"] == "ready":
            return answer, None
        try:
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return answer, closed.rcvd.code if closed.rcvd else None


def user_from_header(credentials: Credentials) -> str | None:
    return credentials.headers.get("x-app-user") or None


async def async_user_from_header(credentials: Credentials) -> str | None:
    await anyio.sleep(0.01)  # an app asks its own store
    return credentials.headers.get("x-app-user") or None


def failing_hook(credentials: Credentials) -> str | None:
    if credentials.headers.get("x-app-user") == "ann":
        return "ann"
    raise RuntimeError(f"no such user for {credentials.headers.get('x-app-user')}")


def empty_for_strangers(credentials: Credentials) -> str | None:
    return "ann" if credentials.headers.get("x-app-user") == "ann" else ""


# mode -> (create_app options, bad attempts as (token, headers), a good attempt)
MODES: dict[str, tuple[dict[str, Any], list[tuple[str | None, dict[str, str]]], Any]] = {
    "token": (
        {"auth": Auth(mode="token", token=TOKEN)},
        [(None, {}), ("", {}), ("wrong", {}), (TOKEN[:-1], {}), (TOKEN + " ", {})],
        (TOKEN, {}),
    ),
    "link": (
        {"auth": Auth(mode="link", link_secret=LINK_SECRET)},
        [
            (None, {}),
            (sign_link(LINK_SECRET, ttl=-1), {}),
            (sign_link(b"another secret", ttl=600), {}),
            ("²." + sign_link(LINK_SECRET, ttl=600).split(".")[1], {}),
        ],
        "signed",
    ),
    "proxy": (
        {"auth": Auth(mode="proxy", proxy_header="X-Forwarded-User")},
        [(None, {}), (None, {"X-Forwarded-User": " "}), ("ann", {})],
        (None, {"X-Forwarded-User": "ann"}),
    ),
    "hook": (
        {"authorize": user_from_header},
        [(None, {}), (None, {"X-App-User": ""}), (TOKEN, {})],
        (None, {"X-App-User": "ann"}),
    ),
    "async hook": (
        {"authorize": async_user_from_header},
        [(None, {}), (None, {"X-App-User": ""})],
        (None, {"X-App-User": "ann"}),
    ),
    "failing hook": (
        {"authorize": failing_hook},
        [(None, {}), (None, {"X-App-User": "mallory"})],
        (None, {"X-App-User": "ann"}),
    ),
    "hook answering empty": (
        {"authorize": empty_for_strangers},
        [(None, {}), (None, {"X-App-User": "mallory"})],
        (None, {"X-App-User": "ann"}),
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_no_identity_no_paid_session_in_every_auth_mode(
    mode: str,
    serve: Callable[..., ServerThread],
    heygen: FakeHeyGen,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options, bad, good = MODES[mode]
    server = serve(heygen_factory(heygen), max_sessions=20, **options)
    with caplog.at_level(logging.INFO):
        for token, headers in bad:
            answer, code = start(server, token, headers)
            assert (answer["type"], answer.get("code")) == ("error", "unauthorized"), (
                token,
                headers,
            )
            assert code == 1008
    assert heygen.sessions == {}  # nothing was created (or billed) at HeyGen
    assert heygen.ops() == []
    if good == "signed":
        good = (sign_link(LINK_SECRET, ttl=600), {})
    answer, _ = start(server, *good)
    assert answer["type"] == "ready", answer
    assert len(heygen.sessions) == 1
    assert "mallory" not in caplog.text  # a failing hook's message may quote what it was given


def test_secrets_are_not_in_reprs() -> None:
    credentials = Credentials(
        headers={"cookie": "session=c00kie", "x-forwarded-user": "ann"},
        client="203.0.113.7",
        credential="t0ken-secret",
    )
    for text in (repr(credentials), repr(Start("t0ken-secret"))):
        assert "t0ken-secret" not in text
        assert "c00kie" not in text


def test_a_link_with_non_ascii_digits_is_refused_not_an_error() -> None:
    signed = sign_link(LINK_SECRET, ttl=600)
    signature = signed.split(".")[1]
    for expiry in ("²", "١٢٣٤٥٦٧٨٩٠", "1_000", " 123", "-5", ""):
        assert verify_link(LINK_SECRET, f"{expiry}.{signature}") is False
    assert verify_link(LINK_SECRET, signed) is True


def test_proxies_and_clients_however_the_address_is_written() -> None:
    auth = Auth(mode="proxy", proxy_header="X-Forwarded-User")  # loopback proxies

    def credentials(peer: str, **headers: str) -> Credentials:
        return auth.credentials({k.replace("_", "-"): v for k, v in headers.items()}, peer, None)

    # An IPv4 client of a dual-stack socket (--host ::) is IPv4-mapped: still the proxy.
    mapped = credentials("::ffff:127.0.0.1", x_forwarded_user="ann", x_forwarded_for="203.0.113.7")
    assert auth.identify(mapped) == "user:ann"
    assert mapped.client == "203.0.113.7"
    assert auth.identify(credentials("::1", x_forwarded_user="ann")) == "user:ann"
    assert auth.identify(credentials("::ffff:203.0.113.9", x_forwarded_user="ann")) is None
    # Hops with ports (some proxies add them): one client is one identity whatever its port.
    for hop, client in [
        ("203.0.113.7:51234", "203.0.113.7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ]:
        assert credentials("127.0.0.1", x_forwarded_for=hop).client == client, hop
    # A proxy of ours written with a port is still ours: the hop before it is the client.
    chain = credentials("127.0.0.1", x_forwarded_for="198.51.100.4, 127.0.0.1:8080")
    assert chain.client == "198.51.100.4"


def test_start_limits_must_be_positive() -> None:
    from avatarkit.errors import AvatarKitError

    for per_minute, burst in [(0, 5), (-1, 5), (float("nan"), 5), (float("inf"), 5), (10, 0)]:
        with pytest.raises(AvatarKitError, match="per minute"):
            StartLimiter(per_minute=per_minute, burst=burst)


def test_a_forwarded_for_in_several_lines_is_read_whole(serve: Callable[..., ServerThread]) -> None:
    """HAProxy's ``option forwardfor`` adds its own X-Forwarded-For line after any the client
    sent: the client's line must not choose the identity (a fresh start budget each time)."""
    server = serve(
        lambda: AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()),
        max_sessions=20,
        start_limiter=StartLimiter(per_minute=1, burst=1),
    )

    def through_proxy(forged: str) -> dict[str, Any]:
        lines = [("X-Forwarded-For", forged), ("X-Forwarded-For", "203.0.113.5")]
        answer, _ = start(server, headers=lines)
        return answer

    assert through_proxy("198.51.100.1")["type"] == "ready"
    assert through_proxy("198.51.100.2").get("code") == "start_rate_limited"
    assert through_proxy("198.51.100.3").get("code") == "start_rate_limited"


def test_guessing_tokens_is_rate_limited_per_client(
    serve: Callable[..., ServerThread], heygen: FakeHeyGen
) -> None:
    """Refused starts spend a budget per client (twice the start burst): a guesser gets a few
    tries, then none, not even with the right token, until it refills; others are not held."""
    server = serve(
        heygen_factory(heygen),
        max_sessions=20,
        auth=Auth(mode="token", token=TOKEN),
        start_limiter=StartLimiter(per_minute=1, burst=2),
    )
    guesser = [("X-Forwarded-For", "198.51.100.66")]  # from the loopback proxy
    for guess in range(4):
        answer, code = start(server, f"guess-{guess}", guesser)
        assert (answer.get("code"), code) == ("unauthorized", 1008), guess
    for token in ("guess-5", TOKEN):
        answer, code = start(server, token, guesser)
        assert (answer.get("code"), code) == ("start_rate_limited", 1013), token
    assert heygen.sessions == {}
    answer, _ = start(server, TOKEN, [("X-Forwarded-For", "198.51.100.7")])
    assert answer["type"] == "ready"  # another client behind the same proxy


def test_secrets_from_files_lose_their_line_end() -> None:
    from avatarkit.errors import AvatarKitError
    from avatarkit.serve.auth import LINK_SECRET_ENV, TOKEN_ENV

    token = Auth.from_env("token", environ={TOKEN_ENV: f"{TOKEN}\n"})
    assert token.identify(token.credentials({}, "127.0.0.1", TOKEN)) is not None
    link = Auth.from_env("link", environ={LINK_SECRET_ENV: " secret-for-links\r\n"})
    assert link.link_secret == b"secret-for-links"
    for mode, name in (("token", TOKEN_ENV), ("link", LINK_SECRET_ENV)):
        with pytest.raises(AvatarKitError, match=name):
            Auth.from_env(mode, environ={name: " \n"})  # type: ignore[arg-type]


def test_refused_starts_and_turn_figures_are_in_the_metrics(
    serve: Callable[..., ServerThread],
) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    server = serve(
        lambda: AvatarSession(llm=FakeLLM(["Hello there."]), renderer=FakeTextRenderer()),
        max_sessions=1,
        auth=Auth(mode="token", token=TOKEN),
        start_limiter=StartLimiter(per_minute=1, burst=1),
    )
    assert start(server, "wrong")[0]["code"] == "unauthorized"
    with connect(server.ws_url, proxy=None, open_timeout=10) as ws:  # holds the one slot
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        ws.send(json.dumps({"type": "start", "token": TOKEN}))
        while json.loads(ws.recv(timeout=10))["type"] != "ready":
            pass
        ws.send(json.dumps({"type": "send", "text": "hi"}))
        while json.loads(ws.recv(timeout=10))["type"] != "metrics":
            pass
        full = [("X-Forwarded-For", "198.51.100.1")]  # another client: its own start budget
        assert start(server, TOKEN, full)[0]["code"] == "server_full"
        assert start(server, TOKEN)[0]["code"] == "start_rate_limited"  # this client's 2nd
        scrape = httpx.get(server.url + "/metrics", trust_env=False).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    }
    for reason in ("auth", "full", "rate"):
        key = ("avatarkit_session_starts_refused_total", (("reason", reason),))
        assert samples[key] == 1, reason
    assert samples[("avatarkit_sessions_started_total", ())] == 1
    assert samples[("avatarkit_turns_total", (("input", "typed"),))] == 1
    for histogram in ("time_to_first_token", "time_to_first_speech", "turn"):
        assert samples[(f"avatarkit_{histogram}_seconds_count", ())] == 1, histogram
    assert samples[("avatarkit_turns_interrupted_total", ())] == 0


@given(
    address=st.ip_addresses(),
    port=st.integers(min_value=0, max_value=65535),
)
def test_an_address_is_one_identity_however_it_is_written(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    auth = Auth(trusted_proxies=("127.0.0.0/8",))
    plain_address = getattr(address, "ipv4_mapped", None) or address
    assume(plain_address not in ipaddress.ip_network("127.0.0.0/8"))  # a proxy of ours
    plain = str(plain_address)
    if address.version == 4:
        spellings = [str(address), f"{address}:{port}", f"::ffff:{address}"]
    else:
        spellings = [str(address), f"[{address}]", f"[{address}]:{port}", address.exploded]
    for spelling in spellings:
        hops = {"x-forwarded-for": f"{spelling}, 127.0.0.2"}
        forwarded = auth.credentials(hops, "::ffff:127.0.0.1", None)
        assert forwarded.client == plain, spelling


@given(peer=st.text(max_size=60), forwarded=st.text(max_size=200))
def test_any_peer_and_forwarded_header_give_an_answer_not_an_error(
    peer: str, forwarded: str
) -> None:
    auth = Auth(mode="proxy", proxy_header="X-Forwarded-User", trusted_proxies=("0.0.0.0/0",))
    credentials = auth.credentials(
        {"x-forwarded-for": forwarded, "x-forwarded-user": "ann"}, peer, None
    )
    assert auth.identify(credentials) in (None, "user:ann")
