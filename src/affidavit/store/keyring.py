"""Signing keys between the store and :class:`affidavit.tokens.KeyRing`.

The database is the source of truth: a server loads the ring on start and again from time to time (the
service's reload interval), so every server on one database publishes the same JWKS and signs with the
same current key shortly after a rotation. A retired key stays published for ``max_token_lifetime`` after
retirement; keep the reload interval well below that.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from affidavit.store.model import StoredKey
from affidavit.store.store import Store
from affidavit.tokens import DEFAULT_MAX_TOKEN_LIFETIME, KeyRing, RetiredKey, SigningKey


def to_stored(key: SigningKey) -> StoredKey:
    return StoredKey(key.kid, key.to_pem(), key.created_at)


def from_stored(stored: StoredKey, reuse: KeyRing | None = None) -> SigningKey:
    """The key, taken from ``reuse`` when it already holds this kid (loading a private key costs time)."""
    known = reuse.find(stored.kid) if reuse is not None else None
    if known is not None:
        return known
    return SigningKey.from_pem(stored.pem, created_at=stored.created_at)


def load_keyring(
    store: Store,
    *,
    now: datetime,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    reuse: KeyRing | None = None,
) -> KeyRing | None:
    """The ring as stored (None when there is no current key); retired keys past their time are left out.

    Pass the previously loaded ring as ``reuse`` on periodic reloads: unchanged keys are not re-parsed.
    """
    keys = store.list_signing_keys()
    current = next((k for k in keys if k.retired_at is None), None)
    if current is None:
        return None
    retired = tuple(
        RetiredKey(from_stored(k, reuse), k.retired_at)
        for k in keys
        if k.retired_at is not None and now < k.retired_at + max_token_lifetime
    )
    return KeyRing(from_stored(current, reuse), retired, max_token_lifetime)


def load_or_create_keyring(
    store: Store,
    issuer: str,
    bits: int = 2048,
    *,
    now: datetime,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    reuse: KeyRing | None = None,
) -> KeyRing:
    """Load the ring, generating the first key if the database has none. Servers starting at once may each
    generate a candidate, but the store keeps exactly one and all of them load that one."""
    ring = load_keyring(store, now=now, max_token_lifetime=max_token_lifetime, reuse=reuse)
    if ring is not None:
        return ring
    store.ensure_current_signing_key(to_stored(SigningKey.generate(issuer, bits, now=now)), at=now)
    ring = load_keyring(store, now=now, max_token_lifetime=max_token_lifetime)
    assert ring is not None  # a current key exists now and keys are never un-retired
    return ring


def rotate_keyring(
    store: Store,
    issuer: str,
    bits: int = 2048,
    *,
    now: datetime,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    actor: str = "system",
) -> KeyRing:
    """Make a new current key, retire the old one, and delete keys retired longer than the lifetime."""
    store.rotate_signing_key(to_stored(SigningKey.generate(issuer, bits, now=now)), actor=actor, at=now)
    store.delete_signing_keys_retired_before(now - max_token_lifetime, actor=actor, at=now)
    ring = load_keyring(store, now=now, max_token_lifetime=max_token_lifetime)
    assert ring is not None
    return ring
