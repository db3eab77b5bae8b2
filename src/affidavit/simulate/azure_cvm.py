"""A simulated Azure TDX confidential VM: a software vTPM (AK, PCR quote, certified ephemeral key), the
paravisor's runtime claims and HCL report, and a TD quote from the simulated Intel PKI.

Development stand-in only: its keys live in this process. ``affidavit attest azure-cvm`` talks to a real
(or swtpm) TPM through tpm2-tools instead; this model lets the service and its tests run the AzureGuest
flow without one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from affidavit.evidence.tpm import PcrSelection, marshal_pcr_selection
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.structures import (
    OA_DECRYPT,
    OA_FIXED_PARENT,
    OA_FIXED_TPM,
    OA_NO_DA,
    OA_RESTRICTED,
    OA_SENSITIVE_DATA_ORIGIN,
    OA_SIGN,
    OA_USER_WITH_AUTH,
)
from affidavit.jose import b64url

AK_ATTRIBUTES = (
    OA_FIXED_TPM | OA_FIXED_PARENT | OA_SENSITIVE_DATA_ORIGIN | OA_USER_WITH_AUTH | OA_RESTRICTED | OA_SIGN
)
ENC_ATTRIBUTES = OA_DECRYPT | OA_FIXED_TPM | OA_FIXED_PARENT | OA_SENSITIVE_DATA_ORIGIN | OA_NO_DA


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _tpm2b(data: bytes) -> bytes:
    return _u16(len(data)) + data


def rsa_tpmt_public(key: rsa.RSAPublicKey, attributes: int, *, signing: bool) -> bytes:
    """TPMT_PUBLIC of an RSA-2048 key: RSASSA-SHA256 for a signing key, scheme NULL otherwise."""
    numbers = key.public_numbers()
    scheme = _u16(c.ALG_RSASSA) + _u16(c.ALG_SHA256) if signing else _u16(c.ALG_NULL)
    return (
        _u16(c.ALG_RSA)
        + _u16(c.ALG_SHA256)
        + attributes.to_bytes(4, "big")
        + _tpm2b(b"")
        + _u16(c.ALG_NULL)
        + scheme
        + _u16(key.key_size)
        + (0 if numbers.e == 65537 else numbers.e).to_bytes(4, "big")
        + _tpm2b(numbers.n.to_bytes(key.key_size // 8, "big"))
    )


def name_of(tpmt_public: bytes) -> bytes:
    return _u16(c.ALG_SHA256) + hashlib.sha256(tpmt_public).digest()


def attest_bytes(kind: int, signer_name: bytes, extra: bytes, body: bytes, clock: int = 1000) -> bytes:
    """TPMS_ATTEST: magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested."""
    return (
        struct.pack(">IH", c.TPM_GENERATED_VALUE, kind)
        + _tpm2b(signer_name)
        + _tpm2b(extra)
        + struct.pack(">QIIB", clock, 1, 0, 1)
        + (0x2020031200120003).to_bytes(8, "big")
        + body
    )


def jwk_of(key: rsa.RSAPublicKey, kid: str, ops: str) -> dict[str, Any]:
    n = key.public_numbers()
    return {
        "kid": kid,
        "key_ops": [ops],
        "kty": "RSA",
        "e": b64url(n.e.to_bytes(3, "big")),
        "n": b64url(n.n.to_bytes(key.key_size // 8, "big")),
    }


@dataclass
class SoftVtpm:
    """The vTPM side: an AK, SHA-256 PCRs 0-7 and ephemeral keys, all in software."""

    ak: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ek: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    pcrs: dict[int, bytes] = field(
        default_factory=lambda: {i: hashlib.sha256(b"pcr%d" % i).digest() for i in range(8)}
    )

    @property
    def ak_public(self) -> bytes:
        return rsa_tpmt_public(self.ak.public_key(), AK_ATTRIBUTES, signing=True)

    def sign(self, message: bytes) -> bytes:
        return self.ak.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def quote(self, nonce: bytes = b"") -> tuple[bytes, bytes]:
        indexes = tuple(sorted(self.pcrs))
        digest = hashlib.sha256(b"".join(self.pcrs[i] for i in indexes)).digest()
        body = marshal_pcr_selection([PcrSelection(c.ALG_SHA256, indexes)]) + _tpm2b(digest)
        message = attest_bytes(c.ST_ATTEST_QUOTE, name_of(self.ak_public), nonce, body)
        return message, self.sign(message)

    def certified_key(self) -> tuple[rsa.RSAPrivateKey, bytes, bytes, bytes]:
        """A fresh ephemeral decryption key: (private key, TPM2B_PUBLIC, certify info, signature)."""
        key = rsa.generate_private_key(65537, 2048)
        public = rsa_tpmt_public(key.public_key(), ENC_ATTRIBUTES, signing=False)
        info = attest_bytes(
            c.ST_ATTEST_CERTIFY,
            name_of(self.ak_public),
            b"",
            _tpm2b(name_of(public)) + _tpm2b(name_of(public)),
        )
        return key, _tpm2b(public), info, self.sign(info)

    def runtime_claims(
        self, vm_id: str = "6332533D-5649-4D02-8AA7-8F64B7C3EE21", user_data: bytes = bytes(64)
    ) -> bytes:
        """The paravisor's runtime claims in its compact byte form."""
        doc = {
            "keys": [
                jwk_of(self.ak.public_key(), "HCLAkPub", "sign"),
                jwk_of(self.ek.public_key(), "HCLEkPub", "encrypt"),
            ],
            "vm-configuration": {
                "console-enabled": True,
                "secure-boot": True,
                "tpm-enabled": True,
                "tpm-persisted": True,
                "vmUniqueId": vm_id,
            },
            "user-data": user_data.hex().upper(),
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def report_data_for(claims: bytes) -> bytes:
    return hashlib.sha256(claims).digest() + bytes(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attestation_info(
    vtpm: SoftVtpm,
    runtime_claims: bytes,
    *,
    td_quote: bytes | None = None,
    snp_proof: dict[str, str] | None = None,
    tcg_log: bytes | None = None,
    client_payload: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], rsa.RSAPrivateKey]:
    """MAA's AttestationInfo JSON as the C++ client builds it, and the ephemeral key to unseal with."""
    message, signature = vtpm.quote()
    enc, enc_pub, info, info_sig = vtpm.certified_key()
    if td_quote is not None:
        isolation = {
            "Type": "Tdx",
            "Evidence": {"Proof": _b64(td_quote), "RunTimeData": _b64(runtime_claims)},
        }
    else:
        proof = json.dumps(snp_proof or {}).encode()
        isolation = {
            "Type": "SevSnp",
            "Evidence": {"Proof": _b64(proof), "RunTimeData": _b64(runtime_claims)},
        }
    doc = {
        "AttestationProtocolVersion": "2.0",
        "OSType": _b64(b"Linux"),
        "OSDistro": _b64(b"Ubuntu"),
        "OSVersionMajor": 24,
        "OSVersionMinor": 4,
        "OSBuild": _b64(b"NotApplication"),
        "TcgLogs": _b64(tcg_log or b""),
        "ClientPayload": client_payload if client_payload is not None else {"nonce": _b64(b"1234")},
        "TpmInfo": {
            "AikCert": "",
            "AikPub": _b64(_tpm2b(vtpm.ak_public)),
            "PcrQuote": _b64(message),
            "PcrSignature": _b64(signature),
            "PcrSet": sorted(vtpm.pcrs),
            "PCRs": [{"Index": i, "Digest": _b64(v)} for i, v in sorted(vtpm.pcrs.items())],
            "EncKeyPub": _b64(enc_pub),
            "EncKeyCertifyInfo": _b64(info),
            "EncKeyCertifyInfoSignature": _b64(info_sig),
        },
        "IsolationInfo": isolation,
    }
    return doc, enc


def request_body(info: dict[str, Any]) -> dict[str, str]:
    return {"AttestationInfo": b64url(json.dumps(info).encode())}
