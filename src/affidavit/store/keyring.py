"""Signing keys between the store and :class:`affidavit.tokens.KeyRing`.

The database is the source of truth: a server loads the ring on start and again from time to time (its
key-ring reload interval), and at the moment a *next* key becomes current. Private keys are sealed under
the key-encryption key (:mod:`affidavit.store.kek`) or live in a PKCS#11 token
(:mod:`affidavit.store.pkcs11`); only the current and next keys are opened, retired ones are published
from their certificates alone.

Publish before use: :func:`rotate_keyring` stores the new key as *next* with ``current_at = now +
delay``, and schedules the current key's retirement for the same instant. Every server publishes it in
``/certs`` at its next reload and switches to it at ``current_at`` by its own clock, so with a delay
longer than the reload interval plus the relying parties' JWKS refetch interval no relying party sees a
token whose ``kid`` it cannot find. A retired key stays published for ``max_token_lifetime`` after
retirement; the next rotation after that deletes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from affidavit.store.errors import StoreError
from affidavit.store.kek import KeyEncryptionKey, key_associated_data, secret_associated_data
from affidavit.store.model import StoredKey, StoredSecret
from affidavit.store.store import Store
from affidavit.tokens import (
    DEFAULT_MAX_TOKEN_LIFETIME,
    KeyRing,
    NextKey,
    RetiredKey,
    SigningKey,
    SoftwareSigner,
    TokenError,
)

# The default wait between `affidavit keys rotate` and the new key signing: above the default key-ring
# reload interval (30 s) plus any sane relying-party JWKS cache (Affidavit's own refetches after 30 s).
DEFAULT_ROTATION_DELAY = timedelta(hours=1)
TPM_CONTEXT_SECRET = "tpm-service-context"
_SECRET_BYTES = 32


def _key_error(exc: TokenError, kid: str) -> StoreError:
    return StoreError(f"stored signing key {kid}: {exc.message}", code="bad_key")


def to_stored(key: SigningKey, kek: KeyEncryptionKey | None, *,
    current_at: datetime | None = None) -> StoredKey:
    """The row for ``key``: a software key sealed under ``kek``; an HSM key by its location only."""
    sealed = kek_id = None
    location = key.location
    if isinstance(key.signer, SoftwareSigner):
        if kek is None:
            raise StoreError("a key-encryption key is needed to store a signing key", code="key_encryption")
        der = key.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        sealed, kek_id, location = kek.seal(der, key_associated_data(key.kid)), kek.id, "database"
    elif key.signer is None:
        raise StoreError(f"key {key.kid} has no private key to store", code="bad_key")
    when = current_at if current_at is not None else key.created_at
    return StoredKey(key.kid, key.certificate_der, key.created_at, when, None, location, key.algorithm,
                     sealed, kek_id)


def _signer(stored: StoredKey, kek: KeyEncryptionKey | None, hsm: Any) -> Any:
    """The stored key's signer, or None when this process holds no way to it (no KEK, no token)."""
    if stored.location == "database":
        if stored.sealed is None or kek is None:
            return None
        der = kek.open(stored.sealed, key_associated_data(stored.kid), kek_id=stored.kek_id,
                       what=f"signing key {stored.kid}")
        try:
            private = serialization.load_der_private_key(der, password=None,
                unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"stored signing key {stored.kid} is unreadable: {exc}",
                code="bad_key") from None
        if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise StoreError(f"stored signing key {stored.kid} is neither RSA nor EC", code="bad_key")
        return SoftwareSigner(private)
    if hsm is None:
        return None
    return hsm.signer_at(stored.location)


