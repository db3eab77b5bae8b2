"""A dict that forgets its oldest entries past a limit: the one bounded cache of the code base.

Caches fed by untrusted input (certificates, quotes, event data, policies, failed upstream items) must not
grow without bound. ``put`` stores an entry as the newest; past ``limit`` entries the oldest go, an eighth
of the limit at a time (or more, back to below the limit), so a full cache does not pay an eviction per
insertion. ``use`` reads an entry
and makes it the newest, for least-recently-used order; a plain ``get`` leaves the order alone. With
``max_weight``, each ``put`` carries a weight (the policy compiler's estimated bytes) and the oldest
entries go, one at a time, until the total (``weight``) is within it.

Unweighted, it is safe to share between threads under the GIL: ``put`` never iterates a dict another
thread is changing (``list(d)`` copies the keys in one C call), and a lost race only drops an entry twice
or computes one twice. A weighted cache keeps a running total, so its owner serialises ``put`` and
``use`` (the policy compiler holds a lock). Entries leave through ``put`` or ``dict.pop``; ``d[k] = v``
skips the bound (don't).
"""

from __future__ import annotations

from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class BoundedDict(dict[K, V]):
    def __init__(self, limit: int, *, max_weight: int | None = None) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("a bounded cache holds at least one entry")
        if max_weight is not None and max_weight < 0:
            raise ValueError("a weight budget is not negative")
        self.limit = limit
        self.max_weight = max_weight
        self.weight = 0  # the sum of the entries' weights (weighted caches only)
        self._weights: dict[K, int] = {}

    def put(self, key: K, value: V, weight: int = 0) -> None:
        """Store ``value`` as the newest entry (replacing ``key``'s), evicting the oldest past the bounds."""
        if key in self:
            self._drop(key)
        elif len(self) >= self.limit:  # down to below the limit (racing threads may have overfilled it)
            for old in list(self)[: max(len(self) - self.limit + 1, self.limit // 8)]:
                self._drop(old)
        self[key] = value
        if self.max_weight is not None:
            self._weights[key] = weight
            self.weight += weight
            while self.weight > self.max_weight and self:
                self._drop(next(iter(self)))

    def use(self, key: K) -> V | None:
        """The value of ``key`` (None when absent), now the newest entry: least-recently-used order."""
        value = dict.pop(self, key, _MISSING)
        if value is _MISSING:
            return None
        self[key] = value
        return value  # type: ignore[no-any-return]

    def _drop(self, key: K) -> None:
        if dict.pop(self, key, _MISSING) is not _MISSING and self.max_weight is not None:
            self.weight -= self._weights.pop(key, 0)
