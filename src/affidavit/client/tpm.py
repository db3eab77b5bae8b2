"""TPM attestation client: the evidence (quote, boot log) and the signed request of MAA's TPM protocol.

``AttestationClient.attest_tpm(TpmEvidenceSource(...))`` (``affidavit.client.http``) runs the exchange.

The protocol (``affidavit.service.tpm_protocol`` documents the server side): send ``{"type": "aikcert"}``,
receive a challenge and an opaque ``service_context``, quote the PCRs with qualifying data
``SHA-256(jwk || 0x00 || challenge)`` -- MAA's ``tpm_quote`` binding, which ties the quote to the request
key the token will carry in ``cnf`` -- and send a PS256 ``attReq`` JWS signed by that request key. The
request key is a fresh RSA-2048 key per attestation unless one is given.

Evidence comes from tpm2-tools (``affidavit.client.tpm_tools``) against ``/dev/tpmrm0`` or any TCTI
(``swtpm:host=127.0.0.1,port=2321``); the event log from the kernel's securityfs or a file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit import jose
from affidavit.client import ClientError
from affidavit.client.http import b64url_decode
from affidavit.jose import b64url

DEFAULT_EVENTLOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_TCTI = "device:/dev/tpmrm0"
API_VERSION = "2020-10-01"


def rsa_jwk(key: rsa.RSAPublicKey) -> dict[str, str]:
    return jose.public_jwk(key)


canonical_jwk = jose.canonical_jwk  # the text hashed into the quote (the service hashes the same)


def quote_binding(jwk: Mapping[str, Any], challenge: bytes) -> bytes:
    """Qualifying data for the quote: MAA's ``tpm_quote`` binding with ``hash_alg`` sha-256."""
    return hashlib.sha256(canonical_jwk(jwk).encode("utf-8") + b"\x00" + challenge).digest()


def sign_request(
    payload: Mapping[str, Any], key: rsa.RSAPrivateKey, *, alg: str = "PS256", typ: str = "attReq"
) -> str:
    """A compact JWS over ``payload`` (PS256 as MAA specifies, or RS256)."""
    if alg not in ("PS256", "RS256"):
        raise ClientError(f"unsupported request signing algorithm {alg}", code="bad_argument")
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return jose.sign_compact({"alg": alg, "typ": typ}, body, key)


# ---------------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Quote:
    """What the TPM produced for one challenge."""

    attest: bytes  # TPMS_ATTEST
    signature: bytes  # TPMT_SIGNATURE
    pcrs: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]  # (TPM_ALG_ID, ((index, digest), ...))

    def pcrs_json(self) -> list[dict[str, Any]]:
        return [
            {"algorithm": alg, "values": [{"index": i, "digest": b64url(d)} for i, d in values]}
            for alg, values in self.pcrs
        ]


@dataclass(frozen=True)
class AkMaterial:
    """The attestation key as the service needs it: TPM2B_PUBLIC and (optionally) its certificate."""

    public: bytes  # TPM2B_PUBLIC
    certificate: bytes | None = None  # DER


# A quoter takes qualifying data and returns the quote; the tpm2-tools one lives in tpm_tools.
Quoter = Callable[[bytes], Quote]


@dataclass(frozen=True)
class TpmEvidenceSource:
    ak: AkMaterial
    quoter: Quoter
    event_log: bytes | None


def build_request(
    source: TpmEvidenceSource,
    challenge_text: str,
    service_context: str,
    key: rsa.RSAPrivateKey,
    *,
    rp_data: bytes | None = None,
    custom_claims: list[dict[str, Any]] | None = None,
) -> str:
    """Quote for the challenge (bound to ``key``) and sign the ``attReq`` carrying the evidence."""
    jwk = rsa_jwk(key.public_key())
    quote = source.quoter(quote_binding(jwk, b64url_decode(challenge_text)))
    claim = {"quote": b64url(quote.attest), "signature": b64url(quote.signature), "pcrs": quote.pcrs_json()}
    tpm_att_data: dict[str, Any] = {
        "aik_pub": b64url(source.ak.public),
        "current_claim": b64url(json.dumps(claim, separators=(",", ":")).encode("ascii")),
    }
    if source.ak.certificate is not None:
        tpm_att_data["aik_cert"] = b64url(source.ak.certificate)
    if source.event_log is not None:
        tpm_att_data["srtm_boot_log"] = b64url(source.event_log)
    att_data: dict[str, Any] = {
        "challenge": challenge_text,
        "tpm_att_data": tpm_att_data,
        "attest_key": jwk,
        "request_key": {"jwk": jwk, "info": {"tpm_quote": {"hash_alg": "sha-256"}}},
        "service_context": service_context,
    }
    if rp_data is not None:
        att_data["rp_data"] = b64url(rp_data)
    if custom_claims:
        att_data["custom_claims"] = custom_claims
    return sign_request({"att_type": "basic", "att_data": att_data}, key)


def load_certificate(path: Path) -> bytes:
    """An AK certificate file, PEM or DER, as DER."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}", code="bad_argument") from None
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise ClientError(f"{path} is not an X.509 certificate (PEM or DER)", code="bad_argument") from None
    return cert.public_bytes(serialization.Encoding.DER)


def read_event_log(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read the event log {path}: {exc.strerror}", code="bad_argument") from None
