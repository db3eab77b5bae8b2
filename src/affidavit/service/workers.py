"""Several worker processes behind one port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's multi-worker mode shares one listening socket between its workers: the worker that wakes first
accepts a whole burst of connections, and keep-alive clients stay pinned to it, so under load one core
serves while the others idle (measured with bench/attest.py: 2 workers, 1.0 core busy). With one socket
per worker bound with SO_REUSEPORT the kernel spreads new connections over the workers by their
addresses, so every core serves.

The supervisor is deliberately small: it starts the workers, forwards SIGTERM and SIGINT to them, and
replaces a worker that dies on its own (the kernel's OOM killer, a crash) with a fresh one on the same
port, so the others keep serving and the service never goes away. A worker that dies within
``FAST_DEATH`` seconds of starting is replaced after a delay that doubles each time (up to
``MAX_RESTART_DELAY``), so a worker that cannot start does not spin the CPU; after ``MAX_FAST_DEATHS``
such deaths in a row the supervisor gives up and exits 1 for the process manager.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from typing import Any, cast

STOP_TIMEOUT = 15.0  # seconds a worker gets to finish after SIGTERM before it is killed
FAST_DEATH = 10.0  # a worker dying sooner than this after its start is restarted with a growing delay
MAX_RESTART_DELAY = 30.0
MAX_FAST_DEATHS = 8

log = logging.getLogger("affidavit.service")


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
    """Run ``count`` uvicorn workers on ``host:port`` until signalled, replacing any that dies; returns
    the command's exit code (0 after a signal, 1 when workers keep dying at start)."""
    bind(host, port).close()  # fail here, once, with the OS's reason if the address is unusable
    ctx = multiprocessing.get_context("spawn")  # workers import the app afresh, as uvicorn's do

    def spawn() -> Any:
        w = ctx.Process(target=_worker, args=(host, port, uvicorn_options))
        w.start()
        started[w.sentinel] = time.monotonic()
        return w

    workers: dict[int, Any] = {}  # sentinel -> process
    started: dict[int, float] = {}
    stopping = False

    def stop(_signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for w in list(workers.values()):
            if w.pid is not None and w.exitcode is None:
                try:
                    os.kill(w.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    fast_deaths = 0
    gave_up = False
    try:
        for _ in range(count):
            w = spawn()
            workers[w.sentinel] = w
        while workers and not stopping:
            for sentinel in wait(list(workers), timeout=1.0):
                key = cast(int, sentinel)  # wait() returns the sentinels it was given
                dead = workers.pop(key)
                dead.join()
                lived = time.monotonic() - started.pop(key, 0.0)
                if stopping:
                    continue
                fast_deaths = fast_deaths + 1 if lived < FAST_DEATH else 0
                if fast_deaths > MAX_FAST_DEATHS:
                    log.error("worker %s died %d times right after starting; stopping", dead.pid, fast_deaths)
                    gave_up = True
                    stop()
                    break
                delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (fast_deaths - 1)) if fast_deaths else 0.0
                log.error("worker %s exited with %s after %.0f s; starting a replacement%s", dead.pid,
                          dead.exitcode, lived, f" in {delay:.1f} s" if delay else "")
                if delay:
                    time.sleep(delay)
                if not stopping:
                    w = spawn()
                    workers[w.sentinel] = w
        for w in workers.values():
            w.join(STOP_TIMEOUT)
            if w.exitcode is None:
                w.kill()
                w.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 1 if gave_up else 0
