"""The app's shared state, built once per process from a :class:`ServiceConfig`.

Routes reach it as ``request.app.state.affidavit``. The signing key ring is re-read from the store every
``ServiceConfig.key_reload_seconds`` (default 30 s) and when a *next* key's time to
become current comes, so that a rotation (``affidavit keys rotate``) or a second server on the same
database is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import sys
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
    from affidavit.evidence.dcap import DcapVerifier
    from affidavit.policy import PolicyCompiler
    from affidavit.service.auth import OidcVerifier
    from affidavit.store import Store
from affidavit.service.errors import ServiceError
from affidavit.service.outage import OutageMonitor, StoreView
from affidavit.service.pipeline import ClaimCache, OutcomeCache, Placement, SigningThread

log = logging.getLogger("affidavit.service")

KEYRING_REFRESH = 30.0  # seconds: the default key_reload_seconds (how long replicas take to see a rotation)
GIL_SWITCH_INTERVAL = 0.0005  # seconds; a worker's (ServiceState.start)
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
    - ``verifier``: an ``affidavit.evidence.dcap.DcapVerifier`` over the configured trust anchors.
    - ``collateral``: a ``CollateralProvider`` (``DirectoryProvider`` with --collateral-dir, else the
      caching Intel PCS/PCCS provider).
    - ``clock()``: real time (tokens, certificate validity); ``evidence_clock()``: the evidence-time
      clock (fixed with --evidence-time, else real time).
    - ``issuer``: the token issuer (base URL without trailing slash); ``jku`` its ``/certs`` URL.
    - ``claims``: interned incoming claims (a ``pipeline.ClaimCache``); ``outcomes``: reusable policy
      outcomes (``pipeline.OutcomeCache``); ``placement``: the measured costs that decide what runs on
      the event loop (``pipeline.Placement``); ``signer``: the token-signing thread.
    - ``stored_policy(type)``: the stored policy, cached for ``POLICY_TTL``; ``forget_policy(type)``.
    - ``tpm_verifier``: an ``affidavit.evidence.tpm.TpmVerifier`` over the configured TPM trust
      (:func:`tpm_trust`), holding verified AK chains and per-event results across requests (thread-safe:
      request threads share it).
    - ``evidence_verifier(type)``: the registered type's ``evidence.contract.EvidenceVerifier``.
    - ``shadow``: recent incoming claim sets per type for ``POST /policies/{type}:diff`` (opt-in).
    - ``admin_token``, ``oidc``: what authenticates management calls (a static bearer token, an
      ``auth.OidcVerifier``); every state has at least one, in both modes.
    """

    config: ServiceConfig
    store: Store
    compiler: PolicyCompiler
    verifier: DcapVerifier
    collateral: Any  # a collateral.CollateralProvider (None only while build_state wires it)
    admin_token: str | None
    clock: Callable[[], datetime] = utcnow
    oidc: OidcVerifier | None = None
    _keyring: Any = None  # a StoreView of the key ring
    kek: Any = None
    hsm: Any = None
    context_key: bytes = b""
    _platforms: dict[bytes, Any] = field(default_factory=dict)
    claims: ClaimCache = field(default_factory=ClaimCache)
    outcomes: OutcomeCache = field(default_factory=OutcomeCache)
    placement: Placement = field(default_factory=Placement)
    signer: SigningThread = field(default_factory=SigningThread)
    _policies: dict[str, StoreView[Any]] = field(default_factory=dict)
    outages: OutageMonitor = field(default_factory=OutageMonitor)
    shadow: Any = None  # a shadow.ShadowSamples with --shadow-samples, else None
    _verifiers: dict[str, EvidenceVerifier[Any, Any]] = field(default_factory=dict)
    _refresher: asyncio.Task[None] | None = None
    loop_monitor: Any = None  # a loopwatch.LoopStallMonitor while started
    _verify_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    # per type: (the stored policy object, its PolicyChoice, its compiled form), see pipeline._warm_policy
    warm_policies: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)

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

    def policy_ready(self, att_type: str) -> bool:
        """Whether :meth:`stored_policy` answers without reading the store now (it has been read once)."""
        view = self._policies.get(att_type)
        return view is not None and view.ready

    def forget_policy(self, att_type: str) -> None:
        self._policies.pop(att_type, None)

    def evidence_clock(self) -> datetime:
        return self.config.evidence_time or self.clock()

    def keyring(self) -> Any:
        """The key ring, re-read every ``key_reload_seconds`` in the background (kept through a database
        outage for ``config.store_staleness_seconds``, like policies) and at once when a next key's time
        to sign comes. A started state (``start()``) also re-reads it every half of that in a worker
        thread, so request handlers on the event loop never wait for the database."""
        if self._keyring is None:
            from affidavit.store import KeyMaker, load_or_create_keyring

            maker = KeyMaker(self.issuer, self.config.signing_algorithm, self.config.key_size, self.hsm)

            def read() -> Any:
                previous = None if self._keyring is None else self._keyring.peek()
                return load_or_create_keyring(
                    self.store, issuer=self.issuer, bits=self.config.key_size, now=self.clock(), kek=self.kek,
                    hsm=self.hsm, reuse=previous, maker=maker,
                )

            self._keyring = StoreView(
                read,
                ttl=self.config.key_reload_seconds,
                staleness=self.config.store_staleness_seconds,
                monitor=self.outages,
            )
        ring = self._keyring.get()
        if ring.valid_until is not None and self.clock() >= ring.valid_until:
            from affidavit.store import StoreError

            try:
                ring = self._keyring.refresh()
            except StoreError:
                pass  # the database is down: the ring in hand keeps signing (its key stays published)
        return ring

    def keyring_if_ready(self) -> Any:
        """The key ring when :meth:`keyring` would answer without reading the store (None: it would read,
        at first use or at the moment a next key takes over)."""
        view = self._keyring
        if view is None or not view.ready:
            return None
        ring = view.get()
        if ring.valid_until is not None and self.clock() >= ring.valid_until:
            return None
        return ring

    async def _refresh_keyring(self) -> None:
        from starlette.concurrency import run_in_threadpool

        while True:
            await asyncio.sleep(self.config.key_reload_seconds / 2)
            if self._keyring is None:
                continue
            try:
                await run_in_threadpool(self._keyring.refresh)
            except Exception as exc:  # noqa: BLE001 -- a store outage: keep serving the ring we have
                log.warning("key ring refresh failed (the current ring stays in use): %s", exc)

    async def start(self, *, worker_process: bool = False) -> None:
        """Background work that needs the event loop (the PCS provider's refresh of expiring items, the
        key ring's refresh) and the one-time costs a worker pays before it serves.

        ``worker_process``: this state is its process's only one (a worker, not one of many states in a
        test process), so the process is tuned for it, before the stall monitor starts:

        - what startup built (modules, verifiers, trust, compiled policies: ~55,000 objects) lives as long
          as the worker. Left to the collector, every pass over the older generations walks it on the
          event loop: 1.3-3.8 ms for a generation-1 pass, measured under load, ~25 ms for a full one.
          Frozen, the passes see only what requests made (~1,500 objects);
        - the GIL switch interval is ``GIL_SWITCH_INTERVAL``: the loop thread waits that long for the GIL
          while the signing thread runs Python. At CPython's 5 ms the longest stalls in bench/attest.py
          were 2.5-5 ms (4 runs), at 0.5 ms 1.25-2 ms, throughput the same within the runs' noise."""
        from starlette.concurrency import run_in_threadpool

        from affidavit.service import metrics
        from affidavit.service.loopwatch import LoopStallMonitor

        # The first thread-pool call imports anyio's asyncio backend and starts its first thread: 10-40 ms
        # on the event loop, which would fall on a live request (the first key-ring refresh, 15 s in, or
        # the first management call). Paid here, before the worker serves.
        await run_in_threadpool(int)
        start = getattr(self.collateral, "start", None)
        if start is not None:
            start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_keyring())
        if worker_process:
            gc.collect()
            gc.freeze()
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self.loop_monitor = LoopStallMonitor(observe=metrics.loop_stall)
        self.loop_monitor.start()

    async def aclose(self) -> None:
        from affidavit.service import metrics

        if self.loop_monitor is not None:
            self.loop_monitor.stop()
            self.loop_monitor = None
        metrics.flush()  # the samples collected since the last write
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        aclose = getattr(self.collateral, "aclose", None)
        if aclose is not None:
            await aclose()
        for verifier in self._verifiers.values():  # e.g. SevSnpVm's KDS provider and its HTTP client
            close_verifier = getattr(verifier, "aclose", None)
            if close_verifier is not None:
                await close_verifier()
        self.close()

    def close(self) -> None:
        self.signer.close()
        self.store.close()
        if self.hsm is not None:
            self.hsm.close()


