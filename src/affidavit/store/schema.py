"""Schema migrations, applied in order on open; ``schema_version`` records the last one applied.

Statements are templates: ``{blob}`` and ``{serial}`` become the backend's binary and identity types.
Append new migrations; never edit an applied one.
"""

from __future__ import annotations

from affidavit.store.backend import Backend
from affidavit.store.errors import StoreError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE policies (
            att_type TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            jws TEXT NOT NULL,
            signer_cert {blob},
            hash TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE history (
            id {serial},
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            action TEXT NOT NULL,
            hash TEXT,
            actor TEXT NOT NULL,
            at TEXT NOT NULL)""",
        "CREATE INDEX history_kind_subject ON history (kind, subject, id)",
        """CREATE TABLE certificates (
            thumbprint TEXT PRIMARY KEY,
            der {blob} NOT NULL,
            added_at TEXT NOT NULL)""",
        """CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            pem {blob} NOT NULL,
            created_at TEXT NOT NULL,
            retired_at TEXT)""",
        # At most one current (unretired) key, whatever the number of servers racing to create one.
        """CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL))
            WHERE retired_at IS NULL""",
    ),
    (
        # Keys encrypted at rest, in HSMs, and published before use (issue 12). ``pem`` keeps only keys
        # written before this migration until the first start seals them (then it is empty).
        "ALTER TABLE signing_keys ADD COLUMN location TEXT NOT NULL DEFAULT 'database'",
        "ALTER TABLE signing_keys ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'RS256'",
        "ALTER TABLE signing_keys ADD COLUMN certificate {blob}",
        "ALTER TABLE signing_keys ADD COLUMN sealed {blob}",
        "ALTER TABLE signing_keys ADD COLUMN kek_id TEXT",
        "ALTER TABLE signing_keys ADD COLUMN current_at TEXT",
        "UPDATE signing_keys SET current_at = created_at WHERE current_at IS NULL",
        """CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            sealed {blob} NOT NULL,
            kek_id TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
    ),
    # 3: policy history keeps each policy's text and the JWS it came in, so that a policy can be read
    # back and rolled back byte for byte (rows written before this migration have NULL there).
    (
        "ALTER TABLE history ADD COLUMN text TEXT",
        "ALTER TABLE history ADD COLUMN jws TEXT",
    ),
    (  # 4: who did it (the authenticated caller and, apart, the JWS signer); the TPM challenge ledger
        "ALTER TABLE history ADD COLUMN caller TEXT",
        "ALTER TABLE history ADD COLUMN signer TEXT",
        """CREATE TABLE tpm_challenges (
            challenge {blob} PRIMARY KEY,
            expires_at BIGINT NOT NULL)""",
        "CREATE INDEX tpm_challenges_expiry ON tpm_challenges (expires_at)",
    ),
    (  # 5: the verified collateral cache (affidavit.collateral.db). Before this migration the cache
        # created its table itself, on its own connection: IF NOT EXISTS keeps such a table and its rows.
        """CREATE TABLE IF NOT EXISTS affidavit_collateral (
            kind TEXT NOT NULL,
            tee TEXT NOT NULL,
            name TEXT NOT NULL,
            body TEXT NOT NULL,
            signature TEXT NOT NULL,
            chain TEXT NOT NULL,
            issue_date TEXT NOT NULL,
            next_update TEXT NOT NULL,
            number BIGINT NOT NULL,
            stored_at TEXT NOT NULL,
            PRIMARY KEY (kind, tee, name))""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(backend: Backend) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` in one transaction; return the version found."""
    with backend.write() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cur.execute("SELECT version FROM schema_version")
        rows = cur.fetchall()
        found = int(rows[0][0]) if rows else 0
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this Affidavit ({SCHEMA_VERSION})",
                code="schema_too_new",
            )
        for statements in MIGRATIONS[found:]:
            for sql in statements:
                cur.execute(sql.format(**backend.types))
        if not rows:
            cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif found != SCHEMA_VERSION:
            cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return found
