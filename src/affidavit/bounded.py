"""A dict that forgets its oldest entries past a limit: the one bounded cache of the verification core.

Caches fed by untrusted input (certificates, quotes, event data) must not grow without bound. Entries
leave in insertion order, an eighth of the limit at a time, so a full cache does not pay an eviction per
insertion. Safe to share between threads under the GIL: ``put`` never iterates a dict another thread is
changing (``list(d)`` copies the keys in one C call), and a lost race only drops an entry twice.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(dict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("a bounded cache holds at least one entry")
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        if len(self) >= self.limit:
            for old in list(self)[: max(1, self.limit // 8)]:
                self.pop(old, None)
        self[key] = value
