"""The app's shared state, built once per process from a :class:`ServiceConfig`.

Routes reach it as ``request.app.state.affidavit``. The signing key ring is re-read from the store at
most every ``KEYRING_REFRESH`` so that a rotation (``affidavit keys rotate``) or a second server on the
same database is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from affidavit.service.config import ServiceConfig

if TYPE_CHECKING:
    from affidavit.evidence.contract import EvidenceVerifier
    from affidavit.evidence.sgx import DcapVerifier
    from affidavit.policy import PolicyCompiler
    from affidavit.service.auth import OidcVerifier
    from affidavit.store import Store
    from affidavit.tokens import KeyRing
from affidavit.service.errors import ServiceError
from affidavit.service.pipeline import ClaimCache

log = logging.getLogger("affidavit.service")

KEYRING_REFRESH = 30.0  # seconds
POLICY_TTL = 1.0  # seconds a stored policy is reused; another server's change shows within it
PLATFORM_CACHE = 4096  # PCK chains remembered


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServiceState:
    """Everything a request handler needs; one per worker process.

    - ``config``: the :class:`ServiceConfig`.
    - ``store``: the ``affidavit.store.Store`` (policies, policy-management certificates, signing keys).
    - ``keyring()``: the current ``affidavit.tokens.KeyRing`` (refreshed from the store periodically).
    - ``compiler``: an ``affidavit.policy.PolicyCompiler`` (compiled policies cached by hash).
    - ``verifier``: an ``affidavit.evidence.sgx.DcapVerifier`` over the configured trust anchors.
    - ``collateral``: a ``CollateralProvider`` (``DirectoryProvider`` with --collateral-dir, else the
      caching Intel PCS/PCCS provider).
    - ``clock()``: real time (tokens, certificate validity); ``evidence_clock()``: the evidence-time
      clock (fixed with --evidence-time, else real time).
    - ``issuer``: the token issuer (base URL without trailing slash); ``jku`` its ``/certs`` URL.
    - ``claims``: interned incoming claims (a ``pipeline.ClaimCache``).
    - ``stored_policy(type)``: the stored policy, cached for ``POLICY_TTL``; ``forget_policy(type)``.
    - ``tpm_verifier``: an ``affidavit.evidence.tpm.TpmVerifier`` over the configured TPM trust
      (:func:`tpm_trust`), holding verified AK chains and per-event results across requests (thread-safe:
      request threads share it).
    - ``evidence_verifier(type)``: the registered type's ``evidence.contract.EvidenceVerifier``.
    - ``admin_token``, ``oidc``: what authenticates management calls (a static bearer token, an
      ``auth.OidcVerifier``); aad mode always has one, isolated mode when configured.
    """

    config: ServiceConfig
    store: Store
    compiler: PolicyCompiler
    verifier: DcapVerifier
    collateral: Any  # a collateral.CollateralProvider (None only while build_state wires it)
    admin_token: str | None
    clock: Callable[[], datetime] = utcnow
    oidc: OidcVerifier | None = None
    _keyring: KeyRing | None = None
    _keyring_at: float = field(default=0.0)
    _platforms: dict[bytes, Any] = field(default_factory=dict)
    claims: ClaimCache = field(default_factory=ClaimCache)
    _policies: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _verifiers: dict[str, EvidenceVerifier[Any, Any]] = field(default_factory=dict)
    _refresher: asyncio.Task[None] | None = None
    _verify_properties: dict[str, dict[str, Any]] = field(default_factory=dict)

    @cached_property
    def issuer(self) -> str:
        return self.config.public_issuer

    @cached_property
    def jku(self) -> str:
        return self.issuer + "/certs"

    def platform_of(self, quote: Any) -> Any:
        """``evidence.sgx.platform_of`` memoized by PCK chain: parsing the PCK extension is the costliest
        step of a lookup, and a fleet has few platforms. Unverified; the verifier checks the chain."""
        platform = self._platforms.get(quote.pck_chain_pem)
        if platform is None:
            from affidavit.evidence.sgx import platform_of

            platform = platform_of(quote)
            if len(self._platforms) >= PLATFORM_CACHE:
                self._platforms.clear()
            self._platforms[quote.pck_chain_pem] = platform
        return platform

    @cached_property
    def tpm_verifier(self) -> Any:
        """Built on first use (``build_state`` touches it, so a bad trust file stops the start)."""
        from affidavit.evidence.tpm import TpmVerifier

        return TpmVerifier(tpm_trust(self.config))

    def evidence_verifier(self, att_type: str) -> Any:
        """The ``evidence.contract.EvidenceVerifier`` of a registered type, built once per worker by the
        factory its ``attestation_types`` entry names."""
        verifier = self._verifiers.get(att_type)
        if verifier is None:
            import importlib

            from affidavit.attestation_types import lookup

            module, _, attr = lookup(att_type).verifier.partition(":")
            verifier = getattr(importlib.import_module(module), attr)(self)
            self._verifiers[att_type] = verifier
        return verifier

    def verify_properties(self, compiled: Any) -> dict[str, Any]:
        """``PROPERTY_DEFAULTS`` overlaid with a policy's configuration-rule properties (what steers
        verification), memoized by policy hash: the rules run without incoming claims."""
        key = getattr(compiled, "hash", "")
        props = self._verify_properties.get(key)
        if props is None:
            from affidavit.policy import PROPERTY_DEFAULTS, configuration_properties

            props = {**PROPERTY_DEFAULTS, **configuration_properties(compiled)}
            if len(self._verify_properties) >= 1024:
                self._verify_properties.clear()
            self._verify_properties[key] = props
        return props

    def stored_policy(self, att_type: str) -> Any:
        """The stored policy of ``att_type`` (None: the default applies), re-read at most every
        ``POLICY_TTL``: attestations are hot and policies change rarely. This server's own changes
        call :meth:`forget_policy`, so they apply at once."""
        now = time.monotonic()
        hit = self._policies.get(att_type)
        if hit is None or now - hit[0] > POLICY_TTL:
            hit = (now, self.store.get_policy(att_type))
            self._policies[att_type] = hit
        return hit[1]

    def forget_policy(self, att_type: str) -> None:
        self._policies.pop(att_type, None)

    def evidence_clock(self) -> datetime:
        return self.config.evidence_time or self.clock()

    def keyring(self) -> Any:
        """The key ring, re-read from the store when older than ``KEYRING_REFRESH``. A started state
        (``start()``) re-reads it in the background every half of that, in a worker thread, so request
        handlers on the event loop never wait for the database."""
        if self._keyring is None or time.monotonic() - self._keyring_at > KEYRING_REFRESH:
            self.reload_keyring()
        return self._keyring

    def reload_keyring(self) -> None:
        from affidavit.store import load_or_create_keyring

        self._keyring = load_or_create_keyring(
            self.store, issuer=self.issuer, bits=self.config.key_size, now=self.clock()
        )
        self._keyring_at = time.monotonic()

    async def _refresh_keyring(self) -> None:
        from starlette.concurrency import run_in_threadpool

        while True:
            await asyncio.sleep(KEYRING_REFRESH / 2)
            try:
                await run_in_threadpool(self.reload_keyring)
            except Exception as exc:  # noqa: BLE001 -- a store outage: keep serving the ring we have
                log.warning("key ring refresh failed (the current ring stays in use): %s", exc)

    async def start(self) -> None:
        """Background work that needs the event loop: the PCS provider's refresh of expiring items, the
        key ring's refresh."""
        start = getattr(self.collateral, "start", None)
        if start is not None:
            start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_keyring())

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        aclose = getattr(self.collateral, "aclose", None)
        if aclose is not None:
            await aclose()
        self.close()

    def close(self) -> None:
        self.store.close()


