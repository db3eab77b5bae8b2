"""The pieces of issue 11's outage and limit handling that need no server: StoreView, OutageMonitor, flags."""

from __future__ import annotations

import logging
import time

import pytest

from affidavit.cli import build_parser
from affidavit.cli.serve import config_from_args
from affidavit.service import ServiceError
from affidavit.service.outage import OutageMonitor, StoreView
from affidavit.store import StoreError


class FlakyStore:
    def __init__(self) -> None:
        self.down = False
        self.reads = 0
        self.value = "v1"

    def read(self) -> str:
        self.reads += 1
        if self.down:
            raise StoreError("cannot connect to PostgreSQL: 10.0.0.7:5432 refused", code="unavailable")
        return self.value


def _settle(view: StoreView[str]) -> None:
    for _ in range(200):
        if not view._refreshing:
            return
        time.sleep(0.01)


def test_a_store_view_serves_the_last_good_value_within_the_staleness(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, monitor = FlakyStore(), OutageMonitor()
    view = StoreView(store.read, ttl=0.0, staleness=2.0, monitor=monitor)
    assert view.get() == "v1"
    store.down = True
    with caplog.at_level(logging.WARNING, logger="affidavit.service"):
        for _ in range(10):  # every call starts (at most one) background refresh; all fail
            assert view.get() == "v1"
            _settle(view)
        assert monitor.down("database")
        time.sleep(2.1)
        with pytest.raises(StoreError):  # the last good value is now older than the staleness: 503
            view.get()
        _settle(view)
        store.down, store.value = False, "v2"
        try:  # refused or not depending on whether the refresh this starts has finished
            view.get()
        except StoreError:
            pass
        _settle(view)
        assert view.get() == "v2" and not monitor.down("database")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("database unreachable" in m for m in lines) == 1, lines
    assert sum("database reachable again" in m for m in lines) == 1, lines


def test_a_view_refreshes_in_one_thread_and_it_ends_with_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refreshes are handed to one long-lived thread per view: a new thread per refresh cost the event loop
    ``Thread.start()`` every ``ttl`` (355 µs median, up to 2.2 ms beside a busy signing thread). The thread
    holds its view weakly, so a forgotten view's thread ends."""
    import gc
    import threading

    from affidavit.service import outage

    monkeypatch.setattr(outage, "REFRESHER_IDLE_SECONDS", 0.05, raising=False)
    readers: list[threading.Thread] = []  # the Thread objects themselves: ids of live objects are unique

    def read() -> str:
        readers.append(threading.current_thread())
        return "v"

    view = StoreView(read, ttl=0.0, staleness=60, monitor=OutageMonitor())
    assert view.get() == "v"  # the first read is the caller's own
    for _ in range(20):
        view.get()
        _settle(view)
    background = readers[1:]
    assert len(background) >= 10
    assert len({id(thread) for thread in background}) == 1
    worker = background[0]
    assert worker is not threading.current_thread() and worker.daemon
    del view, background
    gc.collect()
    worker.join(timeout=5)
    assert not worker.is_alive()


def test_a_view_without_a_value_fails_fast_while_the_store_is_down() -> None:
    store = FlakyStore()
    store.down = True
    view = StoreView(store.read, ttl=1.0, staleness=60, monitor=OutageMonitor())
    for _ in range(10):
        with pytest.raises(StoreError):
            view.get()
    assert store.reads == 1  # not one attempt per request


def test_the_limit_flags_are_checked() -> None:
    parse = build_parser().parse_args
    config = config_from_args(parse(["serve", "--policy-limit", "max_claims=500", "--policy-limit",
                                      "max_seconds=0.25", "--max-concurrency", "9"]))
    assert config.policy_limits == {"max_claims": 500, "max_seconds": 0.25}
    assert config.policy_limits_obj.max_claims == 500 and config.connection_limits.max_concurrency == 9
    assert config.store_staleness_seconds == 900
    for bad in (["--policy-limit", "max_cliams=5"], ["--policy-limit", "max_claims=x"],
                ["--policy-limit", "max_claims=0"], ["--header-timeout", "0"], ["--max-connections", "-1"]):
        with pytest.raises(ServiceError):
            config_from_args(parse(["serve", *bad]))
