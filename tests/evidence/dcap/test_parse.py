"""The parser against the decoded fields recorded in every expected.json (header, body, QE report, PCK)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from affidavit.evidence.dcap import TdReportBody, parse_quote, platform_of
from affidavit.evidence.dcap.pck import pck_extension_of
from affidavit.evidence.dcap.pki import load_pck_chain
from tests.evidence.dcap.conftest import vector_cases

_SETS = sorted({c.quote_path.parent for c in vector_cases()})
QUOTES = [
    (s, name, info)
    for s in _SETS
    for name, info in json.loads((s / "expected.json").read_text()).get("quotes", {}).items()
]


def _sgx_body_fields(body: Any) -> dict[str, Any]:
    return {
        "mrenclave": body.mrenclave.hex(),
        "mrsigner": body.mrsigner.hex(),
        "isvprodid": body.isv_prod_id,
        "isvsvn": body.isv_svn,
        "attributes": body.attributes.hex(),
        "miscselect": body.miscselect,
        "cpusvn": body.cpusvn.hex(),
        "report_data": body.report_data.hex(),
        "config_id": body.config_id.hex(),
        "config_svn": body.config_svn,
        "isv_ext_prod_id": body.isv_ext_prod_id.hex(),
        "isv_family_id": body.isv_family_id.hex(),
        "is_debuggable": body.is_debuggable,
    }


@pytest.mark.parametrize("set_dir,name,info", QUOTES, ids=[f"{s.name}/{n}" for s, n, _ in QUOTES])
def test_quote_fields_match_recorded_decoding(set_dir: Path, name: str, info: dict[str, Any]) -> None:
    data = (set_dir / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    q = parse_quote(data)
    h = q.header
    assert (h.version, h.att_key_type, f"0x{h.tee_type:08x}") == (
        info["version"],
        info["att_key_type"],
        info["tee_type"],
    )
    assert (h.qe_svn, h.pce_svn) == (info["header_qe_svn"], info["header_pce_svn"])
    assert h.qe_vendor_id.hex() == info["qe_vendor_id"] and h.user_data.hex() == info["user_data"]
    assert {1: "SGX", 2: "TD10", 3: "TD15"}[q.body_type] == info["body_kind"]
    assert len(q.signed_region) == info["signed_region_len"]
    assert len(data) - len(q.raw) == info["trailing_bytes_after_sig_data"]
    assert q.cert_data_type == info["cert_data_type"]
    assert len(q.qe_auth_data) == info["qe_auth_data_len"]
    qe = _sgx_body_fields(q.qe_report)
    assert {k: qe[k] for k in info["qe_report"]} == info["qe_report"]
    if isinstance(q.body, TdReportBody):
        assert {k: q.body.to_dict()[k] for k in info["claims"]} == info["claims"]
    else:
        assert _sgx_body_fields(q.body) == info["claims"]
    leaf, inter, _ = load_pck_chain(q.pck_chain_pem)
    assert (
        format(leaf.serial_number, "x").rjust(len(info["pck_leaf"]["serial"]), "0")
        == info["pck_leaf"]["serial"]
    )
    ext = pck_extension_of(leaf)
    rec = info["pck_sgx_extension"]
    assert ext.ppid.hex() == rec["ppid"] and list(ext.tcb_components) == rec["tcb_comps"]
    assert (ext.pcesvn, ext.cpusvn.hex(), ext.pce_id.hex(), ext.fmspc.hex(), ext.sgx_type) == (
        rec["pcesvn"],
        rec["cpusvn"],
        rec["pceid"],
        rec["fmspc"],
        rec["sgx_type"],
    )
    if "platform_instance_id" in rec:
        assert (
            ext.platform_instance_id is not None
            and ext.platform_instance_id.hex() == rec["platform_instance_id"]
        )
        assert (ext.dynamic_platform, ext.cached_keys, ext.smt_enabled) == (
            rec["dynamic_platform"],
            rec["cached_keys"],
            rec["smt_enabled"],
        )
    else:
        assert ext.platform_instance_id is None and ext.dynamic_platform is None
    platform = platform_of(data)
    assert platform.fmspc == rec["fmspc"].upper()
    assert platform.ca == ("platform" if "Platform" in info["pck_issuer_ca"] else "processor")
    assert platform.tee == q.tee


def test_quotes_cover_every_version_and_body() -> None:
    kinds = {(info["version"], info["body_kind"]) for _, _, info in QUOTES}
    assert {(3, "SGX"), (4, "TD10"), (5, "TD15")} <= kinds