def read_pem_certificates(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ServiceError(f"cannot read certificates from {path}: {exc}", code="configuration") from None
    if not certs:
        raise ServiceError(f"no certificate in {path}", code="configuration")
    return certs


def trust_anchors(config: ServiceConfig) -> Any:
    """The configured roots (PEM files), or the Intel SGX Root CA when none is given."""
    from affidavit.evidence.sgx import TrustAnchors

    if not config.trust_roots:
        return TrustAnchors.intel()
    pem = b"".join(p.read_bytes() for p in config.trust_roots)
    return TrustAnchors.from_pem(pem)


# ``ServiceConfig.extra`` key (filled by ``affidavit serve --tpm-...``) -> the data-dir file used without it.
TPM_TRUST_FILES = {
    "tpm_aik_roots": "tpm-aik-roots.pem",
    "tpm_aik_intermediates": "tpm-aik-intermediates.pem",
    "tpm_registered_aks": "tpm-registered-aks.pem",
}


def _tpm_trust_pem(config: ServiceConfig, key: str, what: str) -> bytes:
    """The configured PEM files of one kind concatenated; without any, the data-dir file if it exists."""
    paths = config.extra.get(key)
    if not paths:
        fallback = config.data_dir / TPM_TRUST_FILES[key]
        paths = [fallback] if fallback.is_file() else []
    elif isinstance(paths, str | Path):
        paths = [paths]
    data = []
    for p in paths:
        try:
            data.append(Path(p).read_bytes())
        except OSError as exc:
            raise ServiceError(f"cannot read {what} {p}: {exc.strerror}", code="configuration") from None
    return b"\n".join(data)


def tpm_trust(config: ServiceConfig) -> Any:
    """``TpmTrust`` from the configured AIK roots, intermediates and registered AK public keys."""
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.tpm import TpmTrust

    registered = _tpm_trust_pem(config, "tpm_registered_aks", "registered AK")
    keys = [b"-----BEGIN" + part for part in registered.split(b"-----BEGIN")[1:]]
    try:
        return TpmTrust.from_pem(
            roots=_tpm_trust_pem(config, "tpm_aik_roots", "AIK root"),
            intermediates=_tpm_trust_pem(config, "tpm_aik_intermediates", "AIK intermediate"),
            registered_aks=keys,
        )
    except (ValueError, TypeError, EvidenceError) as exc:  # a bad certificate is TpmAkError
        raise ServiceError(f"the configured TPM trust (AIK CAs, registered AKs) is unreadable: {exc}",
                           code="configuration") from None


def admin_token_for(config: ServiceConfig) -> str | None:
    """The management bearer token: configured, else (aad mode) generated once and kept in data_dir."""
    if config.admin_token:
        return config.admin_token
    if config.mode != "aad" or config.admin_oidc_issuer:
        return None
    path = config.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".admin-token.{os.getpid()}")
    tmp.write_text(token + "\n")
    tmp.chmod(0o600)
    try:  # first writer wins when several processes start together
        path.hardlink_to(tmp)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def collateral_provider(config: ServiceConfig, state: ServiceState) -> Any:
    """The offline directory when configured, else Intel PCS / a PCCS behind the verified cache that
    lives in the service's database (``affidavit collateral import`` fills it for offline use)."""
    if config.collateral_dir is not None:
        from affidavit.collateral import DirectoryProvider

        return DirectoryProvider(config.collateral_dir, clock=state.evidence_clock)
    from affidavit.collateral.provider import CachingPcsProvider

    return CachingPcsProvider(
        config.pcs_url or None,
        api_key=config.pcs_api_key,
        update=config.pcs_update,
        grace=config.collateral_grace,
        cache_url=config.store_url,
        trust_anchors=trust_anchors(config),
        clock=state.evidence_clock,
    )


