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
    attestation type, the certificate's SHA-1 thumbprint (upper-case hex) or the key id. ``caller`` is
    the authenticated management caller (``service.auth.Caller.id``: ``admin-token``,
    ``oidc:<iss>#<sub>``), ``signer`` the JWS signer (``<SHA-1 thumbprint> <subject>``); either is None
    where it does not apply (an unsigned policy, a key rotation, rows written before schema 2)."""

    kind: str
    subject: str
    action: str
    hash: str | None
    actor: str
    at: datetime
    caller: str | None = None
    signer: str | None = None


@dataclass(frozen=True)
class PolicyChange:
    """A policy history entry; ``action`` is ``set`` (``hash`` = policy hash) or ``reset`` (``hash`` None)."""

    att_type: str
    action: str
    hash: str | None
    actor: str
    at: datetime
    caller: str | None = None
    signer: str | None = None


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
