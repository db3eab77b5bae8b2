"""``affidavit attest azure-cvm``: MAA's guest attestation from inside an Azure confidential VM.

Through tpm2-tools against the vTPM (azure-cvm.md §2, §5): optionally write 64 bytes of user data to NV
0x01400002 (the paravisor then refreshes the report), read the HCL report from NV 0x01400001, the AK
(0x81000003) and its certificate (NV 0x01C101D0), quote the SHA-256 PCRs (0-7 on Linux) with an empty
nonce as Microsoft's clients do, create an ephemeral RSA decryption key in the NULL hierarchy bound by
PolicyPCR to those PCRs and certify it with the AK; on TDX fetch the TD quote for the HCL report's
TDREPORT from IMDS (``POST /acc/tdquote``), on SNP the VCEK chain from THIM; send
``POST /attest/AzureGuest``; unseal the answer with the ephemeral key inside the TPM (``tpm2_rsadecrypt``
under a PolicyPCR session), AES-GCM-decrypt the JWT and print it.

A real VM needs owner-authorised NV access (root, ``/dev/tpmrm0``); the defaults are Azure's. Tests use
swtpm with an HCL report written into its NV index, and a loopback IMDS stand-in.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from affidavit.client import ClientError
from affidavit.client.tpm_tools import TpmTools, parse_handle, parse_pcr_list
from affidavit.jose import b64url

HCL_REPORT_INDEX = 0x01400001
USER_DATA_INDEX = 0x01400002
AK_CERT_INDEX = 0x01C101D0
AK_HANDLE = 0x81000003
IMDS_URL = "http://169.254.169.254"
DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_EVENTLOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
API_VERSION = "2020-10-01"
ENC_KEY_ATTRIBUTES = "decrypt|fixedtpm|fixedparent|sensitivedataorigin|noda"
IMDS_TIMEOUT = 30.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class EphemeralKey:
    context: Path  # saved TPM context (the object itself is flushed after each tool)
    public: bytes  # TPM2B_PUBLIC
    certify_info: bytes
    certify_signature: bytes


class VtpmGuest:
    """The guest's side of the vTPM, through tpm2-tools; ``workdir`` holds the saved contexts."""

    def __init__(self, tools: TpmTools, workdir: Path, ak_handle: int = AK_HANDLE) -> None:
        self.tools = tools
        self.workdir = workdir
        self.ak_handle = ak_handle

    def _path(self, name: str) -> str:
        return str(self.workdir / name)

    def nv_read(self, index: int) -> bytes:
        out = self._path(f"nv-{index:x}")
        self.tools.run("tpm2_nvread", f"{index:#x}", "-C", "o", "-o", out)
        return Path(out).read_bytes()

    def nv_defined(self, index: int) -> bool:
        return f"{index:#x}" in self.tools.run("tpm2_getcap", "handles-nv-index")

    def write_user_data(self, data: bytes) -> None:
        """Define NV 0x01400002 afresh (64 bytes, owner auth) and write ``data`` (zero padded) to it."""
        if len(data) > 64:
            raise ClientError("user data is longer than 64 bytes", code="bad_argument")
        if self.nv_defined(USER_DATA_INDEX):
            self.tools.run("tpm2_nvundefine", f"{USER_DATA_INDEX:#x}", "-C", "o")
        self.tools.run(
            "tpm2_nvdefine",
            f"{USER_DATA_INDEX:#x}",
            "-C",
            "o",
            "-s",
            "64",
            "-a",
            "ownerread|ownerwrite|authread|authwrite",
        )
        Path(self._path("user-data")).write_bytes(data.ljust(64, b"\0"))
        self.tools.run("tpm2_nvwrite", f"{USER_DATA_INDEX:#x}", "-C", "o", "-i", self._path("user-data"))

    def ak_public(self) -> bytes:
        return self.tools.read_public(self.ak_handle)

    def ak_certificate(self) -> bytes | None:
        if not self.nv_defined(AK_CERT_INDEX):
            return None
        return self.nv_read(AK_CERT_INDEX).rstrip(b"\0") or None

    def quote(self, pcrs: Sequence[int]) -> tuple[bytes, bytes, dict[int, bytes]]:
        """(TPMS_ATTEST, raw RSA signature, SHA-256 PCR values) with an empty nonce."""
        try:
            q = self.tools.quote(self.ak_handle, tuple(pcrs), b"", ("sha256",))
        finally:
            self._flush()
        raw = q.signature[6:] if len(q.signature) > 6 else q.signature  # TPMT_SIGNATURE -> RSA bytes
        values = {i: v for alg, bank in q.pcrs if alg == 0x000B for i, v in bank}
        return q.attest, raw, values

    def _selection(self, pcrs: Sequence[int]) -> str:
        return "sha256:" + ",".join(str(i) for i in pcrs)

    def ephemeral_key(self, pcrs: Sequence[int]) -> EphemeralKey:
        """An RSA-2048 decryption key usable only with the PCRs' current values, certified by the AK."""
        t = self.tools
        try:
            t.run(
                "tpm2_createpolicy", "--policy-pcr", "-l", self._selection(pcrs), "-L", self._path("pcr.pol")
            )
            t.run(
                "tpm2_createprimary",
                "-C",
                "n",
                "-G",
                "rsa2048",
                "-a",
                ENC_KEY_ATTRIBUTES,
                "-L",
                self._path("pcr.pol"),
                "-c",
                self._path("enc.ctx"),
            )
            t.run("tpm2_flushcontext", "-t")
            t.run("tpm2_readpublic", "-c", self._path("enc.ctx"), "-o", self._path("enc.pub"))
            t.run("tpm2_flushcontext", "-t")
            t.run(
                "tpm2_certify",
                "-c",
                self._path("enc.ctx"),
                "-C",
                f"{self.ak_handle:#x}",
                "-g",
                "sha256",
                "-o",
                self._path("certify.info"),
                "-s",
                self._path("certify.sig"),
                "-f",
                "plain",
            )
        finally:
            self._flush()
        return EphemeralKey(
            Path(self._path("enc.ctx")),
            Path(self._path("enc.pub")).read_bytes(),
            Path(self._path("certify.info")).read_bytes(),
            Path(self._path("certify.sig")).read_bytes(),
        )

    def _flush(self) -> None:
        """Flush transient objects and sessions: without a resource manager (swtpm, early boot) a tool's
        sessions stay loaded, and a TPM has only three session slots."""
        for kind in ("-t", "-l", "-s"):
            self.tools.run("tpm2_flushcontext", kind)

    def decrypt(self, key: EphemeralKey, pcrs: Sequence[int], ciphertext: bytes) -> bytes:
        """RSAES-PKCS1-v1_5 decryption inside the TPM, in a PolicyPCR session."""
        t = self.tools
        session = self._path("session.ctx")
        Path(self._path("inner.enc")).write_bytes(ciphertext)
        try:
            t.run("tpm2_startauthsession", "--policy-session", "-S", session)
            t.run("tpm2_policypcr", "-S", session, "-l", self._selection(pcrs))
            t.run(
                "tpm2_rsadecrypt",
                "-c",
                str(key.context),
                "-p",
                f"session:{session}",
                "-s",
                "rsaes",
                "-o",
                self._path("inner.key"),
                self._path("inner.enc"),
            )
        finally:
            self._flush()
        return Path(self._path("inner.key")).read_bytes()