def from_stored(
    stored: StoredKey,
    reuse: KeyRing | None = None,
    *,
    kek: KeyEncryptionKey | None = None,
    hsm: Any = None,
    private: bool = True,
) -> SigningKey:
    """The key, taken from ``reuse`` when it already holds this kid (opening a private key costs time).
    ``private`` False: certificate only (a key that is published but no longer signs)."""
    known = reuse.find(stored.kid) if reuse is not None else None
    if known is not None and (known.signer is not None or not private):
        return known
    try:
        if not stored.certificate and stored.legacy_pem:  # not sealed yet (no KEK given)
            key = SigningKey.from_pem(stored.legacy_pem, created_at=stored.created_at)
            return key if private else SigningKey(key.kid, key.certificate, key.created_at)
        signer = _signer(stored, kek, hsm) if private else None
        return SigningKey.from_certificate(stored.certificate, signer, created_at=stored.created_at)
    except TokenError as exc:
        raise _key_error(exc, stored.kid) from None


def seal_legacy_keys(store: Store, kek: KeyEncryptionKey) -> list[str]:
    """Seal every plaintext key an older Affidavit wrote (first start after the upgrade); return their
    kids. The plaintext is overwritten (SQLite: securely, and the WAL truncated)."""
    done = []
    for stored in store.list_signing_keys():
        if stored.legacy_pem is None or stored.sealed is not None:
            continue
        try:
            key = SigningKey.from_pem(stored.legacy_pem, created_at=stored.created_at)
        except TokenError as exc:
            raise _key_error(exc, stored.kid) from None
        sealed = to_stored(key, kek)
        if store.seal_legacy_key(stored.kid, sealed.certificate, sealed.sealed or b"", kek.id):
            done.append(stored.kid)
    if done:
        store.scrub()
    return done


def load_keyring(
    store: Store,
    *,
    now: datetime,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    reuse: KeyRing | None = None,
    kek: KeyEncryptionKey | None = None,
    hsm: Any = None,
    require_signer: bool = False,
) -> KeyRing | None:
    """The ring at ``now`` (None when no key is current); retired keys past their time are left out.

    Pass the previously loaded ring as ``reuse`` on periodic reloads: unchanged keys are not re-opened.
    ``require_signer``: the current key must be usable here (a server), else ``StoreError`` ``no_signer``.
    """
    keys = store.list_signing_keys()
    current_rows = [k for k in keys if k.state(now) == "current"]
    if not current_rows:
        return None
    current_row = max(current_rows, key=lambda k: k.current_at)
    current = from_stored(current_row, reuse, kek=kek, hsm=hsm)
    if require_signer and current.signer is None:
        raise StoreError(
            f"the current signing key {current.kid} lives at {current_row.location}, which this process "
            + ("cannot open without a key-encryption key" if current_row.location == "database"
               else "cannot reach: configure that token (--signing-key, --pkcs11-module, --pkcs11-pin-file)"),
            code="no_signer",
        )
    upcoming = tuple(
        NextKey(_next_key(k, reuse, kek, hsm, require_signer), k.current_at)
        for k in sorted(keys, key=lambda k: k.current_at)
        if k.state(now) == "next"
    )
    retired = tuple(
        RetiredKey(from_stored(k, reuse, private=False), k.retired_at)
        for k in keys
        if k is not current_row and k.retired_at is not None and k.state(now) == "retired"
        and now < k.retired_at + max_token_lifetime
    )
    return KeyRing(current, retired, max_token_lifetime, upcoming)


def _next_key(stored: StoredKey, reuse: KeyRing | None, kek: KeyEncryptionKey | None, hsm: Any,
              private: bool) -> SigningKey:
    """A next key, opened ahead of its turn when it can be; one this server cannot open yet (a token not
    configured here) is still published, and the switch to it is where the server will say so."""
    if private:
        try:
            return from_stored(stored, reuse, kek=kek, hsm=hsm)
        except StoreError:
            pass
    return from_stored(stored, reuse, private=False)


@dataclass(frozen=True)
class KeyMaker:
    """How this deployment makes new signing keys: in software (sealed under the KEK into the database),
    or on the PKCS#11 token ``hsm`` (an :class:`affidavit.store.pkcs11.Pkcs11Token`)."""

    issuer: str
    algorithm: str = "RS256"
    bits: int = 2048
    hsm: Any = None

    def make(self, now: datetime, label: str | None = None) -> SigningKey:
        if self.hsm is None:
            return SigningKey.generate(self.issuer, self.bits, now=now, algorithm=self.algorithm)  # type: ignore[arg-type]
        label = label or f"affidavit-{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        signer = self.hsm.generate(label, self.algorithm, self.bits)
        return SigningKey.for_signer(self.issuer, signer, now=now)

    def existing(self, label: str, now: datetime) -> SigningKey:
        """A key already on the token (the operator made it), with a certificate the token signs now."""
        return SigningKey.for_signer(self.issuer, self.hsm.signer(label), now=now)


