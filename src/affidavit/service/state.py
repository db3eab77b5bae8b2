"""The app's shared state, built once per process from a :class:`ServiceConfig`.

Routes reach it as ``request.app.state.affidavit``. The signing key ring is re-read from the store at
most every ``KEYRING_REFRESH`` so that a rotation (``affidavit keys rotate``) or a second server on the
same database is picked up without a restart.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509

from affidavit.service.config import ServiceConfig
from affidavit.service.errors import ServiceError
from affidavit.service.outage import OutageMonitor, StoreView
from affidavit.service.pipeline import ClaimCache

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
      (:func:`tpm_trust`), holding verified AK chains and per-event results across requests; call it
      under ``tpm_lock`` (its caches are plain dicts and TPM requests run in worker threads).
    - ``admin_token``, ``oidc``: what authenticates management calls (a static bearer token, an
      ``auth.OidcVerifier``); aad mode always has one, isolated mode when configured.
    """

    config: ServiceConfig
    store: Any
    compiler: Any
    verifier: Any
    collateral: Any
    admin_token: str | None
    clock: Callable[[], datetime] = utcnow
    oidc: Any = None
    _keyring: Any = None  # a StoreView of the key ring
    _platforms: dict[bytes, Any] = field(default_factory=dict)
    claims: ClaimCache = field(default_factory=ClaimCache)
    tpm_lock: threading.Lock = field(default_factory=threading.Lock)
    _policies: dict[str, StoreView[Any]] = field(default_factory=dict)
    outages: OutageMonitor = field(default_factory=OutageMonitor)

    @cached_property
    def issuer(self) -> str:
        return self.config.public_issuer

    @cached_property
    def jku(self) -> str:
        return self.issuer + "/certs"

    def platform_of(self, quote: Any) -> Any:
        """The quote's platform (FMSPC, CA, TEE) once its PCK chain verified to a configured trust anchor
        (``DcapVerifier.platform``; an untrusted chain is refused before any collateral is looked up, so
        a forged PKI cannot make the service fetch), memoized by PCK chain."""
        platform = self._platforms.get(quote.pck_chain_pem)
        if platform is None:
            platform = self.verifier.platform(quote)
            if len(self._platforms) >= PLATFORM_CACHE:
                self._platforms.clear()
            self._platforms[quote.pck_chain_pem] = platform
        return platform

    @cached_property
    def tpm_verifier(self) -> Any:
        """Built on first use (``build_state`` touches it, so a bad trust file stops the start)."""
        from affidavit.evidence.tpm import TpmVerifier

        return TpmVerifier(tpm_trust(self.config))

    def stored_policy(self, att_type: str) -> Any:
        """The stored policy of ``att_type`` (None: the default applies), re-read in the background
        every ``POLICY_TTL``: attestations are hot and policies change rarely. While the database is
        unreachable the last one read is used for ``config.store_staleness_seconds``
        (``service.outage``). This server's own changes call :meth:`forget_policy`, so they apply at
        once."""
        view = self._policies.get(att_type)
        if view is None:
            view = StoreView(lambda: self.store.get_policy(att_type), ttl=POLICY_TTL,
                             staleness=self.config.store_staleness_seconds, monitor=self.outages)
            self._policies[att_type] = view
        return view.get()

    def forget_policy(self, att_type: str) -> None:
        self._policies.pop(att_type, None)

    def evidence_clock(self) -> datetime:
        return self.config.evidence_time or self.clock()

    def keyring(self) -> Any:
        """The key ring, re-read every ``KEYRING_REFRESH`` in the background (kept through a database
        outage for ``config.store_staleness_seconds``, like policies)."""
        if self._keyring is None:
            from affidavit.store import load_or_create_keyring

            def read() -> Any:
                return load_or_create_keyring(
                    self.store, issuer=self.issuer, bits=self.config.key_size, now=self.clock()
                )

            self._keyring = StoreView(
                read, ttl=KEYRING_REFRESH, staleness=self.config.store_staleness_seconds, monitor=self.outages
            )
        return self._keyring.get()

    async def start(self) -> None:
        """Background work that needs the event loop (the PCS provider's refresh of expiring items)."""
        start = getattr(self.collateral, "start", None)
        if start is not None:
            start()

    async def aclose(self) -> None:
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
        compiler=PolicyCompiler(max_bytes=config.policy_cache_bytes, limits=config.policy_limits_obj),
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
    if config.admin_oidc_issuer:
        from affidavit.service.auth import OidcVerifier

        state.oidc = OidcVerifier(config.admin_oidc_issuer, config.admin_oidc_audience)
    state.keyring()  # create the first signing key now, not on the first request
    return state


def _der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)
