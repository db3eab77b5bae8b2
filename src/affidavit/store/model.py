"""What the store holds, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class StoredPolicy:
    """A policy set for one attestation type. ``jws`` is the token text exactly as the client sent it."""

    att_type: str
    text: str
    jws: str
    signer_cert_der: bytes | None
    hash: str
    updated_at: datetime


@dataclass(frozen=True)
class Change:
    """One row of the audit history. ``kind`` is ``policy``, ``certificate`` or ``key``; ``subject`` is the
    attestation type, the certificate's SHA-1 thumbprint (upper-case hex) or the key id."""

    kind: str
    subject: str
    action: str
    hash: str | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class PolicyChange:
    """A policy history entry; ``action`` is ``set`` (``hash`` = policy hash) or ``reset`` (``hash`` None).
    ``text`` and ``jws`` are the policy as set and the JWS it came in (None for a reset, and for entries
    written before the store kept them); ``id`` orders entries across servers."""

    att_type: str
    action: str
    hash: str | None
    actor: str
    at: datetime
    text: str | None = None
    jws: str | None = None
    id: int = 0


@dataclass(frozen=True)
class StoredKey:
    """A token-signing key at rest: ``pem`` is :meth:`affidavit.tokens.SigningKey.to_pem` output (the
    private key is unencrypted: protect the database). ``retired_at`` None marks the current key."""

    kid: str
    pem: bytes
    created_at: datetime
    retired_at: datetime | None = None


def to_db_time(when: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order on every backend."""
    if when.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_db_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
