"""Several worker processes behind one port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's multi-worker mode shares one listening socket between its workers: the worker that wakes first
accepts a whole burst of connections, and keep-alive clients stay pinned to it, so under load one core
serves while the others idle (measured with bench/attest.py: 2 workers, 1.0 core busy). With one socket
per worker bound with SO_REUSEPORT the kernel spreads new connections over the workers by their
addresses, so every core serves.

The supervisor is deliberately small: it starts the workers, forwards SIGTERM and SIGINT to them, and when
one dies on its own it stops the others and exits non-zero, leaving restarts to the process manager
(systemd, Kubernetes) that should be watching a service anyway.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from multiprocessing.connection import wait
from typing import Any

STOP_TIMEOUT = 15.0  # seconds a worker gets to finish after SIGTERM before it is killed


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: one the OS picks; read it with ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, uvicorn_options: dict[str, Any]) -> None:
    import uvicorn

    sock = bind(host, port)
    uvicorn.Server(uvicorn.Config(**uvicorn_options)).run(sockets=[sock])


def run_workers(count: int, host: str, port: int, uvicorn_options: dict[str, Any]) -> int:
    """Run ``count`` uvicorn workers on ``host:port`` until signalled; returns the command's exit code."""
    bind(host, port).close()  # fail here, once, with the OS's reason if the address is unusable
    ctx = multiprocessing.get_context("spawn")  # workers import the app afresh, as uvicorn's do
    workers = [ctx.Process(target=_worker, args=(host, port, uvicorn_options)) for _ in range(count)]
    stopping = False

    def stop(_signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.pid is not None and w.exitcode is None:
                try:
                    os.kill(w.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    crashed = False
    try:
        for w in workers:
            w.start()
        running = {w.sentinel for w in workers}
        while running:
            running -= set(wait(list(running)))
            if running and not stopping:  # a worker ended on its own: take the rest down as well
                crashed = True
                stop()
        for w in workers:
            w.join(STOP_TIMEOUT)
            if w.exitcode is None:
                w.kill()
                w.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 1 if crashed else 0
