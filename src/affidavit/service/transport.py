"""Each HTTP response leaves in one write: a replica that dies mid-response never leaves a client (or a
load balancer) holding a status line and headers without the body.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the body with
``http.response.body``: two ``send()`` calls. A worker killed between them (SIGKILL, the OOM killer, a
node failure) leaves the peer with a started response that no proxy may retry, since the server has
answered. Measured with tests/service/test_ha.py: about one run in three saw such a truncated 200 when a
replica was killed under load. :class:`CoalescingTransport` collects what the protocol writes during one
event-loop step and hands it to the socket in one call at the end of the step, so a small response is
either entirely in the kernel's send buffer or not sent at all, and a request without an answer is one a
load balancer replays elsewhere (``retry-on empty-response``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from affidavit.service.connections import BoundedHttpToolsProtocol


class CoalescingTransport:
    """A transport proxy: writes made in one event-loop step go out as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(BoundedHttpToolsProtocol):
    """The service's protocol (``affidavit serve``): uvicorn's httptools protocol with the read timeouts
    and connection cap of :class:`BoundedHttpToolsProtocol`, over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
