"""Store: persistence of policies (with history), policy-management certificates and signing keys.

``open_store("sqlite:///var/affidavit.db")`` (stdlib sqlite3, WAL) or ``open_store("postgresql://...")``
(psycopg 3). The schema is created or migrated on open. Every failure is a :class:`StoreError`.
"""

from affidavit.policy.hashing import policy_hash
from affidavit.store.errors import StoreError
from affidavit.store.keyring import (
    from_stored,
    load_keyring,
    load_or_create_keyring,
    rotate_keyring,
    to_stored,
)
from affidavit.store.model import Change, PolicyChange, StoredKey, StoredPolicy
from affidavit.store.schema import SCHEMA_VERSION
from affidavit.store.store import Store, open_store, thumbprint

__all__ = [
    "SCHEMA_VERSION",
    "Change",
    "PolicyChange",
    "Store",
    "StoreError",
    "StoredKey",
    "StoredPolicy",
    "from_stored",
    "load_keyring",
    "load_or_create_keyring",
    "open_store",
    "policy_hash",
    "rotate_keyring",
    "thumbprint",
    "to_stored",
]
