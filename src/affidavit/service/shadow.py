"""Shadow evaluation: the incoming claim sets of recent attestations, kept (opt-in, bounded, per type) so
that a candidate policy can be evaluated on real traffic before anyone sets it (``POST
/policies/{type}:diff``, ``affidavit policy diff``).

Off unless ``serve --shadow-samples N`` is given; then each worker keeps, per attestation type, the last
N claim sets in memory (a deque), as the policy saw them minus the policy's own hash and signer claims.
They hold what the evidence said (measurements, TCB status, runtime data): nothing that is not also in
the tokens the service issued. With several workers each keeps its own sample.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_SHADOW_SAMPLES = 500  # per attestation type and worker; TPM claim sets (event logs) can be ~100 kB
POLICY_CLAIMS = frozenset({"x-ms-policy-hash", "x-ms-policy-signer"})


@dataclass(frozen=True)
class Sample:
    at: datetime
    claims: tuple[Any, ...]  # affidavit.policy.Claim


class ShadowSamples:
    def __init__(self, per_type: int) -> None:
        if not 0 < per_type <= MAX_SHADOW_SAMPLES:
            raise ValueError(f"shadow samples must be 1..{MAX_SHADOW_SAMPLES}")
        self.per_type = per_type
        self._samples: dict[str, deque[Sample]] = {}
        self._lock = threading.Lock()

    def record(self, att_type: str, at: datetime, incoming: Sequence[Any]) -> None:
        claims = tuple(c for c in incoming if c.type not in POLICY_CLAIMS)
        with self._lock:
            ring = self._samples.get(att_type)
            if ring is None:
                ring = self._samples[att_type] = deque(maxlen=self.per_type)
            ring.append(Sample(at, claims))

    def samples(self, att_type: str) -> list[Sample]:
        with self._lock:
            return list(self._samples.get(att_type, ()))
