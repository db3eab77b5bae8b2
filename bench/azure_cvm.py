"""Azure CVM guest verification throughput, against its crypto floor measured in the same run.

Rows:
- ``tdx-real``: the real Trustee TDX CVM evidence (HCL report + TD quote + vTPM quote) through one
  ``AzureCvmVerifier`` (its ``DcapVerifier`` warm, as in the service): TD quote, TDREPORT comparison,
  claims binding, HCLAkPub, vTPM quote. Floor: one ECDSA P-256 verification (the quote's own signature;
  the QE report's is remembered per platform, as ``bench/dcap.py`` explains) + one RSA-2048 PKCS#1 v1.5
  verification (the vTPM quote).
- ``tdx-guest``: the full AzureGuest evidence path of a simulated TDX CVM (software vTPM, simulated Intel
  PKI): the above plus the ephemeral key's certification (a second RSA verification) and the azurevm
  claims. Floor: one ECDSA P-256 + two RSA-2048 verifications.
- ``snp-real``: the real Trustee Milan evidence through the SNP seam, when ``affidavit.evidence.snp`` is
  installed (else skipped). Floor: one ECDSA P-384 (report) + one RSA-2048 verification.

Usage: .venv/bin/python bench/azure_cvm.py [--seconds S]. Ends with one JSON line (``ratio`` = tdx-guest
rate / its floor).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from timing import rate

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("AFFIDAVIT_VECTORS", ROOT.parent / "shared" / "vectors"))
AZ = VECTORS / "azure-cvm"


def floor_fn(ecdsa: str | None, rsa_verifications: int) -> Callable[[], None]:
    """The signature verifications a verification cannot avoid, with ``cryptography``."""
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_sig = rsa_key.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    rsa_pub = rsa_key.public_key()
    curve: ec.EllipticCurve = ec.SECP384R1() if ecdsa == "p384" else ec.SECP256R1()
    digest = hashes.SHA384() if ecdsa == "p384" else hashes.SHA256()
    ec_key = ec.generate_private_key(curve)
    ec_sig = ec_key.sign(b"m", ec.ECDSA(digest))
    ec_pub = ec_key.public_key()

    def run() -> None:
        if ecdsa:
            ec_pub.verify(ec_sig, b"m", ec.ECDSA(digest))
        for _ in range(rsa_verifications):
            rsa_pub.verify(rsa_sig, b"m", padding.PKCS1v15(), hashes.SHA256())

    return run


def tdx_real() -> Callable[[], Any]:
    sys.path.insert(0, str(ROOT))
    from tests.evidence.azure_cvm.vectors import TDX_TIMES, dcap, tdx_collateral, tdx_evidence

    from affidavit.evidence.azure_cvm import AzureCvmVerifier

    verifier = AzureCvmVerifier(dcap=dcap())
    evidence, collateral = tdx_evidence(), tdx_collateral("collateral_2025-02.json")
    now = TDX_TIMES["collateral_2025-02.json"]
    return lambda: verifier.verify(evidence, now=now, nonce=b"challenge", tdx_collateral=collateral)


def tdx_guest() -> Callable[[], Any]:
    from affidavit.evidence.azure_cvm import (
        AzureCvmEvidence,
        AzureCvmVerifier,
        VtpmQuote,
        check_encryption_key,
    )
    from affidavit.evidence.azure_cvm.claims import OsInfo, azurevm_claims
    from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral
    from affidavit.simulate import SimulatedPlatform
    from affidavit.simulate.azure_cvm import SoftVtpm, report_data_for

    now = datetime(2025, 6, 10, tzinfo=UTC)
    sim = SimulatedPlatform.create(fmspc="00B0F0F00000", ca="platform", tee="tdx", now=now, name="bench")
    collateral = load_collateral(json.dumps(sim.collateral(now=now)))
    vtpm = SoftVtpm()
    claims = vtpm.runtime_claims()
    quote = sim.tdx_quote(mrtd=b"\x42" * 48, report_data=report_data_for(claims))
    message, signature = vtpm.quote()
    _, enc_pub, info, info_sig = vtpm.certified_key()
    evidence = AzureCvmEvidence(
        vtpm=VtpmQuote(
            message,
            signature,
            vtpm.pcrs,
            tuple(vtpm.pcrs),
            len(vtpm.ak_public).to_bytes(2, "big") + vtpm.ak_public,
        ),
        runtime_claims=claims,
        td_quote=quote,
    )
    verifier = AzureCvmVerifier(dcap=DcapVerifier(TrustAnchors.from_pem(sim.root_pem)))
    os_info = OsInfo("Linux", "Ubuntu", "NotApplication", 24, 4)

    def run() -> Any:
        result = verifier.verify(evidence, now=now, tdx_collateral=collateral)
        enc = check_encryption_key(enc_pub, info, info_sig, result.ak)
        jwk = {"kid": "TpmEphemeralEncryptionKey", "n": str(enc.key.public_numbers().n)}
        return azurevm_claims(result, os_info, client_payload={}, encryption_key_jwk=jwk, baselines=())

    return run


def snp_real() -> Callable[[], Any] | None:
    from affidavit.evidence.azure_cvm import (
        AzureCvmVerifier,
        parse_trustee_evidence,
        snp_verifier_from_package,
    )

    snp = snp_verifier_from_package()
    if snp is None:
        return None
    verifier = AzureCvmVerifier(snp=snp)
    evidence = parse_trustee_evidence((AZ / "trustee-az-snp-vtpm-milan" / "evidence-v1.json").read_bytes())
    now = datetime(2026, 8, 1, tzinfo=UTC)
    return lambda: verifier.verify(evidence, now=now, nonce=b"challenge")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    plan: list[tuple[str, Callable[[], Any] | None, Callable[[], None]]] = [
        ("tdx-real", tdx_real(), floor_fn("p256", 1)),
        ("tdx-guest", tdx_guest(), floor_fn("p256", 2)),
        ("snp-real", snp_real(), floor_fn("p384", 1)),
    ]
    for name, fn, floor in plan:
        if fn is None:
            print(f"{name:10s} skipped: affidavit.evidence.snp is not installed")
            continue
        ours, bottom = rate(fn, args.seconds), rate(floor, args.seconds)
        rows[name] = {
            "per_s": round(ours, 1),
            "floor_per_s": round(bottom, 1),
            "ratio": round(ours / bottom, 3),
        }
        print(
            f"{name:10s} {ours:8.0f} verifications/s  floor {bottom:8.0f}/s  ours/floor {ours / bottom:.2f}x"
        )
    print(json.dumps({"bench": "azure_cvm", "rows": rows, "ratio": rows["tdx-guest"]["ratio"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
