"""The policy layer's error types (one base, two MAA codes)."""

from __future__ import annotations

from affidavit.errors import AffidavitError


class PolicyError(AffidavitError):
    """Base of every error the policy layer raises."""

    code = "PolicyError"


class PolicyParsingError(PolicyError):
    """The policy text is not a valid policy; ``line``/``column`` are 1-based (0 when unknown)."""

    code = "PolicyParsingError"

    def __init__(self, message: str, *, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class PolicyEvaluationError(PolicyError):
    """A rule failed while evaluating (bad JSON, type mismatch, bounds) or authorization was refused."""

    code = "PolicyEvaluationError"
