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
VM_ID = "6332533D-5649-4D02-8AA7-8F64B7C3EE21"
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

    def runtime_claims(self, vm_id: str = VM_ID, user_data: bytes = bytes(64)) -> bytes:
        """The paravisor's runtime claims in its compact byte form."""
        return runtime_claims_for(
            self.ak.public_key(), self.ek.public_key(), vm_id=vm_id, user_data=user_data
        )


def runtime_claims_for(
    ak: rsa.RSAPublicKey,
    ek: rsa.RSAPublicKey | None = None,
    *,
    vm_id: str = VM_ID,
    user_data: bytes | None = bytes(64),
) -> bytes:
    """Runtime claims naming ``ak`` as HCLAkPub (and ``ek`` as HCLEkPub), compact as the paravisor writes."""
    keys = [jwk_of(ak, "HCLAkPub", "sign")]
    if ek is not None:
        keys.append(jwk_of(ek, "HCLEkPub", "encrypt"))
    doc: dict[str, Any] = {
        "keys": keys,
        "vm-configuration": {
            "console-enabled": True,
            "secure-boot": True,
            "tpm-enabled": True,
            "tpm-persisted": True,
            "vmUniqueId": vm_id,
        },
    }
    if user_data is not None:
        doc["user-data"] = user_data.hex().upper()
    return json.dumps(doc, separators=(",", ":")).encode()


def _pad(b: bytes, n: int) -> bytes:
    return bytes(b).ljust(n, b"\0")[:n]


def tdreport_bytes(
    *,
    mrtd: bytes,
    report_data: bytes,
    tee_tcb_svn: bytes,
    mrseam: bytes,
    xfam: int,
    td_attributes: int,
    rtmrs: tuple[bytes, ...] = (),
    mr_config_id: bytes = b"",
    mr_owner: bytes = b"",
    mr_owner_config: bytes = b"",
) -> bytes:
    """A TDREPORT_STRUCT with consistent TEE_TCB_INFO / TDINFO hashes (the MAC is left zero: it is
    CPU-local and never checked off the machine)."""
    tcb_info = (
        bytes.fromhex("ff01030000000000")
        + _pad(tee_tcb_svn, 16)
        + _pad(mrseam, 48)
        + bytes(48)
        + bytes(8)
        + _pad(tee_tcb_svn, 16)
    ).ljust(239, b"\0")
    rt = b"".join(_pad(r, 48) for r in (list(rtmrs) + [b""] * 4)[:4])
    tdinfo = (
        td_attributes.to_bytes(8, "little")
        + xfam.to_bytes(8, "little")
        + _pad(mrtd, 48)
        + _pad(mr_config_id, 48)
        + _pad(mr_owner, 48)
        + _pad(mr_owner_config, 48)
        + rt
    ).ljust(512, b"\0")
    mac_struct = (
        bytes([0x81, 0, 0, 0])
        + bytes(12)
        + bytes(16)
        + hashlib.sha384(tcb_info).digest()
        + hashlib.sha384(tdinfo).digest()
        + _pad(report_data, 64)
        + bytes(32)
        + bytes(32)
    )
    return mac_struct + tcb_info + bytes(17) + tdinfo


def hcl_report(hardware_report: bytes, claims: bytes, *, report_type: int = 4, buffer: int = 2048) -> bytes:
    """The HCL report blob as the paravisor stores it in NV 0x01400001 (header v2, request data v1)."""
    data_size = 20 + len(claims)
    body = (
        b"HCLA"
        + struct.pack("<4I", 2, 1216 + data_size, 2, 0)
        + bytes(12)
        + _pad(hardware_report, 1184)
        + struct.pack("<5I", data_size, 1, report_type, 1, len(claims))
        + claims
    )
    if len(body) > buffer:
        raise ValueError(f"the HCL report needs {len(body)} bytes, more than the {buffer}-byte buffer")
    return body.ljust(buffer, b"\0")


def td_quote_for(platform: Any, tdreport: bytes) -> bytes:
    """What IMDS answers for a TDREPORT: a TD quote over its fields, from a ``SimulatedPlatform``."""
    from affidavit.evidence.azure_cvm import parse_tdreport

    td = parse_tdreport(tdreport)
    return bytes(
        platform.tdx_quote(
            mrtd=td.mrtd,
            rtmrs=td.rtmrs,
            report_data=td.report_data,
            td_attributes=int.from_bytes(td.td_attributes, "little"),
            xfam=int.from_bytes(td.xfam, "little"),
            mrseam=td.mrseam,
            tee_tcb_svn=list(td.tee_tcb_svn),
            mr_config_id=td.mr_config_id,
            mr_owner=td.mr_owner,
            mr_owner_config=td.mr_owner_config,
        )
    )


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
