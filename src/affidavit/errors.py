"""The root of Affidavit's error types.

Each layer (evidence, collateral, policy, tokens, store, service, client) defines one subclass; every
failure that crosses a layer boundary is an instance of it, carrying a stable machine-readable ``code``
and a message a person can act on. Nothing else is meant to escape a layer.
"""

from __future__ import annotations


class AffidavitError(Exception):
    """Base of every error Affidavit raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