def prepare_data_dir(path: Path) -> None:
    """Create the data directory 0700 (tighten it when it exists: it holds keys and the database)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError as exc:
            raise ServiceError(f"cannot make the data directory {path} private: {exc.strerror}",
                               code="configuration") from None


def open_signing_keys(config: ServiceConfig, store: Any, clock: Callable[[], datetime]) -> tuple[Any, Any]:
    """The KEK (reading or generating its file), with legacy plaintext keys sealed under it, and the
    PKCS#11 token of ``--signing-key pkcs11:...`` (None without one), its named key registered when the
    database has no key yet."""
    from affidavit.store import StoreError, create_kek_file, read_kek_file, seal_legacy_keys

    try:
        if config.key_encryption_key_file is not None:
            kek = read_kek_file(config.key_encryption_key_file)
        else:
            kek, _ = create_kek_file(config.kek_path)
        seal_legacy_keys(store, kek)
        hsm = open_hsm(config)
        if hsm is not None:
            try:
                _register_configured_hsm_key(config, store, kek, hsm, clock())
            except BaseException:
                hsm.close()
                raise
    except StoreError as exc:
        raise ServiceError(exc.message, code="configuration") from None
    return kek, hsm


def open_hsm(config: ServiceConfig) -> Any:
    if not config.signing_key:
        return None
    from affidavit.store.pkcs11 import Pkcs11Token, Pkcs11Uri, read_pin

    uri = Pkcs11Uri.parse(config.signing_key)
    pin = read_pin(config.pkcs11_pin_file) if config.pkcs11_pin_file and uri.pin_source is None else None
    return Pkcs11Token(uri, module_path=config.pkcs11_module, pin=pin)


def _register_configured_hsm_key(
    config: ServiceConfig, store: Any, kek: Any, hsm: Any, now: datetime
) -> None:
    """On an empty database the key ``object=`` names becomes the first key (generated on the token when
    the token has none by that label)."""
    from affidavit.store import KeyMaker, StoreError, to_stored

    label = hsm.uri.object
    if label is None:
        return  # new keys are generated on the token as needed
    location = hsm.uri.location()
    if store.key_at_location(location) is not None:
        hsm.signer(label)  # the key must still be on the token
        return
    if store.list_signing_keys():
        return  # keys exist: `affidavit keys rotate --signing-key` brings this one in, published first
    maker = KeyMaker(config.public_issuer, config.signing_algorithm, config.key_size, hsm)
    try:
        key = maker.existing(label, now)
    except StoreError as exc:  # a fresh token: the first key is generated on it
        if "no key pair" not in exc.message:
            raise
        key = maker.make(now, label)
    store.ensure_current_signing_key(to_stored(key, kek), at=now)


def read_pem_certificates(path: Path) -> list[x509.Certificate]:
    from affidavit import x509load

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ServiceError(f"cannot read certificates from {path}: {exc}", code="configuration") from None
    return x509load.load_pem_certificates(
        data, lambda m: ServiceError(m, code="configuration"), f"certificates in {path}"
    )


def trust_anchors(config: ServiceConfig) -> Any:
    """The configured roots (PEM files), or the Intel SGX Root CA when none is given."""
    from affidavit.evidence.dcap import TrustAnchors

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
    """The management bearer token: configured, else (in either mode, when no OIDC issuer is configured)
    generated once and kept in ``<data_dir>/admin-token`` (mode 0600). Management always needs one."""
    if config.admin_token:
        return config.admin_token
    if config.admin_oidc_issuer:
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
    from affidavit.evidence.dcap import DcapVerifier
    from affidavit.policy import PolicyCompiler
    from affidavit.service.config import load_secrets
    from affidavit.store import open_store

    config = load_secrets(config)  # secrets named by files (--admin-token-file, a worker's config)
    if config.admin_oidc_issuer and not config.admin_oidc_audience:
        raise ServiceError(
            "--admin-oidc-issuer needs --admin-oidc-audience: without one, a token that issuer made for any "
            "application would be an admin token", code="configuration")
    prepare_data_dir(config.data_dir)
    admin_token = admin_token_for(config)
    if admin_token is None and not config.admin_oidc_issuer:  # management must never be open
        raise ServiceError("no management credential: give --admin-token-file or an OIDC issuer",
                           code="configuration")
    store = open_store(config.store_url)
    try:
        kek, hsm = open_signing_keys(config, store, clock)
    except BaseException:
        store.close()
        raise
    if config.mode == "isolated":
        initial = [_der(c) for p in config.policy_signer_certs for c in read_pem_certificates(p)]
        store.seed_certificates(initial, actor="configuration")  # first start only
        if not store.list_certificates():
            store.close()
            if hsm is not None:
                hsm.close()
            raise ServiceError("isolated mode needs at least one --policy-signer-cert", code="configuration")
    verifier = DcapVerifier(trust_anchors(config))
    state = ServiceState(
        config=config,
        store=store,
        compiler=PolicyCompiler(max_bytes=config.policy_cache_bytes, limits=config.policy_limits_obj),
        verifier=verifier,
        collateral=None,
        admin_token=admin_token,
        clock=clock,
        kek=kek,
        hsm=hsm,
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

        state.oidc = OidcVerifier(config.admin_oidc_issuer, str(config.admin_oidc_audience))
    if config.extra.get("shadow_samples"):
        from affidavit.service.shadow import ShadowSamples

        state.shadow = ShadowSamples(int(config.extra["shadow_samples"]))
    try:
        from affidavit.store import TPM_CONTEXT_SECRET, StoreError, load_or_create_secret

        state.context_key = load_or_create_secret(store, TPM_CONTEXT_SECRET, kek, now=clock())
        state.keyring()  # create the first signing key now, not on the first request
    except StoreError as exc:
        state.close()
        raise ServiceError(exc.message, code="configuration") from None
    return state


def _der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)