def load_or_create_keyring(
    store: Store,
    issuer: str,
    bits: int = 2048,
    *,
    now: datetime,
    kek: KeyEncryptionKey | None,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    reuse: KeyRing | None = None,
    hsm: Any = None,
    maker: KeyMaker | None = None,
) -> KeyRing:
    """Load the ring, generating the first key (with ``maker``, default a software RS256 key) if the
    database has none. Servers starting at once may each generate a candidate, but the store keeps
    exactly one and all of them load that one."""
    ring = load_keyring(store, now=now, max_token_lifetime=max_token_lifetime, reuse=reuse, kek=kek, hsm=hsm,
                        require_signer=True)
    if ring is not None:
        return ring
    keys = store.list_signing_keys()
    if keys:
        first = min(k.current_at for k in keys)
        if first > now:  # the first key, stamped by a server whose clock reading came a moment later
            ring = load_keyring(store, now=first, max_token_lifetime=max_token_lifetime, kek=kek, hsm=hsm,
                                require_signer=True)
        if ring is None:
            raise StoreError("the database holds signing keys but none is current", code="no_signer")
        return ring
    maker = maker or KeyMaker(issuer, bits=bits, hsm=hsm)
    winner = store.ensure_current_signing_key(to_stored(maker.make(now), kek), at=now)
    # another server's first key may be stamped a moment after our clock reading
    ring = load_keyring(store, now=max(now, winner.current_at), max_token_lifetime=max_token_lifetime,
        kek=kek, hsm=hsm,
                        require_signer=True)
    assert ring is not None  # a current key exists now and keys are never un-retired
    return ring


def rotate_keyring(
    store: Store,
    issuer: str,
    bits: int = 2048,
    *,
    now: datetime,
    kek: KeyEncryptionKey | None,
    delay: timedelta = DEFAULT_ROTATION_DELAY,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    actor: str = "system",
    maker: KeyMaker | None = None,
    key: SigningKey | None = None,
) -> KeyRing:
    """Store a new key (``key``, else one from ``maker``) as *next*, current ``delay`` from now (zero: at
    once, an emergency rotation that accepts relying parties' ``unknown kid`` window); the current key
    retires then. Deletes keys retired longer than the lifetime. Returns the ring at ``now``."""
    if delay < timedelta(0):
        raise StoreError("the rotation delay must not be negative", code="bad_request")
    maker = maker or KeyMaker(issuer, bits=bits)
    new = key or maker.make(now)
    if store.current_signing_key(now) is None:
        delay = timedelta(0)  # the first key: nothing signs yet, so nothing to wait for
    store.rotate_signing_key(to_stored(new, kek, current_at=now + delay), actor=actor, at=now,
                             unique_location=new.location != "database")
    store.delete_signing_keys_retired_before(now - max_token_lifetime, actor=actor, at=now)
    ring = load_keyring(store, now=now, max_token_lifetime=max_token_lifetime, kek=kek, hsm=maker.hsm)
    assert ring is not None
    return ring


def load_or_create_secret(store: Store, name: str, kek: KeyEncryptionKey, *, now: datetime) -> bytes:
    """A random 32-byte service secret shared by every server on the database, sealed under the KEK."""
    stored = store.get_secret(name)
    if stored is None:
        fresh = secrets.token_bytes(_SECRET_BYTES)
        stored = store.ensure_secret(
            StoredSecret(name, kek.seal(fresh, secret_associated_data(name)), kek.id, now)
        )
    return kek.open(stored.sealed, secret_associated_data(name), kek_id=stored.kek_id, what=f"secret {name}")
