"""The loopback server plugin tests point vendor SDKs at: framing, cuts, disconnects."""

import anyio
import httpx
import pytest

from avatarkit.testing import Responder, ResponseGate, loopback_server


def streaming(r: Responder) -> None:
    if r.request.path == "/json":
        r.send(201, {"echo": r.request.json()}, {"x-request-id": "req_1"})
        return
    r.start(200, {"content-type": "text/event-stream"})
    r.sse({"n": 1})
    r.sse("two\nlines", event="note")
    if r.request.path == "/cut":
        r.cut()
        return
    r.write("data: [DONE]\n\n")
    r.end()


async def test_json_and_sse_framing() -> None:
    with loopback_server(streaming) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post("/json", json={"a": 1})
            assert response.status_code == 201
            assert response.json() == {"echo": {"a": 1}}
            assert response.headers["x-request-id"] == "req_1"
            response = await client.get("/sse")
            assert response.text == (
                'data: {"n": 1}\n\nevent: note\ndata: two\ndata: lines\n\ndata: [DONE]\n\n'
            )
    assert [r.path for r in server.requests] == ["/json", "/sse"]
    assert server.requests[0].headers["content-type"] == "application/json"


async def test_response_gate_holds_the_rest_until_the_first_piece_arrived() -> None:
    gate = ResponseGate()

    def gated(r: Responder) -> None:
        r.start(200, {"content-type": "text/plain"})
        r.write("first")
        gate.wait(r)
        r.write("rest")
        r.end()

    with loopback_server(gated) as server:
        async with (
            httpx.AsyncClient(base_url=server.url) as client,
            client.stream("GET", "/") as response,
        ):
            pieces = response.aiter_raw()
            received = b""
            while len(received) < len(b"first"):
                received += await anext(pieces)
            assert received == b"first"  # nothing more: the server is held
            assert gate.server_finished_first is None
            gate.open()
            assert b"".join([piece async for piece in pieces]) == b"rest"
    assert gate.server_finished_first is False


async def test_response_gate_gives_up_when_never_opened() -> None:
    gate = ResponseGate(within=0.05)

    def gated(r: Responder) -> None:
        gate.wait(r)
        r.send(200, "done")

    with loopback_server(gated) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/")).text == "done"
    assert gate.server_finished_first is True


async def test_cut_is_a_protocol_error_for_the_client() -> None:
    with loopback_server(streaming) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/cut")


async def test_client_leaving_mid_stream_is_recorded() -> None:
    def endless(r: Responder) -> None:
        r.start(200, {"content-type": "text/event-stream"})
        for i in range(500):  # bounded: 500 x 10 ms
            r.sse({"i": i})
            r.pause(0.01)
        r.end()

    with loopback_server(endless) as server:
        port = int(server.url.rsplit(":", 1)[1])
        # a raw socket, so what is tested is the server, not a client library's cleanup
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert b"200 OK" in await sock.receive()
        assert await server.wait_for_disconnects(1, within=5)
    assert len(server.disconnects) == 1


async def test_handler_errors_are_raised_at_exit() -> None:
    def broken(r: Responder) -> None:
        raise ValueError("bug in the fake")

    statuses = []

    async def run() -> None:
        with loopback_server(broken) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                statuses.append((await client.get("/")).status_code)

    with pytest.raises(ValueError, match="bug in the fake"):
        await run()
    assert statuses == [599]


async def test_stop_does_not_wait_for_a_sleeping_handler() -> None:
    def slow(r: Responder) -> None:
        r.pause(30)
        r.send(200, "late")

    with loopback_server(slow) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            with anyio.move_on_after(0.1):
                await client.get("/")
    assert len(server.requests) == 1


async def test_chunked_request_bodies_are_read() -> None:
    def echo(r: Responder) -> None:
        r.send(200, r.request.body)

    async def parts():
        yield b'{"a": '
        yield b"1}"

    with loopback_server(echo) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            first = await client.post("/", content=parts())
            second = await client.post("/", content=b"again")  # same connection, still in sync
    assert (first.content, second.content) == (b'{"a": 1}', b"again")
    assert server.requests[0].headers["transfer-encoding"] == "chunked"


async def test_a_client_leaving_mid_request_is_a_disconnect() -> None:
    called = []
    with loopback_server(lambda r: called.append(r)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{")
        assert await server.wait_for_disconnects(1, within=5)
    assert called == []  # the handler never saw the half-sent request
    assert server.disconnects[0].body == b"{"
