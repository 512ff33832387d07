"""The serve protocol's parser, the Host allowlist and the token bucket, without a server:
every input becomes a message or a ProtocolError, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit.serve import bind_host_names, protocol
from avatarkit.serve.protocol import ProtocolError, is_blank, parse_client_message
from avatarkit.serve.ratelimit import TokenBucket
from avatarkit.serve.security import HostAllowlist, host_name, same_origin

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["type", "text", "utterance", "x"]) | st.text(), children)
    ),
    max_leaves=20,
)


def _parses_or_refuses(raw: Any) -> None:
    refused: ProtocolError | None = None
    try:
        message = parse_client_message(raw)
    except ProtocolError as exc:
        refused = exc
    if refused is not None:
        assert refused.code
        assert str(refused)
    else:
        assert message.type in protocol.MESSAGE_PARSERS


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_parses_or_is_a_protocol_error(raw: str) -> None:
    _parses_or_refuses(raw)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["send", "start", "interrupt", "played", None]))
def test_any_json_parses_or_is_a_protocol_error(value: Any, kind: str | None) -> None:
    if isinstance(value, dict) and kind is not None:
        value = value | {"type": kind}
    _parses_or_refuses(json.dumps(value))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=60_000), st.sampled_from("[{"))
def test_nesting_at_any_depth_is_a_protocol_error_not_a_crash(depth: int, opener: str) -> None:
    closer = {"[": "]", "{": "}"}[opener]
    inner = "[]" if opener == "[" else "{}"
    body = (opener + '"k":') * depth if opener == "{" else opener * depth
    raw = '{"type": "send", "text": ' + body + inner + closer * depth + "}"
    _parses_or_refuses(raw)
    _parses_or_refuses(opener * depth)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \t\n",
        "\u200b",
        "\u200b\u200c\u200d\u2060\ufeff",
        "\u00a0\u3000\u2028\u2029",
        "\u3164\u115f\u1160\uffa0\u2800",
        "\u202e\u200e\u200f",
        "\u0301\u0301",
        "\x00\x07",
    ],
)
def test_invisible_text_is_blank(text: str) -> None:
    assert is_blank(text)
    with pytest.raises(ProtocolError) as info:
        parse_client_message(json.dumps({"type": "send", "text": text}))
    assert info.value.code in ("empty_text", "bad_text")


@pytest.mark.parametrize("text", ["a", "\u200bhi\u200b", "é", "🙂", "日本", "?", "1"])
def test_visible_text_is_a_message(text: str) -> None:
    assert not is_blank(text)
    assert parse_client_message(json.dumps({"type": "send", "text": text})) == (
        protocol.SendText(text.strip())
    )


def test_message_types_come_from_one_table() -> None:
    assert set(protocol.MESSAGE_PARSERS) == {
        "start",
        "send",
        "interrupt",
        "played",
        "mic_start",  # the microphone (avatarkit.serve.microphone)
        "mic_stop",
    }
    assert parse_client_message('{"type": "start"}') == protocol.Start()
    with pytest.raises(ProtocolError, match='expected "start", "send", "interrupt", "played"'):
        parse_client_message('{"type": "nope"}')


def test_the_token_bucket_spends_and_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.49
    assert not bucket.take()
    now[0] = 0.5
    assert bucket.take()
    now[0] = 100.0  # a long pause saves up no more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0, burst=1)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LocalHost.", "localhost"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("a.b:1", "a.b"),
        ("a.b:x", None),
        ("[::1", None),
        ("[::1]x", None),
        ("", None),
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_the_allowlist() -> None:
    default = HostAllowlist()
    for host in ("localhost", "127.0.0.1:9", "[::1]:80", "127.0.0.2", "LOCALHOST:1"):
        assert default.allows(host), host
    for host in (None, "", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io"):
        assert not default.allows(host), host
    custom = HostAllowlist(["Avatar.Example.com.", "*.corp.example"])
    assert custom.allows("avatar.example.com:443")
    assert custom.allows("x.corp.example")
    assert not custom.allows("corp.example")
    assert not custom.allows("xcorp.example")
    assert HostAllowlist(["*"]).allows("anything.example")
    with pytest.raises(ValueError, match="cannot be empty"):
        HostAllowlist([" "])


def test_same_origin() -> None:
    assert same_origin(None, "localhost:8000")  # not a browser
    assert same_origin("http://localhost:8000", "localhost:8000")
    assert not same_origin("http://localhost:8001", "localhost:8000")
    assert not same_origin("http://evil.example", None)


def test_bind_host_names() -> None:
    assert bind_host_names("0.0.0.0") == []
    assert bind_host_names("::") == []
    assert bind_host_names("192.168.1.5") == ["192.168.1.5"]
    assert bind_host_names("[fe80::1]") == ["fe80::1"]
    assert bind_host_names("avatar.lan") == ["avatar.lan"]


def test_the_client_behind_a_trusted_proxy_is_the_forwarded_one() -> None:
    from avatarkit.serve.auth import Auth

    auth = Auth(trusted_proxies=("127.0.0.1/32", "10.0.0.0/8"))

    def client(peer: str | None, forwarded: str | None) -> str | None:
        headers = {"x-forwarded-for": forwarded} if forwarded is not None else {}
        return auth.credentials(headers, peer, None).client

    assert client("127.0.0.1", None) == "127.0.0.1"
    assert client("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    # The nearest hop that is not a proxy of ours; what is further left is the client's claim.
    assert client("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9") == "203.0.113.7"
    assert client("127.0.0.1", " , ") == "127.0.0.1"
    # From an address that is not a trusted proxy, the header is a claim, not a fact.
    assert client("203.0.113.99", "198.51.100.1") == "203.0.113.99"
    assert client(None, "198.51.100.1") is None
    assert auth.identify(auth.credentials({}, "203.0.113.99", None)) == "address:203.0.113.99"
