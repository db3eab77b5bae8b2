"""AMD SEV-SNP collateral: VCEKs, the ASK/ASVK cert chains and CRLs from AMD KDS, through the SAME
verified cache as Intel's (`CollateralCache`, one table; item kinds ``amd_vcek``, ``amd_cert_chain``,
``amd_crl``), plus an offline directory provider.

Items (``ItemKey(kind, "snp", name)``):
- ``amd_vcek`` ``<Product>/<hwid hex>/<tcbm>``: the DER VCEK for a chip at one REPORTED_TCB (``tcbm`` is
  THIM's 16-hex form of the TCB, so fmcSPL is part of the key on Turin). A VCEK never changes meaning, so
  it is kept until it expires (7 years); AMD re-issues them, the newest (notBefore) wins.
- ``amd_cert_chain`` ``<Product>/vcek|vlek``: KDS ``cert_chain`` PEM (ASK or ASVK, then ARK).
- ``amd_crl`` ``<Product>/vcek|vlek``: KDS ``crl`` (DER, ARK-signed), refreshed before its nextUpdate.

Each item is verified before it enters the cache (`verify_amd_item`: the chain to a pinned ARK, the VCEK's
hwID and SPLs against its key, validity at ``now``); the SNP verifier checks everything again per report.
KDS throttles (HTTP 429, about one request per 10 s seen by others): `KdsClient` spaces its requests by
``min_interval``, honours ``Retry-After`` and then refuses to call KDS until that time, while the
provider coalesces concurrent first requests for an item and serves the cache through outages.
VLEKs cannot be fetched (KDS hands them to cloud providers only): they must come with the evidence.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.collateral import CollateralError
from affidavit.collateral.items import CollateralItem, ItemKey, invalid

log = logging.getLogger(__name__)

AMD_KDS_URL = "https://kdsintf.amd.com"
AMD_VCEK = "amd_vcek"
AMD_CERT_CHAIN = "amd_cert_chain"
AMD_CRL = "amd_crl"
AMD_KINDS = (AMD_VCEK, AMD_CERT_CHAIN, AMD_CRL)
SNP = "snp"
CHAIN_KINDS = ("vcek", "vlek")
_MAX_BODY = 256 * 1024
_MAX_RETRY_AFTER = 600.0
_MAX_FILE_BYTES = 1024 * 1024
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX = re.compile(r"(?:[0-9a-f]{2}){8,64}")


def vcek_key(product: str, hw_id: bytes, tcbm: str) -> ItemKey:
    return ItemKey(AMD_VCEK, SNP, f"{product}/{hw_id.hex()}/{tcbm.lower()}")


def chain_key(product: str, kind: str = "vcek") -> ItemKey:
    return ItemKey(AMD_CERT_CHAIN, SNP, f"{product}/{kind}")


def crl_key(product: str, kind: str = "vcek") -> ItemKey:
    return ItemKey(AMD_CRL, SNP, f"{product}/{kind}")


def hw_id_for(product: str, chip_id: bytes) -> bytes:
    """KDS's hwid: the whole CHIP_ID, or its first 8 bytes on Turin (the 64-byte id gets 404)."""
    return chip_id[:8] if product == "Turin" else chip_id


def _split_name(key: ItemKey) -> list[str]:
    return key.name.split("/")


# --- items from KDS answers (parsed, not trusted) ----------------------------------------------------


def _snp() -> Any:
    from affidavit.evidence import snp

    return snp


def vcek_item(key: ItemKey, der: bytes) -> CollateralItem:
    snp = _snp()
    try:
        cert = snp.load_certificate(der)
    except snp.SnpError as exc:
        raise invalid(f"{key}: {exc.message}") from None
    return CollateralItem(key, der.hex(), "", "", cert.not_valid_before_utc, cert.not_valid_after_utc, 0)


