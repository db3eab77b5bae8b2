"""What the store holds, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from affidavit.timefmt import db_time, parse_db_time


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
    caller: str | None = None
    signer: str | None = None


@dataclass(frozen=True)
class StoredKey:
    """A token-signing key at rest. ``certificate`` is its DER (public); the private half is ``sealed``
    (AES-256-GCM under the key-encryption key ``kek_id``, see :mod:`affidavit.store.kek`) when
    ``location`` is ``database``, or stays in the PKCS#11 token the ``location`` URI names. ``legacy_pem``
    is a plaintext key written by an Affidavit before 0.2; the first start seals it and clears it.

    States at a time ``t`` (:meth:`state`): *next* before ``current_at``, *current* from then until
    ``retired_at`` (None: not scheduled), *retired* after.
    """

    kid: str
    certificate: bytes
    created_at: datetime
    current_at: datetime
    retired_at: datetime | None = None
    location: str = "database"
    algorithm: str = "RS256"
    sealed: bytes | None = None
    kek_id: str | None = None
    legacy_pem: bytes | None = None

    def state(self, at: datetime) -> str:
        if self.retired_at is not None and self.retired_at <= at:
            return "retired"
        return "next" if at < self.current_at else "current"


@dataclass(frozen=True)
class StoredSecret:
    """A service secret (the TPM ``service_context`` key) sealed like the signing keys."""

    name: str
    sealed: bytes
    kek_id: str
    created_at: datetime


def to_db_time(when: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order on every backend (``timefmt.db_time``;
    a naive time is a ValueError)."""
    return db_time(when)


def from_db_time(text: str) -> datetime:
    return parse_db_time(text)
