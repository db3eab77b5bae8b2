"""``affidavit serve``: run the attestation service under uvicorn.

Every flag has an ``AFFIDAVIT_*`` environment variable (flag name, upper-case, dashes as underscores);
the flag wins. Repeatable flags take a list separated by the OS path separator in their variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from affidavit.cli.arguments import RSA_KEY_SIZES, duration, iso_time
from affidavit.errors import AffidavitError

_ENV_PREFIX = "AFFIDAVIT_"
# On SIGTERM, connections get this long to finish; a client that leaves a TLS connection open without
# reading (so its close_notify never comes) must not hold the shutdown forever.
GRACEFUL_SHUTDOWN_SECONDS = 5


def _env(name: str) -> str | None:
    value = os.environ.get(_ENV_PREFIX + name.upper().replace("-", "_"))
    return value if value not in (None, "") else None


def _bool_env(name: str) -> bool:
    return (_env(name) or "").lower() in ("1", "true", "yes", "on")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the attestation service",
        description="Run the attestation service (MAA's REST API). Flags are also AFFIDAVIT_* variables.",
    )
    p.add_argument("--host", default=_env("host") or "127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=_env("port") or "8080", help="TCP port to listen on (8080)")
    p.add_argument("--data-dir", type=Path, default=Path(_env("data-dir") or "var"),
                   help="SQLite database, signing keys, TLS certificate, admin token (default ./var)")
    p.add_argument("--database-url", default=_env("database-url"),
                   help="sqlite:///path or postgresql://... (default SQLite in the data dir)")
    p.add_argument("--tls-cert", type=Path, default=_env("tls-cert"),
                   help="PEM certificate (chain) to serve HTTPS with; needs --tls-key")
    p.add_argument("--tls-key", type=Path, default=_env("tls-key"), help="PEM private key of --tls-cert")
    p.add_argument("--tls-self-signed", action="store_true", default=_bool_env("tls-self-signed"),
                   help="serve HTTPS with a certificate generated for the host and kept in the data dir")
    p.add_argument("--issuer", default=_env("issuer"), help="public base URL (default: scheme://host:port)")
    p.add_argument("--trust-root", dest="trust_roots", type=Path, action="append",
                   help="PEM of a trusted DCAP root (repeatable; default the Intel SGX Root CA)")
    p.add_argument("--collateral-dir", type=Path, default=_env("collateral-dir"),
                   help="directory tree of offline collateral JSON files")
    p.add_argument("--pcs-url", default=_env("pcs-url") or "https://api.trustedservices.intel.com",
                   help="Intel PCS or a PCCS, used without --collateral-dir ('none': the cache only)")
    p.add_argument("--pcs-api-key", default=_env("pcs-api-key"),
                   help="Intel PCS API key (visible in ps and /proc: prefer --pcs-api-key-file)")
    p.add_argument("--pcs-api-key-file", type=Path, default=_env("pcs-api-key-file"),
                   help="file holding the Intel PCS API key (one line, keep it 0600)")
    p.add_argument("--pcs-update", choices=("standard", "early"), default=_env("pcs-update") or "standard",
                   help="which TCB evaluation Intel PCS serves: the standard or the early update")
    p.add_argument("--collateral-grace", type=duration, default=_env("collateral-grace") or "0",
                   help="accept collateral this long past its nextUpdate, flagged in the token as "
                        "x-ms-sgx-collateral-expired (e.g. 12h, 7d; default 0: strict)")
    p.add_argument("--evidence-time", type=iso_time, default=_env("evidence-time"),
                   help="fixed clock for evidence checks (tests, offline replay); tokens use the real clock")
    p.add_argument("--workers", type=int, default=_env("workers") or "1",
                   help="worker processes, one listening socket each (default 1)")
    p.add_argument("--mode", choices=("aad", "isolated"), default=_env("mode") or "aad",
                   help="management mode: aad (bearer token) or isolated (signed JWS from registered "
                        "certificates); default aad")
    p.add_argument("--policy-signer-cert", dest="policy_signer_certs", type=Path, action="append",
                   help="PEM of an initial policy management certificate (isolated mode; repeatable)")
    p.add_argument("--admin-token", default=_env("admin-token"),
                   help="bearer token for management calls (visible in ps and /proc: prefer "
                        "--admin-token-file; default: generated into <data-dir>/admin-token)")
    p.add_argument("--admin-token-file", type=Path, default=_env("admin-token-file"),
                   help="file holding the management bearer token (one line, keep it 0600)")
    p.add_argument("--tpm-aik-root", dest="tpm_aik_roots", type=Path, action="append",
                   help="PEM of a CA trusted for TPM AIK certificates (repeatable)")
    p.add_argument("--tpm-aik-intermediate", dest="tpm_aik_intermediates", type=Path, action="append",
                   help="PEM of an intermediate CA for TPM AIK certificates (repeatable)")
    p.add_argument("--tpm-registered-ak", dest="tpm_registered_aks", type=Path, action="append",
                   help="PEM public key of a TPM attestation key trusted without a certificate (repeatable)")
    p.add_argument("--snp-trust-root", dest="snp_trust_roots", type=Path, action="append",
                   help="PEM with AMD ARK (and ASK/ASVK) certificates pinned for SevSnpVm (repeatable; "
                        "default: AMD's Milan, Genoa and Turin roots shipped with Affidavit)")
    p.add_argument("--snp-collateral-dir", default=_env("snp-collateral-dir"),
                   help="offline AMD KDS files (VCEKs, cert_chain, CRLs) instead of AMD KDS")
    p.add_argument("--kds-url", default=_env("kds-url"),
                   help="AMD KDS base URL for VCEKs, chains and CRLs (default AMD's; 'none': offline)")
    p.add_argument("--snp-product", choices=("Milan", "Genoa", "Turin"), default=_env("snp-product"),
                   help="the product of v2 SNP reports sent without a certificate chain")
    p.add_argument("--snp-require-crl", action="store_true", default=_bool_env("snp-require-crl"),
                   help="refuse SNP reports when AMD's CRL cannot be had")
    p.add_argument("--azure-cvm-baselines", default=_env("azure-cvm-baselines"),
                   help="JSON file of Azure CVM baselines: x-ms-compliance-status of AzureGuest tokens")
    p.add_argument("--admin-oidc-issuer", default=_env("admin-oidc-issuer"),
                   help="also accept management JWTs signed by this OIDC issuer (keys from its jwks_uri)")
    p.add_argument("--admin-oidc-audience", default=_env("admin-oidc-audience"),
                   help="the aud those JWTs must carry")
    p.add_argument("--max-body-bytes", type=int, default=_env("max-body-bytes") or str(1024 * 1024),
                   help="larger request bodies get 413 (default 1 MiB, at least 1024)")
    p.add_argument("--key-size", type=int, choices=RSA_KEY_SIZES, default=_env("key-size") or "2048",
                   help="RSA size of newly generated token signing keys (default 2048)")
    p.add_argument("--shadow-samples", type=int, default=_env("shadow-samples") or "0", metavar="N",
                   help="keep the incoming claims of the last N attestations per type in memory, for "
                        "`affidavit policy diff` (0: off, the default; at most 500)")
    keys = p.add_argument_group("signing keys (docs/keys.md)")
    keys.add_argument("--key-encryption-key-file", type=Path, default=_env("key-encryption-key-file"),
                      help="32-byte key (base64, hex or raw) that seals the private keys in the database "
                           "(default: generated into DATA_DIR/key-encryption-key; keep it elsewhere in "
                           "production)")
    keys.add_argument("--signing-algorithm", choices=("RS256", "ES256"),
                      default=_env("signing-algorithm") or "RS256",
                      help="algorithm of newly made signing keys (RS256: the Azure SDK verifies only that)")
    keys.add_argument("--signing-key", default=_env("signing-key"), metavar="pkcs11:token=...;object=...",
                      help="sign inside a PKCS#11 token (RFC 7512 URI; module-path= and pin-source=file: "
                           "in its query, or the two flags below); default: keys sealed in the database")
    keys.add_argument("--pkcs11-module", default=_env("pkcs11-module"),
                      help="PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)")
    keys.add_argument("--pkcs11-pin-file", type=Path, default=_env("pkcs11-pin-file"),
                      help="file holding the token's user PIN")
    keys.add_argument("--key-reload-interval", type=duration, default=_env("key-reload-interval") or "30s",
                      help="how often the key ring is re-read from the database (default 30s); a rotation's "
                           "delay must exceed it plus the relying parties' JWKS refetch interval")
    p.add_argument("--policy-limit", dest="policy_limits", action="append", metavar="NAME=VALUE",
                   help="a policy evaluation limit (max_claims, max_comparisons, max_issued, max_name_chars, "
                        "max_value_chars, max_issued_chars, max_computed_chars, max_nesting, max_text_chars, "
                        "max_seconds; repeatable; the variable takes a comma-separated list)")
    p.add_argument("--policy-cache-bytes", type=int, default=_env("policy-cache-bytes") or str(64 << 20),
                   help="memory budget of the compiled-policy cache per worker (default 64 MiB)")
    p.add_argument("--store-staleness", type=duration, default=_env("store-staleness") or "15m",
                   help="while the database is unreachable, attest with the last good policies and keys "
                        "this long (default 15m)")
    p.add_argument("--header-timeout", type=float, default=_env("header-timeout") or "10",
                   help="seconds a client has to send a request's headers (default 10)")
    p.add_argument("--body-timeout", type=float, default=_env("body-timeout") or "30",
                   help="seconds a client has to send a request's body after its headers (default 30)")
    p.add_argument("--keepalive-timeout", type=float, default=_env("keepalive-timeout") or "5",
                   help="seconds an idle keep-alive connection stays open (default 5)")
    p.add_argument("--max-connections", type=int, default=_env("max-connections") or "1024",
                   help="open connections per worker; more are refused with 503 (default 1024)")
    p.add_argument("--max-concurrency", type=int, default=_env("max-concurrency") or "256",
                   help="requests in progress per worker; more get 503 with Retry-After (default 256)")
    p.add_argument("--log-format", choices=("json", "text"), default=_env("log-format") or "json",
                   help="one JSON object a line (default) or text; access and audit lines either way")
    p.add_argument("--metrics-token", default=_env("metrics-token"),
                   help="bearer token GET /metrics requires (default: none, /metrics is open)")
    p.add_argument("--allow-loopback-issuer", action="store_true", default=_bool_env("allow-loopback-issuer"),
                   help="start even though the issuer is a loopback URL and the listener is not")
    p.add_argument("--log-level", default=_env("log-level") or "info",
                   choices=("critical", "error", "warning", "info", "debug", "trace"),
                   help="uvicorn's log level (info)")
    p.set_defaults(func=run)


def _paths(values: list[Path] | None, env: str) -> tuple[Path, ...]:
    if values:
        return tuple(values)
    raw = _env(env)
    return tuple(Path(v) for v in raw.split(os.pathsep) if v) if raw else ()


def config_from_args(args: argparse.Namespace) -> Any:
    from affidavit.service import ServiceConfig, ServiceError

    evidence_time = args.evidence_time
    if isinstance(evidence_time, str):  # from the environment
        evidence_time = iso_time(evidence_time)
    tls_cert, tls_key = args.tls_cert, args.tls_key
    if (tls_cert is None) != (tls_key is None):
        raise ServiceError("--tls-cert and --tls-key go together", code="configuration")
    if args.tls_self_signed and tls_cert is not None:
        raise ServiceError("--tls-self-signed and --tls-cert exclude each other", code="configuration")
    for inline, file in (("admin_token", "admin_token_file"), ("pcs_api_key", "pcs_api_key_file")):
        if getattr(args, inline) and getattr(args, file):
            flag = "--" + inline.replace("_", "-")
            raise ServiceError(f"{flag} and {flag}-file exclude each other", code="configuration")
    if args.workers < 1 or args.max_body_bytes < 1024:
        raise ServiceError("--workers must be >= 1 and --max-body-bytes >= 1024", code="configuration")
    if not 0 <= args.shadow_samples <= 500:
        raise ServiceError("--shadow-samples must be 0..500", code="configuration")
    for name in ("header_timeout", "body_timeout", "keepalive_timeout", "max_connections", "max_concurrency",
                 "policy_cache_bytes"):
        if not getattr(args, name) > 0:
            raise ServiceError(f"--{name.replace('_', '-')} must be positive", code="configuration")
    return ServiceConfig(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        database_url=args.database_url,
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
        tls_self_signed=args.tls_self_signed,
        issuer=args.issuer,
        trust_roots=_paths(args.trust_roots, "trust-root"),
        collateral_dir=Path(args.collateral_dir) if args.collateral_dir else None,
        pcs_url=None if args.pcs_url.lower() in ("", "none") else args.pcs_url,
        pcs_api_key=args.pcs_api_key,
        pcs_api_key_file=Path(args.pcs_api_key_file) if args.pcs_api_key_file else None,
        pcs_update=args.pcs_update,
        collateral_grace_seconds=int(duration(args.collateral_grace).total_seconds()),
        evidence_time=evidence_time,
        workers=args.workers,
        mode=args.mode,
        policy_signer_certs=_paths(args.policy_signer_certs, "policy-signer-cert"),
        admin_token=args.admin_token,
        admin_token_file=Path(args.admin_token_file) if args.admin_token_file else None,
        admin_oidc_issuer=args.admin_oidc_issuer,
        admin_oidc_audience=args.admin_oidc_audience,
        max_body_bytes=args.max_body_bytes,
        key_size=args.key_size,
        key_encryption_key_file=Path(args.key_encryption_key_file) if args.key_encryption_key_file else None,
        signing_algorithm=args.signing_algorithm,
        signing_key=args.signing_key or None,
        pkcs11_module=args.pkcs11_module or None,
        pkcs11_pin_file=Path(args.pkcs11_pin_file) if args.pkcs11_pin_file else None,
        key_reload_seconds=_reload_seconds(args.key_reload_interval),
        policy_limits=_policy_limits(args.policy_limits),
        policy_cache_bytes=args.policy_cache_bytes,
        store_staleness_seconds=int(duration(args.store_staleness).total_seconds()),
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
        max_concurrency=args.max_concurrency,
        metrics_token=args.metrics_token,
        extra={**_tpm_trust(args), **_snp_options(args), **_azure_cvm(args)},
    )


def _reload_seconds(value: Any) -> float:
    from affidavit.service import ServiceError

    seconds = duration(value).total_seconds()
    if not 0.1 <= seconds <= 3600:
        raise ServiceError("--key-reload-interval must be between 0.1s and 1h", code="configuration")
    return float(seconds)


def _policy_limits(values: list[str] | None) -> dict[str, float]:
    """``NAME=VALUE`` pairs (flags, else ``AFFIDAVIT_POLICY_LIMIT``), checked against ``PolicyLimits``."""
    from affidavit.policy.limits import PolicyLimits
    from affidavit.service import ServiceError

    items = values or [v for v in (_env("policy-limit") or "").split(",") if v.strip()]
    known = PolicyLimits().as_dict()
    out: dict[str, float] = {}
    for item in items:
        name, _, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in known:
            raise ServiceError(f"--policy-limit: unknown limit {name!r}; one of {', '.join(known)}",
                               code="configuration")
        try:
            value: float = int(raw) if isinstance(known[name], int) else float(raw)
        except ValueError:
            raise ServiceError(f"--policy-limit {name}: {raw!r} is not a number",
                               code="configuration") from None
        out[name] = value
    try:
        PolicyLimits(**out)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ServiceError(f"--policy-limit: {exc}", code="configuration") from None
    return out


def _snp_options(args: argparse.Namespace) -> dict[str, Any]:
    """SevSnpVm settings for ``affidavit.service.snp_route.build`` (read from ``ServiceConfig.extra``)."""
    extra: dict[str, Any] = {}
    roots = _paths(getattr(args, "snp_trust_roots", None), "snp-trust-root")
    if roots:
        extra["snp_trust_roots"] = [str(p) for p in roots]
    for name in ("snp_collateral_dir", "kds_url", "snp_product"):
        value = getattr(args, name, None)
        if value:
            extra["snp_kds_url" if name == "kds_url" else name] = str(value)
    if getattr(args, "snp_require_crl", False):
        extra["snp_require_crl"] = True
    return extra


def _azure_cvm(args: argparse.Namespace) -> dict[str, Any]:
    """``--azure-cvm-baselines``, checked now so that a bad file stops the start, not the first request."""
    if not args.azure_cvm_baselines:
        return {}
    from affidavit.service.azure_guest import load_baselines

    load_baselines(str(args.azure_cvm_baselines))
    return {"azure_cvm_baselines": str(args.azure_cvm_baselines)}


def _tpm_trust(args: argparse.Namespace) -> dict[str, Any]:
    """TPM AK trust for ``affidavit.service.tpm_route`` (read from ``ServiceConfig.extra``)."""
    extra: dict[str, Any] = {}
    for name in ("tpm_aik_roots", "tpm_aik_intermediates", "tpm_registered_aks"):
        paths = _paths(getattr(args, name, None), name.replace("_", "-")[:-1])
        if paths:
            extra[name] = [str(p) for p in paths]
    if getattr(args, "shadow_samples", 0):
        extra["shadow_samples"] = int(args.shadow_samples)
    return extra


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import functools

    import uvicorn

    from affidavit.service.config import CONFIG_ENV, secrets_to_files
    from affidavit.service.logs import log_config
    from affidavit.service.multiproc import multiprocess_directory, remove_multiprocess_directory
    from affidavit.service.state import build_state, prepare_data_dir
    from affidavit.service.transport import CoalescingHttpToolsProtocol
    from affidavit.service.workers import reuse_port_supported, run_workers

    os.umask(0o077)  # everything the service writes (data dir, database, -wal/-shm, keys) is private
    config = config_from_args(args)
    prepare_data_dir(config.data_dir)
    listener = None
    if config.port == 0:  # the OS picks the port; the banner says which (tests read it: no port race)
        if config.workers > 1 and reuse_port_supported():
            from affidavit.service.workers import bind

            listener = bind(config.host, 0)  # bound, not listening: holds the port for the workers
        else:
            listener = _bind(config.host, 0)
        config = dataclasses.replace(config, port=listener.getsockname()[1])
    from affidavit.service.issuer import check_public_issuer

    check_public_issuer(config, allow_loopback=args.allow_loopback_issuer)
    if config.tls_self_signed:
        from affidavit.service.tls import ensure_self_signed

        cert, key = ensure_self_signed(config.data_dir, config.host)
        config = dataclasses.replace(config, tls_cert=cert, tls_key=key)
    _check_tls(config)
    try:  # fail fast on a bad configuration, and create the first signing key once, before workers fork
        state = build_state(config)
    except (OSError, ValueError) as exc:
        raise AffidavitError(f"cannot start: {exc}", code="configuration") from None
    admin_token = state.admin_token
    state.close()
    # Workers get the configuration in an environment variable, but no secret: those go through 0600
    # files (the operator's, or ones written into <data-dir>/secrets/), and the inline variables are
    # dropped from the environment the workers inherit.
    for name in ("ADMIN_TOKEN", "PCS_API_KEY"):
        os.environ.pop(_ENV_PREFIX + name, None)
    handed = secrets_to_files(config)
    copies = [handed.admin_token_file if config.admin_token_file is None else None,
              handed.pcs_api_key_file if config.pcs_api_key_file is None else None]
    os.environ[CONFIG_ENV] = handed.to_json()
    options: dict[str, Any] = {
        "app": "affidavit.service.app:app_from_environment",
        "factory": True,
        "host": config.host,
        "port": config.port,
        "ssl_certfile": str(config.tls_cert) if config.tls_cert else None,
        "ssl_keyfile": str(config.tls_key) if config.tls_key else None,
        "log_level": args.log_level,
        "log_config": log_config(args.log_format, args.log_level),
        "access_log": False,  # the app writes its own (affidavit.access), with request ids
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "timeout_keep_alive": config.keepalive_timeout,
        # read timeouts and the connection cap; each response in one write (service.transport)
        "http": functools.partial(CoalescingHttpToolsProtocol, limits=config.connection_limits),
    }
    metrics_dir = multiprocess_directory()  # before any worker imports prometheus_client
    try:
        if config.workers > 1 and reuse_port_supported():
            if listener is None:
                _bind(config.host, config.port, reuse_port=True).close()  # the address is usable: announce it
            _banner(config, admin_token)
            return run_workers(config.workers, config.host, config.port, options)  # listener keeps the port
        if config.workers > 1 and listener is None:
            _bind(config.host, config.port).close()
            _banner(config, admin_token)
            uvicorn.run(**options, workers=config.workers)
            return 0
        # bound before the banner, so the URL it prints is ours
        sock = listener if listener is not None else _bind(config.host, config.port)
        _banner(config, admin_token)
        server = uvicorn.Server(uvicorn.Config(**options))
        server.run(sockets=[sock])
        return 0 if server.started else 1
    finally:
        remove_multiprocess_directory(metrics_dir)
        for path in copies:  # the copies of inline secrets live only as long as the service
            if path is not None:
                path.unlink(missing_ok=True)


def _bind(host: str, port: int, *, reuse_port: bool = False) -> Any:
    """A listening socket on host:port, or a one-line error naming the busy port and what to do."""
    import socket

    from affidavit.service import ServiceError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise ServiceError(f"port {port} on {host} is already in use (another Affidavit, or another "
                               "server?): stop it, or choose another with --port",
                               code="address_in_use") from None
        if exc.errno == errno.EACCES:
            raise ServiceError(f"no permission to listen on {host}:{port} (ports below 1024 need root): "
                               f"choose another with --port", code="address_unusable") from None
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror} (check --host)",
                           code="address_unusable") from None
    return sock


def _check_tls(config: Any) -> None:
    """Load the TLS certificate and key now, so that a missing or bad file is named before the banner."""
    import ssl

    from affidavit.service import ServiceError

    if config.tls_cert is None:
        return
    for flag, path in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise ServiceError(f"cannot read {flag} {path}: {exc.strerror}", code="configuration") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(config.tls_cert), str(config.tls_key))
    except (ssl.SSLError, ValueError) as exc:
        raise ServiceError(f"--tls-cert {config.tls_cert} / --tls-key {config.tls_key} are not a usable PEM "
                           f"certificate and key ({exc})", code="configuration") from None


def _banner(config: Any, admin_token: str | None) -> None:
    base = config.base_url
    insecure = " -k" if config.tls_self_signed else ""
    print(f"Affidavit attestation service ({config.mode} mode) at {base}", flush=True)
    print(f"  metadata: {base}/.well-known/openid-configuration", flush=True)
    if config.admin_token_file is not None:
        print(f"  management bearer token: in {config.admin_token_file}", flush=True)
    elif admin_token and config.admin_token is None:
        print(f"  management bearer token: in {config.data_dir / 'admin-token'} (generated; mode 0600)",
              flush=True)
    print(f"  try: curl -s{insecure} {base}/.well-known/openid-configuration", flush=True)
    if config.key_encryption_key_file is None:  # said once, after the socket is bound
        print(f"warning: private keys are sealed under {config.kek_path}, generated in the data directory; "
              "production deployments keep the key-encryption key elsewhere (--key-encryption-key-file)",
              file=sys.stderr, flush=True)