def chain_item(key: ItemKey, pem: bytes | str) -> CollateralItem:
    snp = _snp()
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    try:
        certs = snp.load_certificates(text.encode())
    except snp.SnpError as exc:
        raise invalid(f"{key}: {exc.message}") from None
    if len(certs) != 2:
        raise invalid(f"{key}: a KDS cert_chain holds 2 certificates, got {len(certs)}")
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    return CollateralItem(key, text, "", "", start, end, 0)


def crl_item_amd(key: ItemKey, der: bytes) -> CollateralItem:
    try:
        crl = x509.load_der_x509_crl(der)
        this_update, next_update = crl.last_update_utc, crl.next_update_utc
    except ValueError:
        raise invalid(f"{key} is not a DER CRL") from None
    if next_update is None:
        raise invalid(f"{key} has no nextUpdate")
    return CollateralItem(key, der.hex(), "", "", this_update, next_update, 0)


# --- the cache's gate for AMD items -------------------------------------------------------------------


def verify_amd_item(item: CollateralItem, trust: Any, now: datetime) -> None:
    """Raise ``CollateralError`` unless the AMD ``item`` chains to a pinned ARK of ``trust`` (an
    ``AmdTrust``) and serves its key at ``now``."""
    snp = _snp()
    parts = _split_name(item.key)
    product = parts[0]
    try:
        if item.key.kind == AMD_VCEK:
            chain = snp.verify_chain(bytes.fromhex(item.body), None, trust)
            if chain.kind != "VCEK" or chain.product != product:
                raise invalid(f"{item.key}: a {chain.product} {chain.kind}, not a {product} VCEK")
            hw_id = chain.extensions.hw_id or b""
            if len(parts) != 3 or hw_id.hex() != parts[1]:
                raise invalid(f"{item.key}: the VCEK's hwID is {hw_id.hex()[:16]}...")
            expected = snp.TcbVersion.from_tcbm(parts[2], product).components()
            if {k: chain.extensions.spls.get(k) for k in expected} != expected:
                raise invalid(f"{item.key}: the VCEK's SPLs are {chain.extensions.spls}")
            windows = chain.windows
        elif item.key.kind == AMD_CERT_CHAIN:
            chain_veks, inters, arks = _split(snp.load_certificates(item.body.encode()))
            windows = _verify_ca_chain(snp, product, parts[1], inters, arks, trust)
        elif item.key.kind == AMD_CRL:
            ark = trust.ark_for(product)
            if ark is None:
                raise invalid(f"{item.key}: no pinned ARK for {product}")
            crl = x509.load_der_x509_crl(bytes.fromhex(item.body))
            from affidavit.evidence.snp.authenticate import pss_signed_by

            if crl.issuer != ark.subject or not pss_signed_by(crl, ark):
                raise invalid(f"{item.key} is not signed by the pinned ARK-{product}")
            windows = ()
        else:
            raise invalid(f"not an AMD collateral kind: {item.key.kind}")
    except snp.SnpError as exc:
        raise invalid(f"{item.key}: {exc.message}") from None
    except ValueError as exc:
        raise invalid(f"{item.key}: {exc}") from None
    for w in windows:
        if not w.not_before <= now <= w.not_after:
            raise CollateralError(
                f"{item.key}: {w.name} not valid at {now.isoformat()}", code="collateral_expired"
            )
    if not item.issue_date <= now <= item.next_update:
        raise CollateralError(
            f"{item.key} not current at {now.isoformat()}", code="collateral_expired"
        )


def _split(certs: list[x509.Certificate]) -> tuple[list[x509.Certificate], ...]:
    from affidavit.evidence.snp.certs import split_chain

    return split_chain(certs)


