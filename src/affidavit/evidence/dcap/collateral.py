"""The verifier's model of Intel collateral, and the offline JSON form it can be read from.

`SgxCollateral` holds the exact signed bytes (TCB Info and QE identity JSON text, DER certificates and
CRLs) plus their parsed forms. It is independent of where the collateral came from: `load_collateral`
reads the offline form used by ../shared/vectors (dcap-qvl's ``QuoteCollateralV3`` JSON), and
`SgxCollateral.from_parts` takes what the PCS API returns (bodies, PEM issuer-chain headers, DER or PEM
CRLs). ``digest`` identifies one collateral set; verifiers cache their verification of it by that value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from affidavit import strict_json
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap.tcbinfo import EnclaveIdentity, TcbInfo, parse_enclave_identity, parse_tcb_info

# Generous bound on any one collateral document (real ones are 2-40 KB; a PCK CRL may grow).
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024


def _fail(message: str) -> EvidenceError:
    return EvidenceError(message, code="collateral_malformed")


def _bytes(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes | bytearray):
        raise _fail(f"{what} must be text or bytes")
    if len(value) > MAX_DOCUMENT_SIZE:
        raise _fail(f"{what} is larger than {MAX_DOCUMENT_SIZE} bytes")
    return bytes(value)


def parse_certificates(data: bytes | str, what: str) -> tuple[x509.Certificate, ...]:
    """A PEM chain (or one DER certificate) → certificates, in order."""
    raw = _bytes(data, what).rstrip(b"\0")
    from affidavit import x509load

    certs = tuple(x509load.load_certificates(raw, _fail, f"{what} (certificate chain)"))
    if not certs:
        raise _fail(f"{what}: no certificates")
    return certs


def parse_crl(data: bytes | str, what: str) -> x509.CertificateRevocationList:
    """A CRL in DER, PEM or hex of DER."""
    raw = _bytes(data, what).strip()
    try:
        if raw.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(raw)
        if re.fullmatch(rb"[0-9a-fA-F]+", raw):
            raw = bytes.fromhex(raw.decode())
        return x509.load_der_x509_crl(raw)
    except ValueError as exc:
        raise _fail(f"{what}: not a valid CRL ({exc})") from None


def _signature(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise _fail(f"{what} is not hex") from None
    if not isinstance(value, bytes | bytearray) or len(value) != 64:
        raise _fail(f"{what} must be a 64-byte r||s ECDSA signature")
    return bytes(value)


def signed_json(body: bytes | str, key: str) -> tuple[bytes, bytes]:
    """Split a PCS body ``{"<key>":{...},"signature":"<hex>"}`` into the exact signed bytes and signature.

    The signature covers the ``key`` value exactly as served, so it is cut out of the text rather than
    re-serialised.
    """
    raw = _bytes(body, f"{key} response body")
    try:
        doc = strict_json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(f"{key} response body is not JSON: {exc}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get(key), dict)
        or not isinstance(doc.get("signature"), str)
    ):
        raise _fail(f"{key} response body must be {{{key!r}: {{...}}, 'signature': hex}}")
    m = re.search(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*', raw)
    if m is None:
        raise _fail(f"{key} not found in response body")
    start = m.end()
    decoder = json.JSONDecoder()
    text = raw.decode()
    # Byte and character offsets agree while the prefix is ASCII, which PCS bodies are.
    if not raw[:start].isascii():
        raise _fail(f"{key} response body is not ASCII")
    try:
        _, end = decoder.raw_decode(text, start)
    except ValueError as exc:
        raise _fail(f"{key} response body: {exc}") from None
    return text[start:end].encode(), _signature(doc["signature"], f"{key} signature")


@dataclass(frozen=True)
class SgxCollateral:
    """One set of Intel collateral for one platform (FMSPC, CA) and TEE type.

    Chains are signer first, root last. Construct with `from_parts` or `load_collateral`.
    """

    tcb_info_json: bytes
    tcb_info_signature: bytes
    tcb_info_issuer_chain: tuple[x509.Certificate, ...]
    qe_identity_json: bytes
    qe_identity_signature: bytes
    qe_identity_issuer_chain: tuple[x509.Certificate, ...]
    pck_crl: x509.CertificateRevocationList
    pck_crl_issuer_chain: tuple[x509.Certificate, ...]
    root_ca_crl: x509.CertificateRevocationList
    tcb_info: TcbInfo = field(init=False, repr=False, compare=False)
    qe_identity: EnclaveIdentity = field(init=False, repr=False, compare=False)
    digest: bytes = field(init=False, repr=False, compare=False)
    # DER encodings, made once here (`cryptography` re-encodes on every call) for the digest and the
    # ``x-ms-sgx-collateral`` hashes: each chain's certificates concatenated, signer first; the CRLs.
    der: dict[str, bytes] = field(init=False, repr=False, compare=False)
    # Each chain's certificates' DER, in chain order: what the verifier reads names and TBS from.
    certificate_der: dict[str, tuple[bytes, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        object.__setattr__(self, "tcb_info", parse_tcb_info(self.tcb_info_json))
        object.__setattr__(self, "qe_identity", parse_enclave_identity(self.qe_identity_json))
        certificate_der = {
            name: tuple(c.public_bytes(Encoding.DER) for c in getattr(self, name))
            for name in ("tcb_info_issuer_chain", "qe_identity_issuer_chain", "pck_crl_issuer_chain")
        }
        object.__setattr__(self, "certificate_der", certificate_der)
        der = {name: b"".join(chain) for name, chain in certificate_der.items()}
        der["pck_crl"] = self.pck_crl.public_bytes(Encoding.DER)
        der["root_ca_crl"] = self.root_ca_crl.public_bytes(Encoding.DER)
        object.__setattr__(self, "der", der)
        parts = [
            self.tcb_info_json,
            self.tcb_info_signature,
            self.qe_identity_json,
            self.qe_identity_signature,
            *der.values(),
        ]
        h = hashlib.sha256()
        for part in parts:
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        object.__setattr__(self, "digest", h.digest())

    @classmethod
    def from_parts(
        cls,
        *,
        tcb_info: bytes | str,
        tcb_info_signature: bytes | str,
        tcb_info_issuer_chain: bytes | str,
        qe_identity: bytes | str,
        qe_identity_signature: bytes | str,
        qe_identity_issuer_chain: bytes | str,
        pck_crl: bytes | str,
        pck_crl_issuer_chain: bytes | str,
        root_ca_crl: bytes | str,
    ) -> SgxCollateral:
        """Build from the signed JSON texts, hex or raw signatures, PEM chains and DER/PEM/hex CRLs."""
        return cls(
            tcb_info_json=_bytes(tcb_info, "tcb_info"),
            tcb_info_signature=_signature(tcb_info_signature, "tcb_info_signature"),
            tcb_info_issuer_chain=parse_certificates(tcb_info_issuer_chain, "tcb_info_issuer_chain"),
            qe_identity_json=_bytes(qe_identity, "qe_identity"),
            qe_identity_signature=_signature(qe_identity_signature, "qe_identity_signature"),
            qe_identity_issuer_chain=parse_certificates(qe_identity_issuer_chain, "qe_identity_issuer_chain"),
            pck_crl=parse_crl(pck_crl, "pck_crl"),
            pck_crl_issuer_chain=parse_certificates(pck_crl_issuer_chain, "pck_crl_issuer_chain"),
            root_ca_crl=parse_crl(root_ca_crl, "root_ca_crl"),
        )

    def to_json(self) -> dict[str, str]:
        """The offline JSON form that `load_collateral` reads (dcap-qvl's ``QuoteCollateralV3``)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        def pem(chain: tuple[x509.Certificate, ...]) -> str:
            return "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)

        return {
            "pck_crl_issuer_chain": pem(self.pck_crl_issuer_chain),
            "root_ca_crl": self.der["root_ca_crl"].hex(),
            "pck_crl": self.der["pck_crl"].hex(),
            "tcb_info_issuer_chain": pem(self.tcb_info_issuer_chain),
            "tcb_info": self.tcb_info_json.decode(),
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": pem(self.qe_identity_issuer_chain),
            "qe_identity": self.qe_identity_json.decode(),
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }


OFFLINE_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)


def load_collateral(obj: dict[str, Any] | str | bytes) -> SgxCollateral:
    """Read the offline JSON form (a dict, or its JSON text) into `SgxCollateral`."""
    if isinstance(obj, bytes | bytearray | str):
        if len(obj) > 8 * MAX_DOCUMENT_SIZE:
            raise _fail("collateral JSON is too large")
        try:
            obj = strict_json.loads(obj)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _fail(f"collateral is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _fail("collateral must be a JSON object")
    missing = [k for k in OFFLINE_KEYS if k not in obj]
    if missing:
        raise _fail(f"collateral lacks {', '.join(missing)}")
    for k in OFFLINE_KEYS:
        if not isinstance(obj[k], str):
            raise _fail(f"collateral field {k} must be a string")
    return SgxCollateral.from_parts(**{k: obj[k] for k in OFFLINE_KEYS})
