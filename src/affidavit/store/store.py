"""The store: policies with their history, policy-management certificates, and token-signing keys.

Every change is one transaction that also writes its history row, so a failure at any point leaves the
previous state whole. Several ``Store`` objects (several servers) may share one database; they see the
same state, and writers serialise on the database's lock. Methods are synchronous and thread-safe; an
async caller runs them in a worker thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from affidavit.policy.hashing import policy_hash
from affidavit.store.backend import Backend, Cursor, connect
from affidavit.store.errors import StoreError
from affidavit.store.model import (
    Change,
    PolicyChange,
    StoredKey,
    StoredPolicy,
    StoredSecret,
    from_db_time,
    to_db_time,
)
from affidavit.store.schema import migrate


class LastCertificate(StoreError):
    """A removal would leave no policy management certificate."""

    code = "last_certificate"


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
        self,
        cur: Cursor,
        kind: str,
        subject: str,
        action: str,
        hash_: str | None,
        actor: str,
        at: datetime,
        *,
        text: str | None = None,
        jws: str | None = None,
        caller: str | None = None,
        signer: str | None = None,
    ) -> None:
        cur.execute(
            "INSERT INTO history (kind, subject, action, hash, actor, at, text, jws, caller, signer)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, subject, action, hash_, actor, to_db_time(at), text, jws, caller, signer),
        )

    def history(self, kind: str | None = None, subject: str | None = None) -> list[Change]:
        """Audit rows, oldest first, optionally for one kind (and subject)."""
        sql = "SELECT kind, subject, action, hash, actor, at, caller, signer FROM history"
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
        return [Change(r[0], r[1], r[2], r[3], r[4], from_db_time(r[5]), r[6], r[7]) for r in rows]

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
        caller: str | None = None,
        signer: str | None = None,
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
            self._record(
                cur, "policy", att_type, "set", stored.hash, actor, when,
                text=text, jws=jws, caller=caller, signer=signer,
            )
        return stored

    def reset_policy(
        self,
        att_type: str,
        *,
        actor: str,
        at: datetime | None = None,
        caller: str | None = None,
        signer: str | None = None,
    ) -> bool:
        """Return to the default policy; logged even when none was set. True if a policy was removed."""
        when = _now(at)
        with self._db.write() as cur:
            removed = cur.execute("DELETE FROM policies WHERE att_type = ?", (att_type,)) > 0
            self._record(cur, "policy", att_type, "reset", None, actor, when, caller=caller, signer=signer)
        return removed

    def policy_history(
        self, att_type: str, *, limit: int | None = None, hash_: str | None = None
    ) -> list[PolicyChange]:
        """The policy changes of ``att_type``, oldest first, with their texts; only the newest ``limit``,
        and only those that set the policy of hash ``hash_`` when given."""
        sql = (
            "SELECT id, action, hash, actor, at, text, jws, caller, signer FROM history"
            " WHERE kind = 'policy' AND subject = ?"
        )
        params: list[Any] = [att_type]
        if hash_ is not None:
            sql += " AND hash = ?"
            params.append(hash_)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._db.query(sql, params)
        return [
            PolicyChange(
                att_type, r[1], r[2], r[3], from_db_time(r[4]), r[5], r[6], int(r[0]), r[7], r[8]
            )
            for r in reversed(rows)
        ]

    # -- policy management certificates --------------------------------------------------------------

    def list_certificates(self) -> list[bytes]:
        """DER of every registered certificate, in the order they were added."""
        rows = self._db.query("SELECT der FROM certificates ORDER BY added_at, thumbprint")
        return [bytes(r[0]) for r in rows]

    def add_certificate(
        self,
        der: bytes,
        *,
        actor: str,
        at: datetime | None = None,
        caller: str | None = None,
        signer: str | None = None,
    ) -> bool:
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
            self._record(
                cur, "certificate", tp, "add", hashlib.sha256(der).hexdigest(), actor, when,
                caller=caller, signer=signer,
            )
        return True

    def remove_certificate(
        self,
        der: bytes,
        *,
        actor: str,
        at: datetime | None = None,
        keep_last: bool = False,
        caller: str | None = None,
        signer: str | None = None,
    ) -> bool:
        """Unregister a certificate; False when it was not registered. With ``keep_last`` (the service's
        rule, maa-api §8) removing the last one raises :class:`LastCertificate`; the count is checked in
        the same serialised transaction as the delete, so two concurrent removals (A removes B while B
        removes A, on any number of servers sharing the database) can never leave none."""
        when = _now(at)
        tp = thumbprint(der)
        with self._db.write() as cur:
            if keep_last:
                cur.execute("SELECT thumbprint FROM certificates")
                present = {r[0] for r in cur.fetchall()}
                if present == {tp}:
                    raise LastCertificate("the last policy management certificate cannot be removed")
            if cur.execute("DELETE FROM certificates WHERE thumbprint = ?", (tp,)) == 0:
                return False
            self._record(
                cur, "certificate", tp, "remove", hashlib.sha256(der).hexdigest(), actor, when,
                caller=caller, signer=signer,
            )
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

    # -- TPM challenges ------------------------------------------------------------------------------

    def consume_tpm_challenge(self, challenge: bytes, *, expires_at: int, now: int) -> bool:
        """Mark a TPM protocol challenge answered; False when it already was (a replay).

        The ledger is shared by every worker and server on the database, keyed by the challenge and kept
        until ``expires_at`` (epoch seconds, when its ``service_context`` stops opening): rows are only
        ever dropped once expired, so no volume of requests can evict a live challenge. One serialised
        transaction checks and inserts, so of two concurrent uses exactly one succeeds."""
        key = bytes(challenge)
        with self._db.write() as cur:
            cur.execute("DELETE FROM tpm_challenges WHERE expires_at < ?", (int(now),))
            cur.execute("SELECT 1 FROM tpm_challenges WHERE challenge = ?", (key,))
            if cur.fetchall():
                return False
            cur.execute(
                "INSERT INTO tpm_challenges (challenge, expires_at) VALUES (?, ?)", (key, int(expires_at))
            )
        return True

    def tpm_challenges_held(self) -> int:
        """How many answered challenges the ledger holds (expired ones included until the next use)."""
        return int(self._db.query("SELECT COUNT(*) FROM tpm_challenges")[0][0])

    # -- signing keys --------------------------------------------------------------------------------

    _KEY_COLUMNS = ("kid, certificate, created_at, current_at, retired_at, location, algorithm, sealed, "
                    "kek_id, pem")

    @staticmethod
    def _key_row(r: Sequence[Any]) -> StoredKey:
        kid, cert, created, current, retired, location, algorithm, sealed, kek_id, pem = r
        legacy = _bytes(pem) or None
        return StoredKey(
            kid, _bytes(cert) or b"", from_db_time(created), from_db_time(current or created),
            None if retired is None else from_db_time(retired), location, algorithm, _bytes(sealed), kek_id,
            legacy,
        )

    def list_signing_keys(self) -> list[StoredKey]:
        """All stored keys, newest first (the newest has ``retired_at`` None)."""
        rows = self._db.query(
            f"SELECT {self._KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid"
        )
        return [self._key_row(r) for r in rows]

    def current_signing_key(self, at: datetime | None = None) -> StoredKey | None:
        when = _now(at)
        return next((k for k in self.list_signing_keys() if k.state(when) == "current"), None)

    def _insert_key(self, cur: Cursor, key: StoredKey, actor: str, when: datetime) -> None:
        cur.execute(
            """INSERT INTO signing_keys (kid, pem, certificate, created_at, current_at, retired_at, location,
                 algorithm, sealed, kek_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                key.kid,
                key.legacy_pem or b"",
                key.certificate,
                to_db_time(key.created_at),
                to_db_time(key.current_at),
                None if key.retired_at is None else to_db_time(key.retired_at),
                key.location,
                key.algorithm,
                key.sealed,
                key.kek_id,
            ),
        )
        self._record(cur, "key", key.kid, "add", None, actor, when)

    def add_signing_key(self, key: StoredKey, *, actor: str = "system", at: datetime | None = None) -> None:
        """Insert a key as is. A second unscheduled key or a duplicate kid raises StoreError ``conflict``."""
        when = _now(at)
        with self._db.write() as cur:
            self._insert_key(cur, key, actor, when)

    def ensure_current_signing_key(
        self, candidate: StoredKey, *, actor: str = "system", at: datetime | None = None
    ) -> StoredKey:
        """The newest key; if there is none, ``candidate`` becomes it. Race-safe: servers starting together
        all get the one key that won."""
        when = _now(at)
        with self._db.write() as cur:
            cur.execute(f"SELECT {self._KEY_COLUMNS} FROM signing_keys WHERE retired_at IS NULL")
            rows = cur.fetchall()
            if rows:
                return self._key_row(rows[0])
            self._insert_key(cur, candidate, actor, when)
        return candidate

    def key_at_location(self, location: str) -> StoredKey | None:
        rows = self._db.query(f"SELECT {self._KEY_COLUMNS} FROM signing_keys WHERE location = ?", (location,))
        return self._key_row(rows[0]) if rows else None

    def rotate_signing_key(
        self,
        new: StoredKey,
        *,
        actor: str = "system",
        at: datetime | None = None,
        unique_location: bool = False,
    ) -> str | None:
        """Schedule ``new`` to become current at ``new.current_at`` (``at`` or later) and the current key to
        retire then, atomically; return the kid retiring. A rotation still pending (a *next* key) is a
        ``conflict``, unless ``new`` takes over at ``at`` (an emergency rotation): then the pending key is
        cancelled (retired at once) too. With ``unique_location`` a key already stored at ``new``'s
        location is a ``conflict`` (the check and the insert are one transaction)."""
        when = _now(at)
        switch = to_db_time(new.current_at)
        with self._db.write() as cur:
            if unique_location:
                cur.execute("SELECT kid FROM signing_keys WHERE location = ?", (new.location,))
                if cur.fetchall():
                    raise StoreError(f"a key at {new.location} is stored already", code="conflict")
            cur.execute(
                """SELECT kid FROM signing_keys
                   WHERE current_at > ? AND (retired_at IS NULL OR retired_at > ?)""",
                (to_db_time(when), to_db_time(when)),
            )
            pending = [r[0] for r in cur.fetchall()]
            if pending and new.current_at > when:
                raise StoreError(
                    f"key {pending[0]} is still waiting to become current; rotate with --now to replace it",
                    code="conflict",
                )
            cur.execute(
                "SELECT kid FROM signing_keys WHERE retired_at IS NULL OR retired_at > ? ORDER BY current_at",
                (switch,),
            )
            retiring = [r[0] for r in cur.fetchall()]
            for kid in retiring:
                cur.execute("UPDATE signing_keys SET retired_at = ? WHERE kid = ?", (switch, kid))
                self._record(cur, "key", kid, "retire", None, actor, when)
            self._insert_key(cur, dataclasses.replace(new, retired_at=None), actor, when)
        return next((k for k in retiring if k not in pending), None)

    def seal_legacy_key(self, kid: str, certificate: bytes, sealed: bytes, kek_id: str) -> bool:
        """Replace a plaintext key of an older Affidavit by its sealed form; False if already done."""
        with self._db.write() as cur:
            n = cur.execute(
                """UPDATE signing_keys SET pem = ?, certificate = ?, sealed = ?, kek_id = ?
                   WHERE kid = ? AND sealed IS NULL AND location = 'database'""",
                (b"", certificate, sealed, kek_id, kid),
            )
        return bool(n)

    def scrub(self) -> None:
        """Make overwritten rows unrecoverable from the files (SQLite: checkpoint and truncate the WAL)."""
        scrub = getattr(self._db, "scrub", None)
        if scrub is not None:
            scrub()

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

    # -- service secrets -----------------------------------------------------------------------------

    def get_secret(self, name: str) -> StoredSecret | None:
        rows = self._db.query("SELECT sealed, kek_id, created_at FROM secrets WHERE name = ?", (name,))
        if not rows:
            return None
        return StoredSecret(name, bytes(rows[0][0]), rows[0][1], from_db_time(rows[0][2]))

    def ensure_secret(self, candidate: StoredSecret) -> StoredSecret:
        """The stored secret of that name; ``candidate`` becomes it when there is none (race-safe)."""
        with self._db.write() as cur:
            cur.execute("SELECT sealed, kek_id, created_at FROM secrets WHERE name = ?", (candidate.name,))
            rows = cur.fetchall()
            if rows:
                return StoredSecret(candidate.name, bytes(rows[0][0]), rows[0][1], from_db_time(rows[0][2]))
            cur.execute(
                "INSERT INTO secrets (name, sealed, kek_id, created_at) VALUES (?, ?, ?, ?)",
                (candidate.name, candidate.sealed, candidate.kek_id, to_db_time(candidate.created_at)),
            )
        return candidate


def open_store(url: str) -> Store:
    """Open (creating or migrating the schema) ``sqlite:///path`` or ``postgresql://...``."""
    backend = connect(url)
    try:
        return Store(backend)
    except BaseException:
        backend.close()
        raise

