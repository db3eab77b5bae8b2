"""The connection guard in process: any bytes a client sends give an answer or a closed connection (never
an exception), and the timers it arms close stalled connections."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState

from affidavit.service.connections import BoundedHttpToolsProtocol, ConnectionLimits


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _feed(chunks: list[bytes], limits: ConnectionLimits, wait: float = 0.0) -> FakeTransport:
    async def go() -> FakeTransport:
        config = Config(app=_app, http="httptools", log_level="critical")
        config.load()
        proto = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                         limits=limits)
        transport = FakeTransport()
        proto.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            proto.data_received(chunk)
            await asyncio.sleep(0)
        await asyncio.sleep(wait)
        proto.connection_lost(None)
        return transport

    return asyncio.run(go())


REQUEST = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"


@settings(max_examples=60)
@given(st.lists(st.one_of(st.binary(max_size=64), st.sampled_from([REQUEST, REQUEST[:20], b"\r\n"])),
                max_size=6))
def test_any_bytes_give_an_answer_or_a_close_never_an_exception(chunks: list[bytes]) -> None:
    _feed(chunks, ConnectionLimits(header_timeout=0.05, body_timeout=0.05), wait=0.01)


def test_a_half_request_line_is_closed_after_the_header_timeout() -> None:
    t = _feed([b"POST /x HT"], ConnectionLimits(header_timeout=0.05), wait=0.2)
    assert t.closed and t.written == b""


def test_a_stalled_body_gets_408_after_the_body_timeout() -> None:
    t = _feed([REQUEST[:-3]], ConnectionLimits(body_timeout=0.05), wait=0.2)
    assert t.closed and t.written.startswith(b"HTTP/1.1 408")


def test_a_complete_request_is_answered_and_kept_alive() -> None:
    t = _feed([REQUEST, REQUEST], ConnectionLimits(header_timeout=0.05, body_timeout=0.05), wait=0.01)
    assert t.written.count(b"HTTP/1.1 200") == 2
