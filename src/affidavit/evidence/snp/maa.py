"""MAA's SevSnpVm ``report`` document (sev-snp.md §5.2), decoded and turned into claims (pure).

``report`` (already base64-decoded by the request shape) is UTF-8 JSON ``{"SnpReport": b64url(1184
bytes), "VcekCertChain": b64url(PEM VCEK+ASK+ARK), "Endorsements": b64url(JSON {"Uvm": [b64url(COSE)]})}``,
parsed as JSON (pretty-printed or compact), base64 padded or not, url-safe or standard; a bare 1184-byte
report is accepted too. A client-sent chain is used only through `verify_report`, i.e. only when it
chains to a pinned ARK. The service's SevSnpVm verifier (`affidavit.service.snp_route`) adds collateral.

Limits (refused with ``snp_report_malformed``): the document 256 KiB, ``VcekCertChain`` 32 KiB of PEM,
at most 4 UVM endorsements of 64 KiB each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from affidavit import strict_json
from affidavit.evidence.snp.claims import AFFIDAVIT_PREFIX
from affidavit.evidence.snp.errors import REPORT_MALFORMED, SnpError
from affidavit.evidence.snp.report import REPORT_SIZE, SnpReport, parse_report
from affidavit.evidence.snp.uvm import UvmEndorsement, parse_uvm_endorsement
from affidavit.jose import JoseError
from affidavit.jose.b64 import b64decode_lenient

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_CHAIN_BYTES = 32 * 1024
MAX_ENDORSEMENTS = 4


def _fail(message: str) -> SnpError:
    return SnpError(message, code=REPORT_MALFORMED)


def b64_lenient(text: object, what: str) -> bytes:
    """base64url or standard, padded or not; whitespace inside is ignored (pretty-printed clients)."""
    if not isinstance(text, str):
        raise _fail(f"{what} is not a base64 string")
    try:
        return b64decode_lenient("".join(text.split()), what)
    except JoseError as exc:
        raise _fail(exc.message) from None


@dataclass(frozen=True)
class SnpEvidence:
    """A decoded SevSnpVm ``report``: the parsed hardware report, the chain the client sent (PEM, or
    None) and the UVM endorsements it carried."""

    report: SnpReport
    chain: bytes | None
    endorsements: tuple[UvmEndorsement, ...] = ()


def parse_document(data: bytes) -> SnpEvidence:
    """MAA's report JSON (or a bare report) -> `SnpEvidence`; raises `SnpError`."""
    if len(data) == REPORT_SIZE and data[:1] != b"{":
        return SnpEvidence(parse_report(data), None)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _fail(f"the report document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = strict_json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail("report is neither a 1184-byte SNP report nor a JSON document") from None
    if not isinstance(doc, dict):
        raise _fail("the report document is not a JSON object")
    if "SnpReport" not in doc:
        raise _fail("the report document lacks SnpReport")
    report = parse_report(b64_lenient(doc["SnpReport"], "SnpReport"))
    chain = None
    if doc.get("VcekCertChain"):
        chain = b64_lenient(doc["VcekCertChain"], "VcekCertChain")
        if len(chain) > MAX_CHAIN_BYTES:
            raise _fail(f"VcekCertChain is larger than {MAX_CHAIN_BYTES} bytes")
    endorsements: list[UvmEndorsement] = []
    if doc.get("Endorsements"):
        try:
            inner = strict_json.loads(b64_lenient(doc["Endorsements"], "Endorsements").decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _fail("Endorsements is not base64 JSON") from None
        uvm = inner.get("Uvm", []) if isinstance(inner, dict) else None
        if not isinstance(uvm, list) or len(uvm) > MAX_ENDORSEMENTS:
            raise _fail(f"Endorsements.Uvm must be a list of at most {MAX_ENDORSEMENTS}")
        endorsements = [parse_uvm_endorsement(b64_lenient(u, "Endorsements.Uvm[]")) for u in uvm]
    return SnpEvidence(report, chain, tuple(endorsements))


def uvm_claims(evidence: SnpEvidence) -> dict[str, Any]:
    """Affidavit claims about the first UVM endorsement (its COSE signature is NOT verified)."""
    if not evidence.endorsements:
        return {}
    uvm = evidence.endorsements[0]
    p = AFFIDAVIT_PREFIX + "uvm-"
    out: dict[str, Any] = {
        p + "launchmeasurement": uvm.launch_measurement,
        p + "guestsvn": uvm.guest_svn,
        p + "measurement-matches": uvm.launch_measurement == evidence.report.measurement.hex(),
        p + "signature-verified": False,
    }
    if uvm.issuer:
        out[p + "issuer"] = uvm.issuer
    if uvm.feed:
        out[p + "feed"] = uvm.feed
    return out


def build_document(report: bytes, chain_pem: bytes | None = None, uvm: tuple[bytes, ...] = ()) -> bytes:
    """The client side: MAA's report JSON for a raw report, its VEK chain (PEM: VCEK, ASK, ARK) and UVM
    endorsements (COSE_Sign1 bytes), each base64url as confidential-sidecar sends them."""
    from affidavit.jose import b64url

    doc: dict[str, str] = {"SnpReport": b64url(report)}
    if chain_pem:
        doc["VcekCertChain"] = b64url(chain_pem)
    if uvm:
        doc["Endorsements"] = b64url(json.dumps({"Uvm": [b64url(u) for u in uvm]}).encode())
    return json.dumps(doc).encode()
