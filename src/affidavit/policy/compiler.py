"""A cache of compiled policies keyed by policy hash, owned by its caller (the service keeps one).

The cache is bounded by the memory its entries take, not by their number: a compiled policy takes up
to about ``BYTES_PER_CHAR`` bytes per character of its text (rules, closures, AST nodes; tracemalloc
measured 6 to 54 MB for 1 MiB policies of different shapes, 54 for one-token rules), so 256 entries of
1 MiB could be 16 GB while 256 of 2 KiB are 35 MB. Drafts (``keep=False``) are compiled for one
evaluation and never stored, so a stream of distinct drafts cannot grow a worker.
"""

from __future__ import annotations

import threading

from affidavit.bounded import BoundedDict
from affidavit.policy.hashing import policy_hash
from affidavit.policy.limits import DEFAULT_LIMITS, PolicyLimits
from affidavit.policy.model import CompiledPolicy
from affidavit.policy.parser import compile_policy

BYTES_PER_CHAR = 64
ENTRY_OVERHEAD = 8192
DEFAULT_MAX_BYTES = 64 << 20


def compiled_size(text: str) -> int:
    """The estimated memory of ``text`` compiled (what the cache budget counts)."""
    return ENTRY_OVERHEAD + BYTES_PER_CHAR * len(text)


class PolicyCompiler:
    """Compiles each distinct policy text once; least recently used entries go beyond ``max_bytes``
    (estimated, :func:`compiled_size`; one at a time) or ``max_entries`` (an eighth at a time): an
    ``affidavit.bounded.BoundedDict`` weighted by size."""

    def __init__(
        self,
        max_entries: int = 256,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        limits: PolicyLimits | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.limits = limits or DEFAULT_LIMITS
        # least recently used first; weighed by compiled_size; the lock serialises the weighted cache
        self._cache: BoundedDict[tuple[str, bool], CompiledPolicy] = BoundedDict(
            max_entries, max_weight=max_bytes
        )
        self._lock = threading.Lock()

    def compile(self, text: str, *, lenient: bool = False, keep: bool = True) -> CompiledPolicy:
        """The compiled ``text``: from the cache, or compiled now (and cached unless ``keep`` is false,
        as for draft policies, or the policy alone is larger than the whole budget)."""
        key = (policy_hash(text) if isinstance(text, str) else "", lenient)
        with self._lock:
            hit = self._cache.use(key)
        if hit is not None and hit.text == text:
            return hit
        compiled = compile_policy(text, lenient=lenient, limits=self.limits)
        size = compiled_size(compiled.text)
        if not keep or size > self.max_bytes:
            return compiled
        with self._lock:
            self._cache.put(key, compiled, size)
        return compiled

    def cached(self, text: str, *, lenient: bool = False) -> CompiledPolicy | None:
        """The compiled ``text`` if it is in the cache (never compiles: for callers that must not block)."""
        key = (policy_hash(text) if isinstance(text, str) else "", lenient)
        with self._lock:
            hit = self._cache.use(key)
        return hit if hit is not None and hit.text == text else None

    @property
    def cached_bytes(self) -> int:
        """The estimated memory the cached entries take."""
        return self._cache.weight

    def __len__(self) -> int:
        return len(self._cache)