def build_state(config: ServiceConfig, *, clock: Callable[[], datetime] = utcnow) -> ServiceState:
    """Open the store, seed isolated-mode signers, and build the verifier and collateral provider."""
    from affidavit.evidence.sgx import DcapVerifier
    from affidavit.policy import PolicyCompiler
    from affidavit.store import open_store

    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(config.store_url)
    if config.mode == "isolated":
        initial = [_der(c) for p in config.policy_signer_certs for c in read_pem_certificates(p)]
        store.seed_certificates(initial, actor="configuration")  # first start only
        if not store.list_certificates():
            store.close()
            raise ServiceError("isolated mode needs at least one --policy-signer-cert", code="configuration")
    verifier = DcapVerifier(trust_anchors(config))
    state = ServiceState(
        config=config,
        store=store,
        compiler=PolicyCompiler(),
        verifier=verifier,
        collateral=None,
        admin_token=admin_token_for(config),
        clock=clock,
    )
    try:
        state.tpm_verifier  # noqa: B018 -- read the TPM trust now: a bad file stops the start
    except ServiceError:
        state.close()
        raise
    state.collateral = collateral_provider(config, state)
    from affidavit.attestation_types import all_types

    for entry in all_types():  # a factory path that does not resolve stops the start, not a request
        state.evidence_verifier(entry.name)
    if config.admin_oidc_issuer:
        from affidavit.service.auth import OidcVerifier

        state.oidc = OidcVerifier(config.admin_oidc_issuer, config.admin_oidc_audience)
    state.keyring()  # create the first signing key now, not on the first request
    return state


def _der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)
