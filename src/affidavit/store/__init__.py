"""Store: persistence of policies (with history), policy-management certificates and signing keys.

``open_store("sqlite:///var/affidavit.db")`` (stdlib sqlite3, WAL) or ``open_store("postgresql://...")``
(psycopg 3). The schema is created or migrated on open. Every failure is a :class:`StoreError`.
"""

from affidavit.policy.hashing import policy_hash
from affidavit.store.errors import StoreError
from affidavit.store.kek import KeyEncryptionKey, create_kek_file, read_kek_file
from affidavit.store.keyring import (
    DEFAULT_ROTATION_DELAY,
    TPM_CONTEXT_SECRET,
    KeyMaker,
    from_stored,
    load_keyring,
    load_or_create_keyring,
    load_or_create_secret,
    rotate_keyring,
    seal_legacy_keys,
    to_stored,
)
from affidavit.store.model import Change, PolicyChange, StoredKey, StoredPolicy, StoredSecret
from affidavit.store.schema import SCHEMA_VERSION
from affidavit.store.store import Store, open_store, thumbprint

__all__ = [
    "DEFAULT_ROTATION_DELAY",
    "SCHEMA_VERSION",
    "TPM_CONTEXT_SECRET",
    "Change",
    "KeyEncryptionKey",
    "KeyMaker",
    "PolicyChange",
    "Store",
    "StoreError",
    "StoredKey",
    "StoredPolicy",
    "StoredSecret",
    "create_kek_file",
    "from_stored",
    "load_keyring",
    "load_or_create_keyring",
    "load_or_create_secret",
    "open_store",
    "policy_hash",
    "read_kek_file",
    "rotate_keyring",
    "seal_legacy_keys",
    "thumbprint",
    "to_stored",
]
