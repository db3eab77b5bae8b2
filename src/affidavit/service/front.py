"""``POST /attest/{type}``, the hot path, served in front of Starlette's routing and middleware.

Every attestation passes through here and nowhere else: :class:`affidavit.service.app.AffidavitApp` hands
``POST /attest/{kind}`` to :class:`AttestFront` before Starlette sees it, and Starlette's own
``/attest/{kind}`` route exists only to answer other methods (405). What the middleware stack does for
every other request is done here in one frame, in the same order and with the same results:

- the request id (``x-request-id`` taken when sane, else generated) in the scope's ``Observation`` and in
  the response, the access-log line and the metrics once the answer is sent (``service.observe.finish``);
- the in-flight limit per worker (``service.connections.InFlight``, shared with ``ConcurrencyLimit``):
  ``503 ServiceUnavailable`` with ``Retry-After`` beyond it;
- the request shape's handler (``app.SHAPES``) on a Starlette ``Request``, its errors answered by the
  app's own exception handlers (MAA's error body and codes, the error noted for the access log); a bug
  gets the 500 and is re-raised to the server, as ``ServerErrorMiddleware`` does;
- ``x-ms-maa-service-version`` on every answer.

Measured with bench/attest.py, the middleware stack and routing cost about a tenth of an attestation's
CPU time; here they cost a few microseconds.

Attestations also take turns on the event loop (:class:`LoopTurns`): one starts its work per loop
iteration, so the loop polls its sockets and timers between two attestations' work instead of running
every ready one back to back (with 4 requests arriving together, that held the loop 4-5 ms).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from affidavit.attestation_types import AttestationType, UnknownAttestationType, lookup
from affidavit.service import metrics
from affidavit.service.connections import InFlight, busy_response
from affidavit.service.errors import SERVICE_VERSION
from affidavit.service.observe import SCOPE_KEY, Observation, finish, request_id_of

ATTEST_PREFIX = "/attest/"
_VERSION_HEADER = (b"x-ms-maa-service-version", SERVICE_VERSION.encode())
_OWN_HEADERS = frozenset({b"x-ms-maa-service-version", b"x-request-id"})
_PLAIN_RESPONSES = (Response, JSONResponse)

ShapeHandler = Callable[[Request, AttestationType], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def attest_kind(scope: Scope) -> str | None:
    """The ``{kind}`` of a path Starlette's ``/attest/{kind}`` route would match (one non-empty segment,
    after the root path), else None."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        path = path[len(root):]
    if not path.startswith(ATTEST_PREFIX):
        return None
    kind = path[len(ATTEST_PREFIX):]
    return kind if kind and "/" not in kind else None


class LoopTurns:
    """At most one attestation starts its event-loop work per loop iteration.

    An event loop runs every callback that is ready before it polls again, so attestations whose
    requests arrive together would run their parsing, verification and claims (0.3-1 ms each) back to
    back, and everything else the loop serves -- other connections, timers, the stall monitor -- would
    wait for all of them. Here the first takes its turn at once and the others wait for a later
    iteration each (the release runs as a callback of the next iteration, after the loop has polled).
    The work is the same and runs in the same order, so throughput does not change; what changes is
    that the loop never holds more than one attestation's share without polling."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._taken = False
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): nothing of the old one carries over
            self._loop, self._taken, self._waiting = loop, False, deque()
        if not self._taken:
            self._taken = True
            loop.call_soon(self._release)
            return
        waiter = loop.create_future()
        self._waiting.append(waiter)
        await waiter

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled waiter (its client went away) gives its turn on
                waiter.set_result(None)  # its task runs in the next iteration, and so does this
                if self._loop is not None:
                    self._loop.call_soon(self._release)
                return
        self._taken = False


class AttestFront:
    """Serves ``POST /attest/{kind}`` (module docstring). ``route`` is the app's Starlette route for
    ``/attest/{kind}`` (its template labels the metrics and the access log)."""

    def __init__(
        self,
        *,
        route: Any,
        gate: InFlight,
        shapes: Mapping[str, ShapeHandler],
        unknown: Callable[[Request], Awaitable[Response]],
        error_handlers: Callable[[], Mapping[Any, ErrorHandler]],
    ) -> None:
        self.route = route
        self.gate = gate
        self.shapes = shapes
        self.unknown = unknown
        self._error_handlers = error_handlers
        self.turns = LoopTurns()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        obs = Observation(request_id_of(scope), time.perf_counter())
        scope[SCOPE_KEY] = obs
        scope["route"] = self.route
        scope["path_params"] = {"kind": kind}
        status, maa_code = 500, None
        metrics.request_started()
        try:
            request = Request(scope, receive)
            unexpected: Exception | None = None
            try:
                response = await self._answer(request, kind)
            except Exception as exc:  # noqa: BLE001 -- answered by the app's handlers, as in Starlette
                response = await self._error(request, exc)
                if response.status_code >= 500 and self._is_bug(exc):
                    unexpected = exc
            status = response.status_code
            maa_code = _header(response, b"x-ms-error-code")
            await self._send(response, obs.request_id.encode(), scope, receive, send)
            if unexpected is not None:
                raise unexpected
        finally:
            metrics.request_ended()
            finish(scope, obs, status, maa_code)

    async def _answer(self, request: Request, kind: str) -> Response:
        gate = self.gate
        if gate.in_flight >= gate.limit:
            return busy_response(gate.limit)
        gate.in_flight += 1
        try:
            await self.turns.turn()
            try:
                entry = lookup(kind)
            except UnknownAttestationType:
                return await self.unknown(request)
            return await self.shapes[entry.request_shape](request, entry)
        finally:
            gate.in_flight -= 1

    def _handler(self, exc: Exception) -> ErrorHandler | None:
        handlers = self._error_handlers()
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None

    def _is_bug(self, exc: Exception) -> bool:
        """Whether ``exc`` reached the catch-all (``Exception``) handler, which Starlette re-raises."""
        handlers = self._error_handlers()
        return next((cls for cls in type(exc).__mro__ if cls in handlers), Exception) is Exception

    async def _error(self, request: Request, exc: Exception) -> Response:
        handler = self._handler(exc)
        if handler is None:
            raise exc
        return await handler(request, exc)

    async def _send(self, response: Response, request_id: bytes, scope: Scope, receive: Receive,
                    send: Send) -> None:
        if type(response) in _PLAIN_RESPONSES and response.background is None:
            headers = [h for h in response.raw_headers if h[0] not in _OWN_HEADERS]
            headers.append(_VERSION_HEADER)
            headers.append((b"x-request-id", request_id))
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OWN_HEADERS]
                headers += [_VERSION_HEADER, (b"x-request-id", request_id)]
                message = {**message, "headers": headers}
            await send(message)

        await response(scope, receive, send_with_headers)


def _header(response: Response, name: bytes) -> str | None:
    for key, value in response.raw_headers:
        if key == name:
            return value.decode("latin-1")
    return None
