"""affidavit.bounded.BoundedDict: the one bounded cache (counted, least-recently-used, weighted)."""

from __future__ import annotations

import sys
import threading

import pytest

from affidavit.bounded import BoundedDict


def test_the_oldest_eighth_goes_when_full() -> None:
    d: BoundedDict[int, int] = BoundedDict(16)
    for i in range(16):
        d.put(i, i)
    d.put(16, 16)
    assert sorted(d) == list(range(2, 17))  # 16 // 8 = 2 oldest dropped at once


def test_put_makes_an_entry_the_newest_and_use_keeps_it() -> None:
    d: BoundedDict[str, int] = BoundedDict(2)
    d.put("a", 1)
    d.put("b", 2)
    assert d.use("a") == 1 and d.use("missing") is None
    d.put("c", 3)  # "b" is now the least recently used
    assert dict(d) == {"a": 1, "c": 3}
    d.put("a", 4)  # replacing is no eviction
    assert dict(d) == {"c": 3, "a": 4}
    assert d.get("c") == 3  # get leaves the order alone
    d.put("d", 5)
    assert dict(d) == {"a": 4, "d": 5}


def test_a_weighted_cache_stays_within_its_budget_oldest_first() -> None:
    d: BoundedDict[str, str] = BoundedDict(100, max_weight=10)
    for key, weight in (("a", 4), ("b", 4), ("c", 1)):
        d.put(key, key, weight)
    assert d.weight == 9
    d.use("a")
    d.put("d", "d", 4)  # 13 > 10: "b" (least recently used) goes, "a" stays
    assert list(d) == ["c", "a", "d"] and d.weight == 9
    d.put("a", "a2", 1)  # a replacement's weight replaces the old one
    assert d.weight == 6 and d["a"] == "a2"
    d.put("big", "x", 11)  # heavier than the budget alone: nothing can hold it
    assert "big" not in d and d.weight <= 10


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        BoundedDict(0)
    with pytest.raises(ValueError):
        BoundedDict(1, max_weight=-1)


def test_threads_sharing_an_unweighted_cache() -> None:
    d: BoundedDict[tuple[int, int], int] = BoundedDict(1)
    errors: list[BaseException] = []

    def fill(n: int) -> None:
        try:
            for i in range(20000):
                d.put((n, i), i)
                d.use((n, i - 1))
        except BaseException as exc:  # noqa: BLE001 -- the test reports any
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=fill, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and len(d) <= 1 + 4  # the bound, plus at most one in flight per thread
