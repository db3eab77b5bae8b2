"""Evidence sources backed by a simulated platform, for clients and tests that have no SGX/TDX hardware.

Each object stands for one enclave (or TD) with fixed measurements; given report data it returns a
freshly signed quote, as a real enclave asks its quoting enclave to do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from affidavit.simulate.pki import Seed
from affidavit.simulate.platform import SimulatedPlatform


def runtime_data_binding(runtime_data: bytes) -> bytes:
    """The report data MAA expects for runtime data: SHA-256 of it in the first 32 bytes, zeros after."""
    return hashlib.sha256(runtime_data).digest() + bytes(32)


@dataclass(frozen=True)
class SimulatedEnclave:
    """An SGX enclave on a simulated platform."""

    platform: SimulatedPlatform
    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int = 0
    isv_svn: int = 0
    debug: bool = False
    quote_version: int = 3

    @classmethod
    def create(
        cls,
        *,
        seed: Seed = None,
        now: dt.datetime | None = None,
        mrenclave: bytes | None = None,
        mrsigner: bytes | None = None,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
        **platform_options: Any,
    ) -> SimulatedEnclave:
        """An enclave on a new SGX platform; unset measurements are SHA-256 of a fixed label."""
        platform = SimulatedPlatform.create(seed=seed, now=now, tee="sgx", **platform_options)
        return cls(
            platform,
            mrenclave if mrenclave is not None else hashlib.sha256(b"affidavit simulated enclave").digest(),
            mrsigner if mrsigner is not None else hashlib.sha256(b"affidavit simulated signer").digest(),
            isv_prod_id,
            isv_svn,
            debug,
        )

    def quote(self, report_data: bytes = b"") -> bytes:
        return self.platform.sgx_quote(
            mrenclave=self.mrenclave,
            mrsigner=self.mrsigner,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            debug=self.debug,
            report_data=report_data,
            version=self.quote_version,
        )

    def quote_for_runtime_data(self, runtime_data: bytes) -> bytes:
        """A quote whose report data binds ``runtime_data`` the way MAA checks it."""
        return self.quote(runtime_data_binding(runtime_data))

    def collateral(self, **options: Any) -> dict[str, Any]:
        return self.platform.collateral(tee="sgx", **options)


@dataclass(frozen=True)
class SimulatedTd:
    """A TDX trust domain on a simulated platform."""

    platform: SimulatedPlatform
    mrtd: bytes
    rtmrs: tuple[bytes, ...] = ()
    debug: bool = False
    quote_version: int = 4

    @classmethod
    def create(
        cls,
        *,
        seed: Seed = None,
        now: dt.datetime | None = None,
        mrtd: bytes | None = None,
        rtmrs: Sequence[bytes] = (),
        debug: bool = False,
        **platform_options: Any,
    ) -> SimulatedTd:
        platform = SimulatedPlatform.create(seed=seed, now=now, tee="tdx", **platform_options)
        default_mrtd = hashlib.sha384(b"affidavit simulated td").digest()
        return cls(platform, mrtd if mrtd is not None else default_mrtd, tuple(rtmrs), debug)

    def quote(self, report_data: bytes = b"") -> bytes:
        return self.platform.tdx_quote(
            mrtd=self.mrtd,
            rtmrs=self.rtmrs,
            report_data=report_data,
            debug=self.debug,
            version=self.quote_version,
        )

    def quote_for_runtime_data(self, runtime_data: bytes) -> bytes:
        return self.quote(runtime_data_binding(runtime_data))

    def collateral(self, **options: Any) -> dict[str, Any]:
        return self.platform.collateral(tee="tdx", **options)
