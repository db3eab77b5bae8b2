"""Providers of Intel collateral (TCB info, QE identity, CRLs, issuer chains) for DCAP verification.

A provider answers one question: which collateral does this platform (FMSPC, PCK CA type, SGX or TDX)
need? It never verifies what it returns; the verifier does, so a provider can be as dumb as a directory
of files. Every failure is a :class:`CollateralError`, which the service maps to 400 ``InvalidParameter``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from affidavit.errors import AffidavitError

if TYPE_CHECKING:
    from affidavit.evidence.dcap import Platform


class CollateralError(AffidavitError):
    """No usable collateral for a platform, or a collateral source that cannot be read."""

    code = "collateral_error"


class CollateralProvider(Protocol):
    """Where the verifier's collateral comes from (directory, Intel PCS/PCCS, cache)."""

    async def get(self, platform: Platform) -> Any:
        """The collateral (an ``SgxCollateral``) for ``platform``; raises :class:`CollateralError`."""
        ...


from affidavit.collateral.bundle import read_bundle, write_bundle  # noqa: E402
from affidavit.collateral.cache import CollateralCache  # noqa: E402
from affidavit.collateral.directory import DirectoryProvider  # noqa: E402
from affidavit.collateral.items import CollateralItem, CollateralSet  # noqa: E402
from affidavit.collateral.pcs import PcsClient, PcsConfig  # noqa: E402
from affidavit.collateral.provider import CachingPcsProvider, anchor_keys  # noqa: E402

__all__ = [
    "CachingPcsProvider",
    "CollateralCache",
    "CollateralError",
    "CollateralItem",
    "CollateralProvider",
    "CollateralSet",
    "DirectoryProvider",
    "PcsClient",
    "PcsConfig",
    "anchor_keys",
    "read_bundle",
    "write_bundle",
]