def fetch_td_quote(imds_url: str, tdreport: bytes) -> bytes:
    """The TD quote for ``tdreport`` from Azure IMDS (``POST /acc/tdquote``)."""
    try:
        r = httpx.post(
            f"{imds_url.rstrip('/')}/acc/tdquote",
            json={"report": b64url(tdreport)},
            headers={"Metadata": "true", "Accept": "application/json"},
            timeout=IMDS_TIMEOUT,
        )
        r.raise_for_status()
        quote = r.json()["quote"]
        return base64.urlsafe_b64decode(quote + "=" * (-len(quote) % 4))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"IMDS did not give a TD quote: {exc}", code="imds_failed") from None


def fetch_vcek_chain(imds_url: str) -> str:
    """VCEK + chain from THIM (``GET /metadata/THIM/amd/certification``), joined as the C++ lib does."""
    try:
        r = httpx.get(
            f"{imds_url.rstrip('/')}/metadata/THIM/amd/certification",
            headers={"Metadata": "true"},
            timeout=IMDS_TIMEOUT,
        )
        r.raise_for_status()
        doc = r.json()
        return str(doc["vcekCert"]) + str(doc["certificateChain"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"THIM did not give the VCEK chain: {exc}", code="imds_failed") from None


def build_attestation_info(
    *,
    hcl: bytes,
    guest: VtpmGuest,
    pcrs: Sequence[int],
    imds_url: str,
    tcg_log: bytes | None,
    client_payload: dict[str, str],
    os_fields: tuple[str, str, int, int, str],
) -> tuple[dict[str, Any], EphemeralKey]:
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.azure_cvm import parse_hcl_report
    from affidavit.evidence.azure_cvm.hcl import REPORT_TYPE_SNP, REPORT_TYPE_TDX

    try:
        report = parse_hcl_report(hcl)
    except EvidenceError as exc:
        raise ClientError(
            f"the HCL report in NV {HCL_REPORT_INDEX:#x} is unusable: {exc.message}", code="bad_evidence"
        ) from None
    if report.report_type == REPORT_TYPE_TDX:
        isolation: dict[str, Any] = {
            "Type": "Tdx",
            "Evidence": {
                "Proof": _b64(fetch_td_quote(imds_url, report.tdreport)),
                "RunTimeData": _b64(report.claims),
            },
        }
    elif report.report_type == REPORT_TYPE_SNP:
        proof = {
            "SnpReport": b64url(report.snp_report),
            "VcekCertChain": _b64(fetch_vcek_chain(imds_url).encode()),
        }
        isolation = {
            "Type": "SevSnp",
            "Evidence": {"Proof": _b64(json.dumps(proof).encode()), "RunTimeData": _b64(report.claims)},
        }
    else:
        raise ClientError(
            f"HCL report type {report.report_type_name} is not a CVM (SNP or TDX)", code="bad_evidence"
        )
    message, signature, values = guest.quote(pcrs)
    key = guest.ephemeral_key(pcrs)
    cert = guest.ak_certificate()
    os_type, distro, major, minor, build = os_fields
    info = {
        "AttestationProtocolVersion": "2.0",
        "OSType": _b64(os_type.encode()),
        "OSDistro": _b64(distro.encode()),
        "OSVersionMajor": major,
        "OSVersionMinor": minor,
        "OSBuild": _b64(build.encode()),
        "TcgLogs": _b64(tcg_log or b""),
        "ClientPayload": {k: _b64(v.encode()) for k, v in client_payload.items()},
        "TpmInfo": {
            "AikCert": _b64(cert or b""),
            "AikPub": _b64(guest.ak_public()),
            "PcrQuote": _b64(message),
            "PcrSignature": _b64(signature),
            "PcrSet": list(pcrs),
            "PCRs": [{"Index": i, "Digest": _b64(values[i])} for i in pcrs],
            "EncKeyPub": _b64(key.public),
            "EncKeyCertifyInfo": _b64(key.certify_info),
            "EncKeyCertifyInfoSignature": _b64(key.certify_signature),
        },
        "IsolationInfo": isolation,
    }
    return info, key


def _os_release() -> tuple[str, int, int]:
    """NAME and VERSION_ID from /etc/os-release (Linux), as the Microsoft clients read them."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            k, _, v = line.partition("=")
            fields[k] = v.strip().strip('"')
    except OSError:
        pass
    major, _, minor = fields.get("VERSION_ID", "0.0").partition(".")
    return (
        fields.get("NAME", "Linux").split()[0],
        int(major) if major.isdigit() else 0,
        (int(minor) if minor.isdigit() else 0),
    )


def attest(args: argparse.Namespace, workdir: Path) -> str:
    from affidavit.client.http import AttestationClient
    from affidavit.tokens.sealed import unseal_token

    guest = VtpmGuest(TpmTools(args.tcti), workdir, parse_handle(args.ak_handle))
    pcrs = parse_pcr_list(args.pcrs)
    if args.user_data:
        try:
            data = bytes.fromhex(args.user_data)
        except ValueError:
            raise ClientError("--user-data must be hex", code="bad_argument") from None
        guest.write_user_data(data)
        time.sleep(max(0.0, args.refresh_wait))
    payload: dict[str, str] = {}
    for item in args.claim:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ClientError(f"--claim {item!r}: use NAME=VALUE", code="bad_argument")
        payload[name] = value
    log = None
    if not args.no_eventlog:
        try:
            log = Path(args.eventlog).read_bytes()
        except OSError as exc:
            raise ClientError(
                f"cannot read the event log {args.eventlog}: {exc}", code="bad_argument"
            ) from None
    distro, major, minor = _os_release()
    info, key = build_attestation_info(
        hcl=guest.nv_read(HCL_REPORT_INDEX),
        guest=guest,
        pcrs=pcrs,
        imds_url=args.imds_url,
        tcg_log=log,
        client_payload=payload,
        os_fields=("Linux", distro, major, minor, "NotApplication"),
    )
    verify: bool | str = False if args.insecure else (str(args.ca_file) if args.ca_file else True)
    body = {"AttestationInfo": b64url(json.dumps(info).encode())}
    with AttestationClient(args.url, verify=verify, api_version=API_VERSION) as client:
        answer = client.post_json("/attest/AzureGuest", body, api_version=API_VERSION)
    sealed = answer.get("token")
    if not isinstance(sealed, str):
        raise ClientError("the service answered without a token", code="bad_response")
    from affidavit.tokens import TokenError

    try:
        return unseal_token(sealed, lambda ct: guest.decrypt(key, pcrs, ct))
    except TokenError as exc:
        raise ClientError(f"cannot unseal the token: {exc.message}", code="bad_response") from None