def _verify_ca_chain(
    snp: Any,
    product: str,
    kind: str,
    inters: list[x509.Certificate],
    arks: list[x509.Certificate],
    trust: Any,
) -> tuple[Any, ...]:
    from affidavit.evidence.snp.authenticate import Window, pss_signed_by
    from affidavit.evidence.snp.certs import cn, spki

    ark = trust.ark_for(product)
    expected_cn = f"SEV-VLEK-{product}" if kind == "vlek" else f"SEV-{product}"
    if ark is None or len(inters) != 1 or len(arks) != 1:
        raise invalid(f"cert_chain {product}/{kind} is not one {expected_cn} and one pinned ARK-{product}")
    inter = inters[0]
    if cn(inter) != expected_cn or spki(arks[0]) != spki(ark) or not pss_signed_by(inter, ark):
        raise invalid(f"cert_chain {product}/{kind} does not chain {expected_cn} to the pinned ARK-{product}")
    return tuple(Window(r, cn(c), c.not_valid_before_utc, c.not_valid_after_utc) for r, c in
                 (("intermediate", inter), ("ark", ark)))


# --- the KDS client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KdsConfig:
    base_url: str = AMD_KDS_URL
    timeout: float = 10.0
    min_interval: float = 1.0  # seconds between two KDS requests from this process
    throttle: float = 10.0  # after a 429 without Retry-After, no request for this long

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.min_interval < 0 or self.throttle < 0:
            raise CollateralError("KDS timeout must be positive, intervals non-negative")


