"""The collateral gate (`collateral.verify`) checks items with the verifier's own chain, CRL and signature
rules (`evidence.dcap.pki`), so where the gate's former copy was laxer it is now as strict as the verifier:
issuer chains are exactly (signer, root) and the signer must have its role. Items the verifier would
refuse never enter the cache."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.collateral import CollateralError
from affidavit.collateral.items import CollateralSet
from affidavit.collateral.verify import verify_item
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import load_collateral
from affidavit.evidence.dcap.pki import verify_collateral
from affidavit.evidence.dcap.trust import TrustAnchors
from affidavit.simulate import SimulatedPlatform
from affidavit.simulate.collateral import sign_document
from tests.collateral.conftest import AZURE_AT

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _code(item: Any, anchors: Any, now: dt.datetime, root: Any = None) -> str:
    try:
        verify_item(item, anchors, now, root)
    except CollateralError as exc:
        return exc.code
    return "ok"


def test_real_items_pass_and_a_longer_issuer_chain_does_not(anchors: Any, standard: dict[str, Any]) -> None:
    """The former gate took chains of one to four certificates; a PCK CRL chain with its root repeated
    (every link correctly signed) entered the cache, although the verifier refuses it."""
    items = CollateralSet.from_json(standard)
    for item in items.items:
        root = None if item is items.root_ca_crl else items.root_ca_crl
        assert _code(item, anchors, AZURE_AT, root) == "ok"
    root_pem = "-----BEGIN" + items.pck_crl.chain.split("-----BEGIN")[-1]
    longer = dataclasses.replace(items.pck_crl, chain=items.pck_crl.chain + root_pem)
    assert len(x509.load_pem_x509_certificates(longer.chain.encode())) == 3
    assert _code(longer, anchors, AZURE_AT, items.root_ca_crl) == "collateral_invalid"
    bad = {**standard, "pck_crl_issuer_chain": longer.chain}
    assert verify_collateral(load_collateral(standard), TrustAnchors.intel())
    with pytest.raises(EvidenceError) as info:  # the verifier agrees
        verify_collateral(load_collateral(bad), TrustAnchors.intel())
    assert info.value.code == "collateral_chain_untrusted"


def test_a_signer_without_its_role_is_refused() -> None:
    """A TCB Info signed by the PCK CA (a real key of the PKI, correctly chained to the root) is not a
    TCB Info: the signer must be a TCB Signing certificate. The former gate only checked the chain."""
    platform = SimulatedPlatform.create(seed=b"gate-role", now=NOW, tee="sgx", ca="processor")
    collateral = platform.collateral(now=NOW)
    anchors = [k for k in TrustAnchors.from_pem(platform.root_pem).keys.values()]
    assert all(isinstance(k, ec.EllipticCurvePublicKey) for k in anchors)
    items = CollateralSet.from_json(collateral)
    assert _code(items.tcb_info, anchors, NOW, items.root_ca_crl) == "ok"
    ca = platform.pki.pck_ca("processor")
    forged = dataclasses.replace(
        items.tcb_info,
        chain=collateral["pck_crl_issuer_chain"],
        signature=sign_document(ca.key, items.tcb_info.body),
    )
    assert _code(forged, anchors, NOW, items.root_ca_crl) == "collateral_invalid"


def test_a_root_signed_crl_under_another_key_is_refused(anchors: Any, standard: dict[str, Any]) -> None:
    items = CollateralSet.from_json(standard)
    other = [ec.generate_private_key(ec.SECP256R1()).public_key()]
    assert _code(items.root_ca_crl, other, AZURE_AT) == "collateral_invalid"
    assert _code(items.root_ca_crl, [*other, *anchors], AZURE_AT) == "ok"  # any configured anchor
