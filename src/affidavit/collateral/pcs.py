"""Client for Intel's PCS v4 API and PCCS caches that expose the same paths.

Fetches the collateral items a DCAP quote needs (TCB Info, QE / TD_QE identity, PCK CRL, root CA CRL)
and reads their issuer chains from the response headers. Transient failures (connection errors,
timeouts, 429 and 5xx) are retried a bounded number of times with exponential backoff; anything else
fails at once. Responses are parsed, not trusted: the cache verifies every item before keeping it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.collateral import CollateralError
from affidavit.collateral.items import (
    PCK_CRL,
    QE_IDENTITY,
    ROOT_CA_CRL,
    TCB_INFO,
    CollateralItem,
    CollateralSet,
    ItemKey,
    crl_item,
    invalid,
    platform_keys,
    signed_item,
)

log = logging.getLogger(__name__)

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
UPDATE_TYPES = ("standard", "early")

TCB_INFO_CHAIN_HEADERS = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
IDENTITY_CHAIN_HEADERS = ("SGX-Enclave-Identity-Issuer-Chain",)
PCK_CRL_CHAIN_HEADERS = ("SGX-PCK-CRL-Issuer-Chain",)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_BODY = 2 * 1024 * 1024
_MAX_RETRY_AFTER = 30.0


# --- parsing of PCS responses (pure) ------------------------------------------------------------------


def signed_field(body: bytes, field: str) -> tuple[str, str]:
    """The exact text of ``field`` (``tcbInfo`` / ``enclaveIdentity``) and the hex ``signature``.

    The signature covers the field's bytes as they appear in the body, so the value is sliced out of
    the body rather than re-serialised.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"{field} response is not UTF-8") from exc
    decoder = json.JSONDecoder()
    spans: dict[str, str] = {}
    values: dict[str, object] = {}
    try:
        i = _skip_ws(text, 0)
        if text[i : i + 1] != "{":
            raise invalid(f"{field} response is not a JSON object")
        i = _skip_ws(text, i + 1)
        while text[i : i + 1] != "}":
            if text[i : i + 1] != '"':
                raise invalid(f"{field} response: malformed JSON object")
            name, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                raise invalid(f"{field} response: malformed JSON object")
            start = _skip_ws(text, i + 1)
            value, end = decoder.raw_decode(text, start)
            if name in spans:
                raise invalid(f"{field} response: duplicate key {name[:40]!r}")
            spans[name], values[name] = text[start:end], value
            i = _skip_ws(text, end)
            if text[i : i + 1] == ",":
                i = _skip_ws(text, i + 1)
                if text[i : i + 1] == "}":
                    raise invalid(f"{field} response: malformed JSON object")
            elif text[i : i + 1] != "}":
                raise invalid(f"{field} response: malformed JSON object")
        if text[_skip_ws(text, i + 1) :]:
            raise invalid(f"{field} response: data after the JSON object")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        if isinstance(exc, CollateralError):
            raise
        raise invalid(f"{field} response is not valid JSON") from exc
    if not isinstance(values.get(field), dict):
        raise invalid(f"{field} response lacks the {field} object")
    signature = values.get("signature")
    if not isinstance(signature, str):
        raise invalid(f"{field} response lacks the signature")
    return spans[field], signature


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def issuer_chain(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    """The URL-decoded PEM issuer chain from the first header present among ``names``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = next((lowered[n.lower()] for n in names if n.lower() in lowered), None)
    if raw is None:
        raise invalid(f"response lacks the {names[0]} header")
    pem = unquote(raw)
    from affidavit import x509load

    x509load.load_pem_certificates(pem.encode(), invalid, f"{names[0]} header (a URL-encoded PEM chain)")
    return pem


def crl_der(body: bytes) -> bytes:
    """A CRL body as DER: PCS sends DER (``encoding=der``) or PEM, PCCS sometimes hex text."""
    stripped = body.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_crl(stripped).public_bytes(Encoding.DER)
        except ValueError as exc:
            raise invalid("CRL response is not a PEM CRL") from exc
    if stripped[:1] != b"\x30":
        try:
            return bytes.fromhex(stripped.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise invalid("CRL response is neither DER, PEM nor hex") from exc
    return body


def parse_signed_response(kind: str, body: bytes, headers: Mapping[str, str]) -> CollateralItem:
    """A TCB Info or QE identity item from a PCS response."""
    if kind == TCB_INFO:
        text, signature = signed_field(body, "tcbInfo")
        chain = issuer_chain(headers, TCB_INFO_CHAIN_HEADERS)
    else:
        text, signature = signed_field(body, "enclaveIdentity")
        chain = issuer_chain(headers, IDENTITY_CHAIN_HEADERS)
    return signed_item(kind, text, signature, chain)


def parse_crl_response(kind: str, body: bytes, headers: Mapping[str, str]) -> CollateralItem:
    """A PCK CRL (issuer chain from its header) or root CA CRL item from a response."""
    chain = issuer_chain(headers, PCK_CRL_CHAIN_HEADERS) if kind == PCK_CRL else ""
    return crl_item(kind, crl_der(body), chain)


# --- the client ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PcsConfig:
    """Where and how to fetch collateral."""

    base_url: str = INTEL_PCS_URL
    api_key: str | None = None
    update: str = "standard"
    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.5
    # default: Intel's certificate site for PCS, ``/sgx/certification/v4/rootcacrl`` for a PCCS
    root_ca_crl_url: str | None = None

    def __post_init__(self) -> None:
        if self.update not in UPDATE_TYPES:
            raise CollateralError(f"update must be one of {', '.join(UPDATE_TYPES)}, not {self.update!r}")
        if self.retries < 0 or self.timeout <= 0 or self.backoff < 0:
            raise CollateralError("PCS timeout must be positive, retries and backoff non-negative")

    def root_crl_url(self) -> str:
        if self.root_ca_crl_url:
            return self.root_ca_crl_url
        if urlsplit(self.base_url).hostname == urlsplit(INTEL_PCS_URL).hostname:
            return INTEL_ROOT_CA_CRL_URL
        return f"{self.base_url.rstrip('/')}/sgx/certification/v4/rootcacrl"


class PcsClient:
    """Fetches collateral items from Intel PCS or a PCCS (same v4 paths)."""

    def __init__(self, config: PcsConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config or PcsConfig()
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self.requests = 0  # upstream requests made, retries included

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"Accept": "application/json, application/pkix-crl, */*"}
            if self.config.api_key:
                headers["Ocp-Apim-Subscription-Key"] = self.config.api_key
            self._http = httpx.AsyncClient(
                timeout=self.config.timeout, headers=headers, transport=self._transport, follow_redirects=True
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _url(self, tee: str, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{tee}/certification/v4/{path}"

    async def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            delay = self.config.backoff * (2**attempt)
            try:
                self.requests += 1
                response = await self._client().get(url, params=params)
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    if len(response.content) > _MAX_BODY:
                        raise invalid(f"{url}: response larger than {_MAX_BODY} bytes")
                    return response
                failure = _describe(response)
                if response.status_code == 404:
                    raise CollateralError(f"{url}: not found ({failure})", code="collateral_not_found")
                if response.status_code not in _RETRY_STATUS:
                    raise CollateralError(f"{url}: {failure}", code="collateral_unavailable")
                delay = max(delay, _retry_after(response))
            if attempt + 1 < attempts:
                log.info("PCS request %s failed (%s); retrying in %.2fs", url, failure, delay)
                await asyncio.sleep(delay)
        raise CollateralError(f"{url}: {failure} (after {attempts} attempts)", code="collateral_unavailable")

    def _update_params(self) -> dict[str, str]:
        return {"update": self.config.update}

    async def tcb_info(self, tee: str, fmspc: str) -> CollateralItem:
        response = await self._get(self._url(tee, "tcb"), {"fmspc": fmspc.upper(), **self._update_params()})
        return parse_signed_response(TCB_INFO, response.content, response.headers)

    async def qe_identity(self, tee: str) -> CollateralItem:
        response = await self._get(self._url(tee, "qe/identity"), self._update_params())
        return parse_signed_response(QE_IDENTITY, response.content, response.headers)

    async def pck_crl(self, ca: str) -> CollateralItem:
        response = await self._get(self._url("sgx", "pckcrl"), {"ca": ca, "encoding": "der"})
        return parse_crl_response(PCK_CRL, response.content, response.headers)

    async def root_ca_crl(self) -> CollateralItem:
        response = await self._get(self.config.root_crl_url())
        return parse_crl_response(ROOT_CA_CRL, response.content, response.headers)

    async def item(self, key: ItemKey) -> CollateralItem:
        """Fetch the item for ``key``; the answer must serve that key (a wrong FMSPC, TEE or CA fails)."""
        if key.kind == TCB_INFO:
            got = await self.tcb_info(key.tee, key.name)
        elif key.kind == QE_IDENTITY:
            got = await self.qe_identity(key.tee)
        elif key.kind == PCK_CRL:
            got = await self.pck_crl(key.name)
        else:
            got = await self.root_ca_crl()
        if got.key != key:
            raise CollateralError(f"asked PCS for {key}, it answered {got.key}", code="collateral_mismatch")
        return got

    async def fetch(self, fmspc: str, ca: str, tee: str = "sgx") -> CollateralSet:
        """All four items for a platform (unverified)."""
        root, pck, qe, tcb = await asyncio.gather(*(self.item(k) for k in platform_keys(fmspc, ca, tee)))
        return CollateralSet(root_ca_crl=root, pck_crl=pck, qe_identity=qe, tcb_info=tcb)


def _describe(response: httpx.Response) -> str:
    details = [response.headers.get(h) for h in ("Error-Code", "Error-Message")]
    extra = ": ".join(d for d in details if d)
    return f"HTTP {response.status_code} {extra}".rstrip()


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "0")), _MAX_RETRY_AFTER)
    except ValueError:
        return 0.0