class KdsClient:
    """AMD Key Distribution Service: VCEKs, cert chains, CRLs. One request at a time, spaced by
    ``min_interval``; after HTTP 429 nothing is sent before ``Retry-After`` (or ``throttle``) elapsed."""

    def __init__(self, config: KdsConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config or KdsConfig()
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._lock: asyncio.Lock | None = None
        self._next_at = 0.0
        self._blocked_until = 0.0
        self._monotonic = monotonic
        self.requests = 0

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.config.timeout, transport=self._transport, follow_redirects=True,
                headers={"Accept": "application/pkix-cert, application/pkix-crl, */*"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        url = f"{self.config.base_url.rstrip('/')}{path}"
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._monotonic()
            if now < self._blocked_until:
                raise CollateralError(
                    f"{url}: AMD KDS throttled this service; not asking again for "
                    f"{self._blocked_until - now:.0f} s", code="collateral_unavailable",
                )
            if now < self._next_at:
                await asyncio.sleep(self._next_at - now)
            self._next_at = self._monotonic() + self.config.min_interval
            self.requests += 1
            try:
                response = await self._client().get(url, params=params)
            except httpx.HTTPError as exc:
                failure = f"{url}: {type(exc).__name__}: {exc}"
                raise CollateralError(failure, code="collateral_unavailable") from None
            if response.status_code == 429:
                try:
                    wait = float(response.headers.get("Retry-After", self.config.throttle))
                except ValueError:
                    wait = self.config.throttle
                self._blocked_until = self._monotonic() + min(max(wait, 0.0), _MAX_RETRY_AFTER)
                raise CollateralError(f"{url}: HTTP 429 (KDS rate limit)", code="collateral_unavailable")
        if response.status_code == 404:
            raise CollateralError(f"{url}: not found (HTTP 404)", code="collateral_not_found")
        if response.status_code != 200:
            raise CollateralError(f"{url}: HTTP {response.status_code}", code="collateral_unavailable")
        if len(response.content) > _MAX_BODY:
            raise invalid(f"{url}: response larger than {_MAX_BODY} bytes")
        return response.content

    async def item(self, key: ItemKey) -> CollateralItem:
        parts = _split_name(key)
        well_formed = len(parts) == 3 and bool(_HEX16.fullmatch(parts[-1]) and _HEX.fullmatch(parts[1]))
        if key.kind == AMD_VCEK and well_formed:
            product, hw_hex, tcbm = parts
            tcb = _snp().TcbVersion.from_tcbm(tcbm, product)
            params = {k: str(v) for k, v in tcb.components().items()}
            return vcek_item(key, await self._get(f"/vcek/v1/{product}/{hw_hex}", params))
        if key.kind == AMD_CERT_CHAIN and len(parts) == 2:
            return chain_item(key, await self._get(f"/{parts[1]}/v1/{parts[0]}/cert_chain"))
        if key.kind == AMD_CRL and len(parts) == 2:
            return crl_item_amd(key, await self._get(f"/{parts[1]}/v1/{parts[0]}/crl"))
        raise CollateralError(f"KDS does not serve {key}", code="collateral_not_found")


# --- what the SNP verifier gets ------------------------------------------------------------------------


@dataclass(frozen=True)
class SnpCollateral:
    """Certificates and CRLs for one report: ``vek`` (DER, None for a VLEK: it must come with the
    evidence), ``chain`` (PEM: ASK/ASVK then ARK) and ``crl`` (DER CRLs: AMD's ARK CRL, and any
    ASK/ASVK CRL an offline directory holds; empty when unavailable). ``crl_product``: for a chain sent
    with the evidence, the product whose CRL was looked up (None: none), which it must verify to."""

    vek: bytes | None
    chain: bytes
    crl: tuple[bytes, ...] = ()
    crl_product: str | None = None


def _wanted(report: Any, product: str | None) -> tuple[str, str]:
    chosen = report.cpuid_product or product
    if chosen is None:
        raise CollateralError(
            "the report does not name its product (v2); configure the product or send the certificate chain",
            code="collateral_not_found",
        )
    return chosen, ("vlek" if report.signing_key == 1 else "vcek")


class CachingKdsProvider:
    """SNP collateral from AMD KDS through the verified cache, with the serving rules of
    ``CachingPcsProvider`` (coalesced fetches, retry interval, grace through outages), which it reuses:
    the serving machinery is the Intel provider's, given a KDS client and AMD item kinds."""

    def __init__(
        self,
        kds_url: str | None = AMD_KDS_URL,
        *,
        cache: Any = None,
        cache_url: str = "sqlite:///affidavit.db",
        trust: Any = None,
        grace: timedelta = timedelta(0),
        default_product: str | None = None,
        require_crl: bool = False,
        clock: Callable[[], datetime] | None = None,
        client: KdsClient | None = None,
        min_interval: float = 1.0,
    ) -> None:
        from affidavit.collateral.cache import CollateralCache
        from affidavit.collateral.provider import CachingPcsProvider

        if cache is None:
            cache = CollateralCache.open(cache_url, [], amd_trust=trust)
        elif trust is not None:
            cache.amd_trust = trust
        if client is None and kds_url:
            client = KdsClient(KdsConfig(base_url=kds_url, min_interval=min_interval))
        self.cache = cache
        self.client = client
        self.default_product = default_product
        self.require_crl = require_crl
        self._crl_warned: set[tuple[str, str, str]] = set()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._serving = CachingPcsProvider(
            None, cache=cache, grace=grace, clock=self._clock, client=client,  # type: ignore[arg-type]
            serves=lambda key: key.kind in AMD_KINDS,
        )

    async def get_snp(self, report: Any, now: datetime | None = None) -> SnpCollateral:
        """What `verify_report` needs for ``report`` (an ``SnpReport``) besides the report itself."""
        now = now or self._clock()
        product, kind = _wanted(report, self.default_product)
        chain_task = self._serving._item(chain_key(product, kind), now)
        crl_task = self._crl(product, kind, now)
        vek: bytes | None = None
        if kind == "vcek":
            if report.chip_id_masked:
                raise CollateralError(
                    "CHIP_ID is masked: KDS cannot name this chip's VCEK; send the certificate chain",
                    code="collateral_not_found",
                )
            tcbm = report.tcb("reported", product).tcbm
            key = vcek_key(product, hw_id_for(product, report.chip_id), tcbm)
            vek_task = self._serving._item(key, now)
            vek_item, chain, crl = await self._gather(vek_task, chain_task, crl_task)
            vek = bytes.fromhex(vek_item.body)
        else:
            chain, crl = await self._gather(chain_task, crl_task)
        return SnpCollateral(vek, chain.body.encode(), crl)

    async def _gather(self, *tasks: Any) -> Any:
        try:
            return await asyncio.gather(*tasks)
        except CollateralError as exc:
            if self.client is not None or exc.code != "collateral_not_found":
                raise
            raise CollateralError(  # cache only: say what would help
                f"the report came without VcekCertChain and the AMD collateral cache lacks it "
                f"({exc.message}); no KDS is configured: `affidavit collateral import` adds KDS files",
                code="collateral_not_found",
            ) from None

    async def crl_for(
        self, product: str, kind: str = "vcek", now: datetime | None = None
    ) -> tuple[bytes, ...]:
        """The product's CRL (for a report whose certificates came with the evidence), or ()."""
        return await self._crl(product, kind, now or self._clock())

    async def _crl(self, product: str, kind: str, now: datetime) -> tuple[bytes, ...]:
        try:
            return (bytes.fromhex((await self._serving._item(crl_key(product, kind), now)).body),)
        except CollateralError as exc:
            if self.require_crl:
                raise
            if (product, kind, exc.code) not in self._crl_warned:  # once, not per request
                self._crl_warned.add((product, kind, exc.code))
                log.warning("no AMD CRL for %s/%s (%s); verifying without revocation data",
                            product, kind, exc)
            return ()

    async def refresh_due(self, now: datetime | None = None) -> int:
        return await self._serving.refresh_due(now)

    def start(self, interval: float = 3600.0) -> None:
        self._serving.start(interval)

    async def aclose(self) -> None:
        await self._serving.aclose()


# --- offline: a directory of KDS files ------------------------------------------------------------------


class AmdDirectoryProvider:
    """SNP collateral from a directory of files as KDS serves them (any names): VCEK certificates (DER or
    PEM), ``cert_chain`` PEMs, CRLs (DER or PEM). Indexed once by what each file is; unverified here
    (the verifier checks it all)."""

    def __init__(self, path: str | Path, *, default_product: str | None = None) -> None:
        root = Path(path)
        if not root.exists():
            raise CollateralError(f"AMD collateral directory {root} does not exist")
        self.default_product = default_product
        self.veks: dict[tuple[str, str, str], bytes] = {}  # (product, hwid hex, tcbm) -> DER
        self.chains: dict[tuple[str, str], bytes] = {}  # (product, vcek|vlek) -> PEM
        self.crls: dict[str, list[bytes]] = {}  # product -> DER CRLs (ARK's, ASK's, ASVK's)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if f.stat().st_size <= _MAX_FILE_BYTES:
                self._index(f.read_bytes())

    def _index(self, data: bytes) -> None:
        snp = _snp()
        from affidavit.evidence.snp.certs import cn, cn_of_name, issuer_cn, product_of_name, split_chain

        try:
            certs = snp.load_certificates(data)
        except snp.SnpError:
            certs = []
        if certs:
            veks, inters, arks = split_chain(certs)
            for vek in veks:
                if cn(vek) != "SEV-VCEK":
                    continue
                try:
                    ext = snp.vek_extensions(vek)
                except snp.SnpError:
                    continue
                product = product_of_name(issuer_cn(vek))
                if product is None or ext.hw_id is None:
                    continue
                tcb = _tcbm(product, ext.spls)
                self.veks[(product, ext.hw_id.hex(), tcb)] = vek.public_bytes(Encoding.DER)
            for inter in inters:
                product = product_of_name(cn(inter))
                if product and arks:
                    kind = "vlek" if cn(inter).startswith("SEV-VLEK-") else "vcek"
                    ark = next((a for a in arks if product_of_name(cn(a)) == product), None)
                    if ark is not None:
                        self.chains[(product, kind)] = b"".join(
                            c.public_bytes(Encoding.PEM) for c in (inter, ark)
                        )
            return
        try:
            crls = snp.load_crls(data)
        except snp.SnpError:
            return
        for crl in crls:
            product = product_of_name(cn_of_name(crl.issuer))
            if product:  # the verifier pairs each CRL with its issuer in the chain and ignores none
                self.crls.setdefault(product, []).append(crl.public_bytes(Encoding.DER))

    async def crl_for(
        self, product: str, kind: str = "vcek", now: datetime | None = None
    ) -> tuple[bytes, ...]:
        return self._crls_of(product, kind)

    def _crls_of(self, product: str, kind: str) -> tuple[bytes, ...]:
        """The product's CRLs issued by its ARK or by the ``kind`` chain's ASK/ASVK."""
        from affidavit.evidence.snp.certs import cn_of_name

        issuers = {f"ARK-{product}", f"SEV-VLEK-{product}" if kind == "vlek" else f"SEV-{product}"}
        snp = _snp()
        return tuple(der for der in self.crls.get(product, [])
                     if cn_of_name(snp.load_crls(der)[0].issuer) in issuers)

    async def get_snp(self, report: Any, now: datetime | None = None) -> SnpCollateral:
        product, kind = _wanted(report, self.default_product)
        chain = self.chains.get((product, kind))
        if chain is None:
            raise CollateralError(f"no {product} {kind} cert_chain in the AMD collateral directory",
                                  code="collateral_not_found")
        vek = None
        if kind == "vcek":
            tcbm = report.tcb("reported", product).tcbm
            vek = self.veks.get((product, hw_id_for(product, report.chip_id).hex(), tcbm))
            if vek is None:
                raise CollateralError(
                    f"no VCEK for this {product} chip at TCB {tcbm} in the AMD collateral directory",
                    code="collateral_not_found",
                )
        return SnpCollateral(vek, chain, self._crls_of(product, kind))


def _tcbm(product: str, spls: dict[str, int]) -> str:
    return str(_snp().TcbVersion.from_spls(product, spls).tcbm)


@dataclass(frozen=True)
class AmdFile:
    """What one AMD file holds, as cache items (not yet verified: the cache verifies on entry) and notes
    on what it holds but the cache does not keep (a VLEK, an ASK/ASVK-signed CRL)."""

    items: tuple[CollateralItem, ...]
    notes: tuple[str, ...] = ()


def amd_file_items(data: bytes, trust: Any = None, *, crl_kind: str | None = None) -> AmdFile:
    """Cache items from one file as AMD KDS serves it: a VCEK (DER or PEM), a ``cert_chain`` PEM (ASK or
    ASVK, then ARK; an ASK/ASVK alone is paired with ``trust``'s pinned ARK), a CRL (DER or PEM) or a
    PEM bundle of these. Raises `CollateralError` (``collateral_invalid``) when the file is none of them.
    ``trust``: an ``AmdTrust`` (default AMD's shipped roots), only to pair a lone ASK/ASVK.

    ``crl_kind`` (``vcek`` or ``vlek``) names the chain an ARK-signed CRL is for: KDS serves one per chain
    (``/vcek/v1/{product}/crl`` revokes ASKs, ``/vlek/…`` ASVKs), both signed by the same ARK, so the
    content cannot tell them apart. Without it such a CRL is refused: filed under the other chain, it
    would pass a revoked ASK/ASVK."""
    if crl_kind is not None and crl_kind not in CHAIN_KINDS:
        raise invalid(f"CRL kind {crl_kind!r} is not one of {', '.join(CHAIN_KINDS)}")
    snp = _snp()
    from affidavit.evidence.snp.certs import cn, cn_of_name, issuer_cn, product_of_name, split_chain

    if len(data) > _MAX_FILE_BYTES:
        raise invalid(f"larger than {_MAX_FILE_BYTES} bytes")
    items: list[CollateralItem] = []
    notes: list[str] = []
    try:
        certs = snp.load_certificates(data)
    except snp.SnpError as exc:
        certs, cert_error = [], exc.message
    if certs:
        veks, inters, arks = split_chain(certs)
        if len(veks) + len(inters) + len(arks) != len(certs):
            raise invalid("holds certificates that are not AMD's (no VCEK, VLEK, ASK, ASVK or ARK CN)")
        for vek in veks:
            product = product_of_name(issuer_cn(vek))
            if product is None:
                raise invalid(f"{cn(vek)} issued by {issuer_cn(vek)!r}, not an AMD ASK/ASVK")
            if cn(vek) == "SEV-VLEK":
                notes.append(f"a {product} VLEK: not stored (VLEKs come with the evidence; KDS gives them to "
                             "cloud providers only)")
                continue
            try:
                ext = snp.vek_extensions(vek)
            except snp.SnpError as exc:
                raise invalid(exc.message) from None
            if ext.hw_id is None:
                raise invalid(f"a {product} VCEK without a hwID extension")
            der = vek.public_bytes(Encoding.DER)
            items.append(vcek_item(vcek_key(product, ext.hw_id, _tcbm(product, ext.spls)), der))
        for inter in inters:
            product = product_of_name(cn(inter))
            if product is None:
                raise invalid(f"{cn(inter)!r} is not an AMD ASK/ASVK")
            kind = "vlek" if cn(inter).startswith("SEV-VLEK-") else "vcek"
            ark = next((a for a in arks if product_of_name(cn(a)) == product), None)
            if ark is None:
                ark = (trust or snp.AmdTrust.amd()).ark_for(product)
            if ark is None:
                raise invalid(f"{cn(inter)} without ARK-{product}, and no ARK-{product} is pinned")
            pem = b"".join(c.public_bytes(Encoding.PEM) for c in (inter, ark))
            items.append(chain_item(chain_key(product, kind), pem))
        if not inters and arks:
            notes.append(f"{', '.join(cn(a) for a in arks)}: not stored (pinned roots are the package's or "
                         "--snp-trust-root)")
        return AmdFile(tuple(items), tuple(notes))
    try:
        crls = snp.load_crls(data)
    except snp.SnpError as exc:
        raise invalid(f"neither AMD certificates ({cert_error}) nor a CRL ({exc.message})") from None
    if not crls:
        raise invalid("empty file")
    for crl in crls:
        issuer = cn_of_name(crl.issuer)
        product = product_of_name(issuer)
        if product is None:
            raise invalid(f"a CRL issued by {issuer!r}, not by an AMD ARK")
        if issuer != f"ARK-{product}":
            notes.append(f"a CRL of {issuer}: not stored (the cache keeps the ARK-signed CRLs KDS serves)")
            continue
        if crl_kind is None:
            raise invalid(f"an {issuer} CRL, for the VCEK or the VLEK chain (KDS serves one each); "
                          "say which with --snp-crl-kind vcek|vlek")
        items.append(crl_item_amd(crl_key(product, crl_kind), crl.public_bytes(Encoding.DER)))
    return AmdFile(tuple(items), tuple(notes))


def with_chains(trust: Any, items: Iterable[CollateralItem]) -> Any:
    """``trust`` (an ``AmdTrust``) knowing the ASK/ASVKs of the ``amd_cert_chain`` items too, so that
    VCEKs imported with their chain verify when the pinned roots are ARKs alone. Safe: an intermediate
    is only a candidate; it is verified against the pinned ARK whenever it is used."""
    from affidavit.evidence.snp.certs import split_chain

    snp = _snp()
    extra = [c for item in items if item.key.kind == AMD_CERT_CHAIN
             for c in split_chain(snp.load_certificates(item.body.encode()))[1]]
    return snp.AmdTrust(dict(trust.arks), tuple(trust.intermediates) + tuple(extra)) if extra else trust


def items_from_files(
    paths: Iterable[Path], trust: Any = None, *, crl_kind: str | None = None
) -> list[CollateralItem]:
    """Cache items from KDS files (`amd_file_items` of each; unverified)."""
    return [item for path in paths
            for item in amd_file_items(Path(path).read_bytes(), trust, crl_kind=crl_kind).items]


def no_collateral_source() -> CollateralError:
    """A report without ``VcekCertChain`` where no AMD collateral source (KDS, directory) is configured."""
    return CollateralError(
        "the report came without VcekCertChain and no AMD collateral source is configured",
        code="collateral_not_found",
    )
