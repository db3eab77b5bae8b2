"""An independent verifier (dcap-qvl) accepts the simulator's quotes under its root, and only under it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from affidavit.simulate import EnclaveLevel, SimulatedPlatform

dcap_qvl = pytest.importorskip("dcap_qvl")


def _verify(platform: SimulatedPlatform, quote: bytes, collateral: dict[str, Any], at: dt.datetime) -> Any:
    parsed = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(collateral))
    return dcap_qvl.verify_with_root_ca(quote, parsed, platform.pki.root_der, int(at.timestamp()))


def test_sgx_v3_up_to_date(sgx_platform: SimulatedPlatform, now: dt.datetime) -> None:
    quote = sgx_platform.sgx_quote(mrenclave=b"\x01" * 32, report_data=b"\x02" * 64)
    report = _verify(sgx_platform, quote, sgx_platform.collateral(now=now), now)
    assert (report.status, list(report.advisory_ids)) == ("UpToDate", [])
    assert json.loads(report.to_json())["report"]["SgxEnclave"]["report_data"] == "02" * 64


@pytest.mark.parametrize("version", [4, 5])
def test_tdx_up_to_date(tdx_platform: SimulatedPlatform, now: dt.datetime, version: int) -> None:
    quote = tdx_platform.tdx_quote(mrtd=b"\x03" * 48, version=version, trailing=70)
    report = _verify(tdx_platform, quote, tdx_platform.collateral(now=now), now)
    assert report.status == "UpToDate"


def test_statuses_and_advisories(sgx_platform: SimulatedPlatform, now: dt.datetime) -> None:
    tcb = sgx_platform.tcb
    levels = [tcb.raised(), tcb.level("ConfigurationNeeded", ["INTEL-SA-00001"])]
    qe = [EnclaveLevel(sgx_platform.qe_svn + 1), EnclaveLevel(0, "OutOfDate", ("INTEL-SA-00002",))]
    collateral = sgx_platform.collateral(now=now, tcb_levels=levels, qe_levels=qe)
    report = _verify(sgx_platform, sgx_platform.sgx_quote(), collateral, now)
    assert report.status == "OutOfDateConfigurationNeeded"
    assert list(report.advisory_ids) == ["INTEL-SA-00001", "INTEL-SA-00002"]


def test_rejections(sgx_platform: SimulatedPlatform, now: dt.datetime) -> None:
    quote = sgx_platform.sgx_quote()
    collateral = sgx_platform.collateral(now=now)
    with pytest.raises(ValueError):  # Intel's root
        dcap_qvl.verify(
            quote, dcap_qvl.QuoteCollateralV3.from_json(json.dumps(collateral)), int(now.timestamp())
        )
    with pytest.raises(ValueError):
        _verify(sgx_platform, quote, sgx_platform.collateral(now=now, revoked=[sgx_platform.pck_serial]), now)
    with pytest.raises(ValueError):
        _verify(sgx_platform, quote, collateral, now + dt.timedelta(days=40))
    with pytest.raises(ValueError):
        _verify(sgx_platform, quote, sgx_platform.collateral(now=now, fmspc="00606A000000"), now)
