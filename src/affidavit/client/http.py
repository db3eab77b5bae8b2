"""HTTP client for the attestation calls of an Affidavit (or MAA) service.

Request bodies follow MAA's wire format: byte fields are base64url without padding, runtime and init-time
data carry a ``dataType``. Connection errors, timeouts and the statuses a server uses for transient trouble
(502, 503, 504, 429) are retried with exponential backoff; a 4xx answer is final and surfaces as
:class:`ServiceRejected` with the service's own error code and message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit import strict_json
from affidavit.client import ClientError, ServiceRejected
from affidavit.jose import JoseError, b64url
from affidavit.jose import b64url_decode as jose_b64url_decode
from affidavit.ssl_verify import VerifyArg, ssl_verify

if TYPE_CHECKING:
    from affidavit.client.tpm import TpmEvidenceSource

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def b64url_decode(text: str) -> bytes:
    try:
        return jose_b64url_decode(text, what="the service's base64url")
    except JoseError:
        raise ClientError("the service sent malformed base64url", code="bad_response") from None


@dataclass(frozen=True)
class RuntimeData:
    """Data the enclave binds into its report data (SHA-256 of the bytes), sent beside the evidence."""

    data: bytes
    json: bool = False

    def to_wire(self) -> dict[str, str]:
        return {"data": b64url(self.data), "dataType": "JSON" if self.json else "Binary"}


@dataclass(frozen=True)
class AttestationResponse:
    token: str


class AttestationClient:
    """Calls ``/attest/*`` on one service. Thread-safe; reuse one per service."""

    def __init__(
        self,
        url: str,
        *,
        verify: VerifyArg = True,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        api_version: str = "2022-08-01",
        bearer_token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.api_version = api_version
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "affidavit-client"}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.Client(
            verify=ssl_verify(verify), timeout=timeout, headers=headers, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AttestationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the attest calls ------------------------------------------------------------------------------

    def attest(
        self,
        attestation_type: str,
        evidence: bytes,
        *,
        runtime_data: RuntimeData | None = None,
        init_time_data: RuntimeData | None = None,
        nonce: str | None = None,
        draft_policy: str | None = None,
    ) -> AttestationResponse:
        """One MAA-shaped attest call for any registered type (``affidavit.attestation_types``): its path,
        evidence member and api-version come from the registry."""
        from affidavit.attestation_types import MAA_SHAPE, UnknownAttestationType, lookup

        try:
            entry = lookup(attestation_type)
        except UnknownAttestationType as exc:
            raise ClientError(str(exc), code="bad_argument") from None
        if entry.request_shape != MAA_SHAPE:
            raise ClientError(f"{entry.name} uses its own protocol, not attest()", code="bad_argument")
        body = self._body(entry.evidence_field, evidence, runtime_data, init_time_data, nonce, draft_policy)
        answer = self.post_json(entry.path, body, api_version=entry.api_version)
        return AttestationResponse(self._token(answer))

    def attest_sgx(
        self,
        quote: bytes,
        *,
        runtime_data: RuntimeData | None = None,
        init_time_data: RuntimeData | None = None,
        nonce: str | None = None,
        draft_policy: str | None = None,
    ) -> AttestationResponse:
        return self.attest("SgxEnclave", quote, runtime_data=runtime_data, init_time_data=init_time_data,
                           nonce=nonce, draft_policy=draft_policy)

    def attest_open_enclave(
        self,
        report: bytes,
        *,
        runtime_data: RuntimeData | None = None,
        init_time_data: RuntimeData | None = None,
        nonce: str | None = None,
        draft_policy: str | None = None,
    ) -> AttestationResponse:
        return self.attest("OpenEnclave", report, runtime_data=runtime_data, init_time_data=init_time_data,
                           nonce=nonce, draft_policy=draft_policy)

    def attest_tdx(
        self,
        quote: bytes,
        *,
        runtime_data: RuntimeData | None = None,
        init_time_data: RuntimeData | None = None,
        nonce: str | None = None,
        draft_policy: str | None = None,
    ) -> AttestationResponse:
        return self.attest("TdxVm", quote, runtime_data=runtime_data, init_time_data=init_time_data,
                           nonce=nonce, draft_policy=draft_policy)

    def attest_snp(
        self,
        document: bytes,
        *,
        runtime_data: RuntimeData | None = None,
        init_time_data: RuntimeData | None = None,
        nonce: str | None = None,
        draft_policy: str | None = None,
    ) -> AttestationResponse:
        """``/attest/SevSnpVm`` with MAA's ``report`` document (``evidence.snp.maa.build_document``)."""
        body = self._body("report", document, runtime_data, init_time_data, nonce, draft_policy)
        return AttestationResponse(self._token(self.post_json("/attest/SevSnpVm", body)))

    def tpm_exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        """One round of MAA's TPM protocol: ``message`` goes out as ``{"data": b64url({"payload": ...})}``,
        and the answer's payload comes back."""
        from affidavit.attestation_types import TPM

        return open_envelope(self.post_json(TPM.path, envelope(message)))

    def attest_tpm(
        self,
        source: TpmEvidenceSource,
        *,
        rp_data: bytes | None = None,
        custom_claims: list[dict[str, Any]] | None = None,
        request_key: rsa.RSAPrivateKey | None = None,
    ) -> AttestationResponse:
        """MAA's TPM protocol: init, challenge, a quote bound to the request key, the signed request."""
        from affidavit.client.tpm import build_request

        key = request_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        answer = self.tpm_exchange({"type": "aikcert"})
        challenge, context = answer.get("challenge"), answer.get("service_context")
        if not isinstance(challenge, str) or not isinstance(context, str):
            raise ClientError("the service sent no challenge/service_context", code="bad_response")
        jws = build_request(source, challenge, context, key, rp_data=rp_data, custom_claims=custom_claims)
        report = self.tpm_exchange({"request": jws}).get("report")
        if not isinstance(report, str):
            raise ClientError("the service answered without a report", code="bad_response")
        return AttestationResponse(report)

    # -- plumbing --------------------------------------------------------------------------------------

    @staticmethod
    def _body(
        field: str,
        evidence: bytes,
        runtime_data: RuntimeData | None,
        init_time_data: RuntimeData | None,
        nonce: str | None,
        draft_policy: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {field: b64url(evidence)}
        if runtime_data is not None:
            body["runtimeData"] = runtime_data.to_wire()
        if init_time_data is not None:
            body["initTimeData"] = init_time_data.to_wire()
        if nonce is not None:
            body["nonce"] = nonce
        if draft_policy is not None:
            body["draftPolicyForAttestation"] = draft_policy
        return body

    @staticmethod
    def _token(answer: dict[str, Any]) -> str:
        token = answer.get("token")
        if not isinstance(token, str) or token.count(".") != 2:
            raise ClientError("service answer has no token", code="bad_response")
        return token

    def post_json(self, path: str, body: dict[str, Any], *, api_version: str | None = None) -> dict[str, Any]:
        params = {"api-version": api_version or self.api_version}
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http.post(self.url + path, params=params, json=body)
            except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
                last = exc
                continue
            if response.status_code in RETRY_STATUSES:
                last = ServiceRejected(response.status_code, *error_of(response))
                continue
            if response.status_code != 200:
                raise ServiceRejected(response.status_code, *error_of(response))
            try:
                answer = response.json()
            except ValueError:
                raise ClientError(f"{path} answered with non-JSON", code="bad_response") from None
            if not isinstance(answer, dict):
                raise ClientError(f"{path} answered with a non-object", code="bad_response")
            return answer
        if isinstance(last, ServiceRejected):
            raise last
        raise ClientError(
            f"cannot reach {self.url} after {self.retries + 1} attempts: {last}", code="unreachable"
        )


def envelope(message: dict[str, Any]) -> dict[str, str]:
    """``{"data": b64url(ASCII JSON {"payload": message})}``, as the SDK's ``attest_tpm`` sends it."""
    return {"data": b64url(json.dumps({"payload": message}, ensure_ascii=True).encode("ascii"))}


def open_envelope(body: Any) -> dict[str, Any]:
    """The payload of a TPM answer ``{"data": b64url(ASCII JSON {"payload": {...}})}``."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, str):
        raise ClientError('the service answer lacks "data"', code="bad_response")
    try:
        inner = strict_json.loads(b64url_decode(data).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ClientError("the service answer is not base64url ASCII JSON", code="bad_response") from None
    payload = inner.get("payload") if isinstance(inner, dict) else None
    if not isinstance(payload, dict):
        raise ClientError('the service answer is not {"payload": {...}}', code="bad_response")
    return payload


def error_of(response: httpx.Response) -> tuple[str, str]:
    """The service's (code, message); an answer that is not MAA's error JSON (another server on the
    port, a proxy's error page) is ``bad_response`` with the start of its text."""
    try:
        err = response.json().get("error", {})
        return str(err.get("code", "Unknown")), str(err.get("message", response.text[:200]))[:2000]
    except (ValueError, AttributeError):
        text = " ".join(response.text.split())[:200]
        return "bad_response", f"HTTP {response.status_code} {text}: is this an Affidavit or MAA service?"
