"""A cache of compiled policies keyed by policy hash, owned by its caller (the service keeps one)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from affidavit.policy.hashing import policy_hash
from affidavit.policy.model import CompiledPolicy
from affidavit.policy.parser import compile_policy


class PolicyCompiler:
    """Compiles each distinct policy text once; least recently used entries go beyond ``max_entries``."""

    def __init__(self, max_entries: int = 256) -> None:
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, bool], CompiledPolicy] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, text: str, *, lenient: bool = False) -> CompiledPolicy:
        key = (policy_hash(text) if isinstance(text, str) else "", lenient)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit.text == text:
                self._cache.move_to_end(key)
                return hit
        compiled = compile_policy(text, lenient=lenient)
        with self._lock:
            self._cache[key] = compiled
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return compiled

    def __len__(self) -> int:
        return len(self._cache)
