"""The explicit bounds on compiling and evaluating one policy, so no request can pin a worker.

Each limit has a name; exceeding it raises :class:`PolicyLimitError` (a ``PolicyEvaluationError``, so
the service answers 400 ``PolicyEvaluationError``) whose message and ``limit`` attribute name it. The
defaults sit far above what real policies need (MAA's published policies stay under 100 claims, 1,000
comparisons and 50 issued values; the largest value real policies issue is a TPM log's ``events`` JSON,
208 KB for the largest real log in the test vectors, 219 KB in a real MAA token; claim names stay under
100 characters) and far below what would take a second of CPU or grow a token past a few MB. The
wall-time limit is the backstop for work the counters do not see; it reads a monotonic clock, which makes
it the one non-deterministic part of evaluation (a resource guard, never a policy decision).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from affidavit.policy.errors import PolicyEvaluationError


@dataclass(frozen=True)
class PolicyLimits:
    """Bounds for one compilation / evaluation (``affidavit serve --policy-max-...``)."""

    max_claims: int = 20_000  # claims in the evaluation's set: incoming plus everything rules add
    max_comparisons: int = 2_000_000  # claim tests against condition values, summed over the evaluation
    max_issued: int = 10_000  # values issued to the token (issue), summed over all types
    max_name_chars: int = 1024  # length of an issued claim's type (its name in the token)
    max_value_chars: int = 1 << 20  # length of one issued String value
    max_issued_chars: int = 1 << 22  # issued types and String values, summed over every issued value
    max_computed_chars: int = 16 << 20  # Strings the functions return, summed over the evaluation
    max_nesting: int = 32  # depth of nested function calls in an expression
    max_text_chars: int = 1 << 20  # policy text length (a draft or a stored policy)
    max_seconds: float = 1.0  # wall time of one evaluation, and of one compilation

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"policy limit {f.name} must be positive")

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_LIMITS = PolicyLimits()


class PolicyLimitError(PolicyEvaluationError):
    """A policy exceeded one of :class:`PolicyLimits`; ``limit`` is the field's name."""

    def __init__(self, limit: str, value: float, what: str, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        shown = str(value) if isinstance(value, int) else f"{value:g}"  # 4194304, not 4.1943e+06
        super().__init__(f"{prefix}policy limit {limit}={shown} exceeded: {what}")
        self.limit, self.value, self.what = limit, value, what

    def at(self, where: str) -> PolicyLimitError:
        """The same refusal, located at a rule."""
        return PolicyLimitError(self.limit, self.value, self.what, where)


def compile_too_slow(limit: float) -> PolicyLimitError:
    return PolicyLimitError("max_seconds", limit, "compiling the policy took too long")
