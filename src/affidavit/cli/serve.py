"""``affidavit serve``: run the attestation service under uvicorn.

Every flag has an ``AFFIDAVIT_*`` environment variable (flag name, upper-case, dashes as underscores);
the flag wins. Repeatable flags take a list separated by the OS path separator in their variable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from affidavit.cli.arguments import duration, iso_time
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
    p.add_argument("--host", default=_env("host") or "127.0.0.1")
    p.add_argument("--port", type=int, default=_env("port") or "8080")
    p.add_argument("--data-dir", type=Path, default=Path(_env("data-dir") or "var"),
                   help="SQLite database, signing keys, TLS certificate, admin token (default ./var)")
    p.add_argument("--database-url", default=_env("database-url"),
                   help="sqlite:///path or postgresql://... (default SQLite in the data dir)")
    p.add_argument("--tls-cert", type=Path, default=_env("tls-cert"))
    p.add_argument("--tls-key", type=Path, default=_env("tls-key"))
    p.add_argument("--tls-self-signed", action="store_true", default=_bool_env("tls-self-signed"),
                   help="serve HTTPS with a certificate generated for the host and kept in the data dir")
    p.add_argument("--issuer", default=_env("issuer"), help="public base URL (default: scheme://host:port)")
    p.add_argument("--trust-root", dest="trust_roots", type=Path, action="append",
                   help="PEM of a trusted DCAP root (repeatable; default the Intel SGX Root CA)")
    p.add_argument("--collateral-dir", type=Path, default=_env("collateral-dir"),
                   help="directory tree of offline collateral JSON files")
    p.add_argument("--pcs-url", default=_env("pcs-url") or "https://api.trustedservices.intel.com",
                   help="Intel PCS or a PCCS, used without --collateral-dir ('none': the cache only)")
    p.add_argument("--pcs-api-key", default=_env("pcs-api-key"))
    p.add_argument("--pcs-update", choices=("standard", "early"), default=_env("pcs-update") or "standard",
                   help="which TCB evaluation Intel PCS serves: the standard or the early update")
    p.add_argument("--collateral-grace", type=duration, default=_env("collateral-grace") or "0",
                   help="accept collateral this long past its nextUpdate, flagged in the token as "
                        "x-ms-sgx-collateral-expired (e.g. 12h, 7d; default 0: strict)")
    p.add_argument("--evidence-time", type=iso_time, default=_env("evidence-time"),
                   help="fixed clock for evidence checks (tests, offline replay); tokens use the real clock")
    p.add_argument("--workers", type=int, default=_env("workers") or "1")
    p.add_argument("--mode", choices=("aad", "isolated"), default=_env("mode") or "aad")
    p.add_argument("--policy-signer-cert", dest="policy_signer_certs", type=Path, action="append",
                   help="PEM of an initial policy management certificate (isolated mode; repeatable)")
    p.add_argument("--admin-token", default=_env("admin-token"),
                   help="bearer token for management calls (aad mode; default: generated into the data dir)")
    p.add_argument("--tpm-aik-root", dest="tpm_aik_roots", type=Path, action="append",
                   help="PEM of a CA trusted for TPM AIK certificates (repeatable)")
    p.add_argument("--tpm-aik-intermediate", dest="tpm_aik_intermediates", type=Path, action="append",
                   help="PEM of an intermediate CA for TPM AIK certificates (repeatable)")
    p.add_argument("--tpm-registered-ak", dest="tpm_registered_aks", type=Path, action="append",
                   help="PEM public key of a TPM attestation key trusted without a certificate (repeatable)")
    p.add_argument("--admin-oidc-issuer", default=_env("admin-oidc-issuer"),
                   help="also accept management JWTs signed by this OIDC issuer (keys from its jwks_uri)")
    p.add_argument("--admin-oidc-audience", default=_env("admin-oidc-audience"),
                   help="the aud those JWTs must carry")
    p.add_argument("--max-body-bytes", type=int, default=_env("max-body-bytes") or str(1024 * 1024))
    p.add_argument("--key-size", type=int, choices=(2048, 3072), default=_env("key-size") or "2048",
                   help="RSA size of newly generated token signing keys")
    p.add_argument("--log-level", default=_env("log-level") or "info")
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
    if args.workers < 1 or args.max_body_bytes < 1024:
        raise ServiceError("--workers must be >= 1 and --max-body-bytes >= 1024", code="configuration")
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
        pcs_update=args.pcs_update,
        collateral_grace_seconds=int(duration(args.collateral_grace).total_seconds()),
        evidence_time=evidence_time,
        workers=args.workers,
        mode=args.mode,
        policy_signer_certs=_paths(args.policy_signer_certs, "policy-signer-cert"),
        admin_token=args.admin_token,
        admin_oidc_issuer=args.admin_oidc_issuer,
        admin_oidc_audience=args.admin_oidc_audience,
        max_body_bytes=args.max_body_bytes,
        key_size=args.key_size,
        extra=_tpm_trust(args),
    )


def _tpm_trust(args: argparse.Namespace) -> dict[str, Any]:
    """TPM AK trust for ``affidavit.service.tpm_route`` (read from ``ServiceConfig.extra``)."""
    extra: dict[str, Any] = {}
    for name in ("tpm_aik_roots", "tpm_aik_intermediates", "tpm_registered_aks"):
        paths = _paths(getattr(args, name, None), name.replace("_", "-")[:-1])
        if paths:
            extra[name] = [str(p) for p in paths]
    return extra


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from affidavit.service.config import CONFIG_ENV
    from affidavit.service.state import build_state
    from affidavit.service.workers import reuse_port_supported, run_workers

    config = config_from_args(args)
    listener = None
    if config.port == 0:  # the OS picks the port; the banner says which (tests read it: no port race)
        from affidavit.service.workers import bind

        listener = bind(config.host, 0, reuse_port=config.workers > 1 and reuse_port_supported())
        config = dataclasses.replace(config, port=listener.getsockname()[1])
    if config.tls_self_signed:
        from affidavit.service.tls import ensure_self_signed

        cert, key = ensure_self_signed(config.data_dir, config.host)
        config = dataclasses.replace(config, tls_cert=cert, tls_key=key)
    try:  # fail fast on a bad configuration, and create the first signing key once, before workers fork
        state = build_state(config)
    except (OSError, ValueError) as exc:
        raise AffidavitError(f"cannot start: {exc}", code="configuration") from None
    admin_token = state.admin_token
    state.close()
    os.environ[CONFIG_ENV] = config.to_json()
    _banner(config, admin_token)
    options: dict[str, Any] = {
        "app": "affidavit.service.app:app_from_environment",
        "factory": True,
        "host": config.host,
        "port": config.port,
        "ssl_certfile": str(config.tls_cert) if config.tls_cert else None,
        "ssl_keyfile": str(config.tls_key) if config.tls_key else None,
        "log_level": args.log_level,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if config.workers > 1 and reuse_port_supported():
        return run_workers(config.workers, config.host, config.port, options)  # listener keeps the port
    if listener is not None:
        uvicorn.Server(uvicorn.Config(**options, workers=config.workers)).run(sockets=[listener])
        return 0
    uvicorn.run(**options, workers=config.workers)
    return 0


def _banner(config: Any, admin_token: str | None) -> None:
    base = config.base_url
    insecure = " -k" if config.tls_self_signed else ""
    print(f"Affidavit attestation service ({config.mode} mode) at {base}", flush=True)
    print(f"  metadata: {base}/.well-known/openid-configuration", flush=True)
    if admin_token and config.admin_token is None:
        print(f"  management bearer token: in {config.data_dir / 'admin-token'}", flush=True)
    print(f"  try: curl -s{insecure} {base}/.well-known/openid-configuration", flush=True)
