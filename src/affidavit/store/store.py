"""The store: policies with their history, policy-management certificates, and token-signing keys.

Every change is one transaction that also writes its history row, so a failure at any point leaves the
previous state whole. Several ``Store`` objects (several servers) may share one database; they see the
same state, and writers serialise on the database's lock. Methods are synchronous and thread-safe; an
async caller runs them in a worker thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from affidavit.policy.hashing import policy_hash
from affidavit.store.backend import Backend, Cursor, connect
from affidavit.store.model import (
    Change,
    PolicyChange,
    StoredKey,
    StoredPolicy,
    from_db_time,
    to_db_time,
)
from affidavit.store.schema import migrate


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


def thumbprint(der: bytes) -> str:
    """The certificate's SHA-1 thumbprint as MAA prints it (upper-case hex)."""
    return hashlib.sha1(der).hexdigest().upper()


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class Store:
    """Open with :func:`open_store`. Times default to the real clock; pass ``at`` to fix them."""

    def __init__(self, backend: Backend) -> None:
        self._db = backend
        migrate(backend)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        """One trivial query (readiness probes); raises StoreError when the database does not answer."""
        self._db.query("SELECT 1")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- history -------------------------------------------------------------------------------------

    def _record(
        self, cur: Cursor, kind: str, subject: str, action: str, hash_: str | None, actor: str, at: datetime
    ) -> None:
        cur.execute(
            "INSERT INTO history (kind, subject, action, hash, actor, at) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, subject, action, hash_, actor, to_db_time(at)),
        )

    def history(self, kind: str | None = None, subject: str | None = None) -> list[Change]:
        """Audit rows, oldest first, optionally for one kind (and subject)."""
        sql = "SELECT kind, subject, action, hash, actor, at FROM history"
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.query(sql + " ORDER BY id", params)
        return [Change(r[0], r[1], r[2], r[3], r[4], from_db_time(r[5])) for r in rows]

    # -- policies ------------------------------------------------------------------------------------

    def get_policy(self, att_type: str) -> StoredPolicy | None:
        """The policy set for ``att_type``, or None when the built-in default applies."""
        rows = self._db.query(
            "SELECT text, jws, signer_cert, hash, updated_at FROM policies WHERE att_type = ?", (att_type,)
        )
        if not rows:
            return None
        text, jws, cert, hash_, updated = rows[0]
        return StoredPolicy(att_type, text, jws, _bytes(cert), hash_, from_db_time(updated))

    def set_policy(
        self,
        att_type: str,
        text: str,
        *,
        jws: str,
        signer_cert_der: bytes | None,
        actor: str,
        at: datetime | None = None,
    ) -> StoredPolicy:
        """Store ``text`` (already validated by the caller) with the JWS it came in, and log it."""
        when = _now(at)
        stored = StoredPolicy(att_type, text, jws, signer_cert_der, policy_hash(text), when)
        with self._db.write() as cur:
            cur.execute(
                """INSERT INTO policies (att_type, text, jws, signer_cert, hash, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (att_type) DO UPDATE SET text = excluded.text, jws = excluded.jws,
                     signer_cert = excluded.signer_cert, hash = excluded.hash,
                     updated_at = excluded.updated_at""",
                (att_type, text, jws, signer_cert_der, stored.hash, to_db_time(when)),
            )
            self._record(cur, "policy", att_type, "set", stored.hash, actor, when)
        return stored

    def reset_policy(self, att_type: str, *, actor: str, at: datetime | None = None) -> bool:
        """Return to the default policy; logged even when none was set. True if a policy was removed."""
        when = _now(at)
        with self._db.write() as cur:
            removed = cur.execute("DELETE FROM policies WHERE att_type = ?", (att_type,)) > 0
            self._record(cur, "policy", att_type, "reset", None, actor, when)
        return removed

    def policy_history(self, att_type: str) -> list[PolicyChange]:
        return [
            PolicyChange(c.subject, c.action, c.hash, c.actor, c.at)
            for c in self.history("policy", att_type)
        ]

    # -- policy management certificates --------------------------------------------------------------

    def list_certificates(self) -> list[bytes]:
        """DER of every registered certificate, in the order they were added."""
        rows = self._db.query("SELECT der FROM certificates ORDER BY added_at, thumbprint")
        return [bytes(r[0]) for r in rows]

    def add_certificate(self, der: bytes, *, actor: str, at: datetime | None = None) -> bool:
        """Register a certificate; False (and no history row) when it is already present."""
        when = _now(at)
        tp = thumbprint(der)
        with self._db.write() as cur:
            cur.execute("SELECT 1 FROM certificates WHERE thumbprint = ?", (tp,))
            if cur.fetchall():
                return False
            cur.execute(
                "INSERT INTO certificates (thumbprint, der, added_at) VALUES (?, ?, ?)",
                (tp, bytes(der), to_db_time(when)),
            )
            self._record(cur, "certificate", tp, "add", hashlib.sha256(der).hexdigest(), actor, when)
        return True

    def remove_certificate(self, der: bytes, *, actor: str, at: datetime | None = None) -> bool:
        """Unregister a certificate; False when it was not registered. Refusing to remove the last one
        is the service's rule (maa-api §8), not the store's."""
        when = _now(at)
        tp = thumbprint(der)
        with self._db.write() as cur:
            if cur.execute("DELETE FROM certificates WHERE thumbprint = ?", (tp,)) == 0:
                return False
            self._record(cur, "certificate", tp, "remove", hashlib.sha256(der).hexdigest(), actor, when)
        return True

    def seed_certificates(self, ders: Sequence[bytes], *, actor: str, at: datetime | None = None) -> int:
        """Register the configured initial certificates only if none are registered yet (first start of
        an isolated instance); return how many were added. Later changes go through add/remove."""
        when = _now(at)
        with self._db.write() as cur:
            cur.execute("SELECT COUNT(*) FROM certificates")
            if int(cur.fetchall()[0][0]) > 0:
                return 0
            added = 0
            for der in dict.fromkeys(bytes(d) for d in ders):
                tp = thumbprint(der)
                cur.execute(  # one microsecond apart, so that listing keeps the configured order
                    "INSERT INTO certificates (thumbprint, der, added_at) VALUES (?, ?, ?)",
                    (tp, der, to_db_time(when + timedelta(microseconds=added))),
                )
                self._record(cur, "certificate", tp, "add", hashlib.sha256(der).hexdigest(), actor, when)
                added += 1
        return added

    # -- signing keys --------------------------------------------------------------------------------

    def list_signing_keys(self) -> list[StoredKey]:
        """All stored keys, newest first (the current one, if any, has ``retired_at`` None)."""
        rows = self._db.query(
            "SELECT kid, pem, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid"
        )
        return [
            StoredKey(r[0], bytes(r[1]), from_db_time(r[2]), None if r[3] is None else from_db_time(r[3]))
            for r in rows
        ]

    def current_signing_key(self) -> StoredKey | None:
        return next((k for k in self.list_signing_keys() if k.retired_at is None), None)

    def _insert_key(self, cur: Cursor, key: StoredKey, actor: str, when: datetime) -> None:
        cur.execute(
            "INSERT INTO signing_keys (kid, pem, created_at, retired_at) VALUES (?, ?, ?, ?)",
            (
                key.kid,
                key.pem,
                to_db_time(key.created_at),
                None if key.retired_at is None else to_db_time(key.retired_at),
            ),
        )
        self._record(cur, "key", key.kid, "add", None, actor, when)

    def add_signing_key(self, key: StoredKey, *, actor: str = "system", at: datetime | None = None) -> None:
        """Insert a key as is. A second current key or a duplicate kid raises StoreError ``conflict``."""
        when = _now(at)
        with self._db.write() as cur:
            self._insert_key(cur, key, actor, when)

    def ensure_current_signing_key(
        self, candidate: StoredKey, *, actor: str = "system", at: datetime | None = None
    ) -> StoredKey:
        """The current key; if there is none, ``candidate`` becomes it. Race-safe: servers starting together
        all get the one key that won."""
        when = _now(at)
        with self._db.write() as cur:
            cur.execute("SELECT kid, pem, created_at FROM signing_keys WHERE retired_at IS NULL")
            rows = cur.fetchall()
            if rows:
                kid, pem, created = rows[0]
                return StoredKey(kid, bytes(pem), from_db_time(created))
            self._insert_key(cur, candidate, actor, when)
        return candidate

    def rotate_signing_key(
        self, new: StoredKey, *, actor: str = "system", at: datetime | None = None
    ) -> str | None:
        """Retire the current key at ``at`` and make ``new`` current, atomically; return the retired kid."""
        when = _now(at)
        with self._db.write() as cur:
            cur.execute("SELECT kid FROM signing_keys WHERE retired_at IS NULL")
            rows = cur.fetchall()
            old = rows[0][0] if rows else None
            if old is not None:
                cur.execute("UPDATE signing_keys SET retired_at = ? WHERE kid = ?", (to_db_time(when), old))
                self._record(cur, "key", old, "retire", None, actor, when)
            self._insert_key(cur, StoredKey(new.kid, new.pem, new.created_at, None), actor, when)
        return old

    def retire_signing_key(self, kid: str, at: datetime, *, actor: str = "system") -> bool:
        """Mark a key retired at ``at``; False if it does not exist or is already retired."""
        with self._db.write() as cur:
            n = cur.execute(
                "UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL",
                (to_db_time(at), kid),
            )
            if n:
                self._record(cur, "key", kid, "retire", None, actor, at)
        return bool(n)

    def delete_signing_key(self, kid: str, *, actor: str = "system", at: datetime | None = None) -> bool:
        when = _now(at)
        with self._db.write() as cur:
            n = cur.execute("DELETE FROM signing_keys WHERE kid = ?", (kid,))
            if n:
                self._record(cur, "key", kid, "delete", None, actor, when)
        return bool(n)

    def delete_signing_keys_retired_before(
        self, cutoff: datetime, *, actor: str = "system", at: datetime | None = None
    ) -> list[str]:
        """Drop retired keys no token can need any more; return their kids."""
        when = _now(at)
        with self._db.write() as cur:
            cur.execute(
                "SELECT kid FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= ? ORDER BY kid",
                (to_db_time(cutoff),),
            )
            kids = [r[0] for r in cur.fetchall()]
            for kid in kids:
                cur.execute("DELETE FROM signing_keys WHERE kid = ?", (kid,))
                self._record(cur, "key", kid, "delete", None, actor, when)
        return kids


def open_store(url: str) -> Store:
    """Open (creating or migrating the schema) ``sqlite:///path`` or ``postgresql://...``."""
    backend = connect(url)
    try:
        return Store(backend)
    except BaseException:
        backend.close()
        raise

