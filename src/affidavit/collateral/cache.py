"""The verified collateral cache: the only way an item gets into the database.

Every item offered is verified first (signature, chain to a trust anchor, validity at ``now``) and
stored only if it ranks above what is held for its key (higher tcbEvaluationDataNumber, else later
issueDate): a bad or older document never replaces a good one. Reads are served from memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.collateral.amd import AMD_KINDS, verify_amd_item
from affidavit.collateral.db import CollateralDb
from affidavit.collateral.items import ROOT_CA_CRL_KEY, CollateralItem, CollateralSet, ItemKey
from affidavit.collateral.verify import verify_item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedItem:
    item: CollateralItem
    stored_at: datetime


class CollateralCache:
    """Verified collateral items by key, persisted in a :class:`CollateralDb`."""

    def __init__(
        self, db: CollateralDb, anchors: Sequence[ec.EllipticCurvePublicKey], *, amd_trust: Any = None
    ) -> None:
        self.db = db
        self.anchors = tuple(anchors)
        self.amd_trust = amd_trust  # an evidence.snp.AmdTrust for AMD items; None: AMD's shipped roots
        self._lock = threading.Lock()
        self._items: dict[ItemKey, CachedItem] = {
            item.key: CachedItem(item, stored) for item, stored in db.all()
        }

    @classmethod
    def open(
        cls, url: str, anchors: Sequence[ec.EllipticCurvePublicKey], *, amd_trust: Any = None
    ) -> CollateralCache:
        return cls(CollateralDb(url), anchors, amd_trust=amd_trust)

    def close(self) -> None:
        self.db.close()

    def get(self, key: ItemKey) -> CollateralItem | None:
        entry = self._items.get(key)
        return entry.item if entry else None

    def entries(self) -> list[CachedItem]:
        return sorted(self._items.values(), key=lambda e: e.item.key)

    def verify(self, item: CollateralItem, now: datetime) -> None:
        """Raise ``CollateralError`` unless ``item`` may enter the cache at ``now``."""
        if item.key.kind in AMD_KINDS:
            if self.amd_trust is None:
                from affidavit.evidence.snp import AmdTrust

                self.amd_trust = AmdTrust.amd()
            verify_amd_item(item, self.amd_trust, now)
            return
        root = None if item.key == ROOT_CA_CRL_KEY else self.get(ROOT_CA_CRL_KEY)
        verify_item(item, self.anchors, now, root)

    def offer(self, item: CollateralItem, now: datetime, stored_at: datetime | None = None) -> bool:
        """Verify ``item`` at ``now`` and keep it if it is newer than the cached one; True if stored.

        Raises ``CollateralError`` (and stores nothing) when the item does not verify. ``stored_at``
        (default ``now``) is recorded for `affidavit collateral list`.
        """
        self.verify(item, now)
        with self._lock:
            held = self._items.get(item.key)
            if held is not None and item.rank() <= held.item.rank():
                if item.rank() < held.item.rank():
                    log.warning("collateral %s: ignoring an older document than the cached one", item.key)
                return False
            stored_at = stored_at or now
            stored = self.db.upsert_if_newer(item, stored_at)
            if stored:
                self._items[item.key] = CachedItem(item, stored_at)
            else:  # another instance sharing the database stored something at least as new
                row = self.db.get(item.key)
                if row is not None:
                    self._items[item.key] = CachedItem(*row)
            return stored

    def offer_set(self, collateral: CollateralSet, now: datetime) -> list[bool]:
        """Offer the four items of a platform, root CRL first (it is the revocation list of the others)."""
        return [self.offer(item, now) for item in collateral.items]
