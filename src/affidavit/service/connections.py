"""Connection-level bounds: read timeouts, an open-connection cap and an in-flight request limit.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but nothing else: a client that
sends half a request line, or headers and then a trickle of body, holds its connection (and a file
descriptor) for as long as it likes, and ``limit_concurrency`` counts those idle connections against
the limit, so stalled clients would turn away good ones. Here:

- :class:`BoundedHttpToolsProtocol` (uvicorn's httptools protocol plus three timers) closes a connection
  whose request headers are not complete ``header_timeout`` seconds after the connection opened or the
  next request began, answers ``408`` and closes one whose body is not complete ``body_timeout`` seconds
  after its headers, and refuses connections beyond ``max_connections`` with a bare ``503``;
- :class:`ConcurrencyLimit` (ASGI middleware) answers MAA's ``503 ServiceUnavailable`` with
  ``Retry-After`` to requests beyond ``max_concurrency`` in flight in this worker.

Both are per worker process. TLS handshakes are bounded separately by asyncio (60 s).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from affidavit.service.errors import SERVICE_UNAVAILABLE, error_response


@dataclass(frozen=True)
class ConnectionLimits:
    """``affidavit serve --header-timeout/--body-timeout/--keepalive-timeout/--max-connections/
    --max-concurrency`` (seconds, counts per worker)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1024
    max_concurrency: int = 256


def _plain(status: str, text: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 " + status.encode(), b"content-type: text/plain; charset=utf-8", *extra,
            b"content-length: %d" % len(text), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + text


_TIMEOUT_408 = _plain("408 Request Timeout", b"request body not received in time")
_BUSY_503 = _plain("503 Service Unavailable", b"too many connections", b"retry-after: 1")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read timeouts and a connection cap.

    Used as ``uvicorn.Config(http=functools.partial(BoundedHttpToolsProtocol, limits=...))``.
    """

    def __init__(self, *args: Any, limits: ConnectionLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or ConnectionLimits()
        self._read_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = False

    def _arm(self, seconds: float, handler: Any) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(_BUSY_503)
            transport.close()
            return
        self._awaiting_headers = True
        self._arm(self.limits.header_timeout, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
            # the first bytes of a further request on a kept-alive connection
            self._awaiting_headers = True
            self._arm(self.limits.header_timeout, self._headers_timed_out)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._arm(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _headers_timed_out(self) -> None:
        self._read_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            if self.cycle is not None and not self.cycle.response_started:
                self.transport.write(_TIMEOUT_408)
            self.transport.close()


class InFlight:
    """The count of requests in flight in this worker and its limit, shared by :class:`ConcurrencyLimit`
    and the attestation front (``service.front``): one limit for both."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0


def busy_response(limit: int) -> Response:
    message = f"more than {limit} requests in progress; retry shortly"
    response = error_response(503, SERVICE_UNAVAILABLE, message)
    response.headers["retry-after"] = "1"
    return response


class ConcurrencyLimit:
    """At most ``limit`` HTTP requests in flight in this worker; beyond it 503 with ``Retry-After``."""

    def __init__(self, app: ASGIApp, limit: int, gate: InFlight | None = None) -> None:
        self.app = app
        self.gate = gate if gate is not None else InFlight(limit)

    @property
    def limit(self) -> int:
        return self.gate.limit

    @property
    def in_flight(self) -> int:
        return self.gate.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gate = self.gate
        if gate.in_flight >= gate.limit:
            await busy_response(gate.limit)(scope, receive, send)
            return
        gate.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gate.in_flight -= 1
