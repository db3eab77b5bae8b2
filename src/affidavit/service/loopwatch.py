"""How long the event loop is kept from answering: a cheap in-worker stall monitor.

A worker's event loop serves every connection of the worker, so anything that holds it (a long callback,
a thread holding the GIL, a synchronous database read) delays every request in flight. The monitor arms
a one-shot timer every ``interval`` seconds and measures how late its callback runs: a loop that is
waiting in ``epoll`` runs it at once, a loop that is busy runs it when the busy callback ends, so the
lateness of a tick is the remaining length of whatever held the loop when the tick fell due. Stalls
longer than the interval are always seen; shorter ones are sampled (every request's own share of the
loop is one of them), and over a run of seconds the longest one measured approaches the longest one there
was.

Two corrections keep the figure about the service rather than the machine:

- the timer is a Linux ``timerfd`` (a high-resolution kernel timer, watched by the loop like any file
  descriptor): ``loop.call_later`` would add up to a millisecond of its own, since uvloop's timers count
  whole milliseconds. Elsewhere ``call_later`` is used and the figure is that much coarser;
- time the loop thread spent runnable but not running, because the operating system gave the core to
  another process (``/proc/thread-self/schedstat``, second field), is subtracted: on a shared machine that
  is the neighbours' load, not a stall of the service. Time spent waiting for the GIL is not subtracted:
  it is a stall the service causes.

Each tick is observed into ``affidavit_event_loop_stall_seconds`` (a histogram, so any worker's scrape
shows every worker's distribution) and the longest since the worker started is kept in
:attr:`LoopStallMonitor.max_stall` (``affidavit_event_loop_stall_max_seconds``). A tick costs about
15 microseconds.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("affidavit.service")

INTERVAL = 0.005  # seconds between ticks: 200 a second, about 0.3% of a core
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """A one-shot CLOCK_MONOTONIC ``timerfd`` (Linux), armed through libc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = int(fd)
        self._spec = _Itimerspec()

    def arm(self, seconds: float) -> None:
        ns = int(seconds * 1e9)
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(ns, 1_000_000_000)
        if self._settime(self.fd, 0, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


def _runqueue_reader() -> Callable[[], float] | None:
    """Seconds the calling thread has waited on a run queue so far (None where the kernel does not say)."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None

    def waited() -> float:
        try:
            return int(os.pread(fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    waited.fd = fd  # type: ignore[attr-defined]
    return waited


class LoopStallMonitor:
    """Measures the loop's stalls (module docstring); ``observe`` receives each tick's stall in seconds."""

    def __init__(self, interval: float = INTERVAL, observe: Callable[[float], None] | None = None) -> None:
        self.interval = interval
        self.observe = observe
        self.max_stall = 0.0
        self.ticks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: _TimerFd | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._waited: Callable[[], float] | None = None
        self._due = 0.0
        self._wait0 = 0.0

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start ticking on ``loop`` (the running one); call it from the loop's own thread."""
        self._loop = loop or asyncio.get_running_loop()
        self._waited = _runqueue_reader()  # the loop thread's own statistics
        try:
            self._timer = _TimerFd()
            self._loop.add_reader(self._timer.fd, self._tick)
        except (OSError, AttributeError, NotImplementedError):  # not Linux: a coarser loop timer
            if self._timer is not None:
                self._timer.close()
            self._timer = None
        self._arm()

    def stop(self) -> None:
        if self._loop is not None and self._timer is not None:
            self._loop.remove_reader(self._timer.fd)
            self._timer.close()
        if self._handle is not None:
            self._handle.cancel()
        fd = getattr(self._waited, "fd", None)
        if fd is not None:
            os.close(fd)
        self._loop = self._timer = self._handle = self._waited = None

    def _arm(self) -> None:
        self._wait0 = self._waited() if self._waited is not None else 0.0
        self._due = time.perf_counter() + self.interval
        if self._timer is not None:
            self._timer.arm(self.interval)
        elif self._loop is not None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        late = time.perf_counter() - self._due
        if self._timer is not None:
            self._timer.clear()
        if self._waited is not None:
            late -= self._waited() - self._wait0
        stall = max(0.0, late)
        self.ticks += 1
        if stall > self.max_stall:
            self.max_stall = stall
        if self.observe is not None:
            try:
                self.observe(stall)
            except Exception:  # noqa: BLE001 -- a metrics failure must not stop the monitor
                log.exception("recording an event-loop stall failed")
        if self._loop is not None:
            self._arm()


__all__ = ["INTERVAL", "LoopStallMonitor"]
