"""The service's configuration: one dataclass, filled by ``affidavit serve`` from flags and AFFIDAVIT_* vars.

It round-trips through JSON so that uvicorn worker processes (which import the app by name) rebuild
exactly the configuration the parent parsed, except for secrets: :data:`SECRET_FIELDS` are never
written to that JSON (which travels in an environment variable, readable in ``/proc``). A worker reads
them from the files named by ``admin_token_file`` / ``pcs_api_key_file`` (:func:`load_secrets`); the
parent writes a secret that was given inline to a 0600 file in ``<data_dir>/secrets/`` for that
(:func:`secrets_to_files`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

Mode = Literal["aad", "isolated"]
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
CONFIG_ENV = "AFFIDAVIT_SERVICE_CONFIG_JSON"
DEFAULT_KEK_FILE = "key-encryption-key"
# secret field -> the field naming the file it is read from
SECRET_FIELDS = {"admin_token": "admin_token_file", "pcs_api_key": "pcs_api_key_file"}
MAX_SECRET_BYTES = 4096


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("var")
    database_url: str | None = None  # default: SQLite in data_dir
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    metrics_token: str | None = None  # bearer token /metrics requires; None: open (bind it privately)
    issuer: str | None = None  # default: scheme://host:port
    trust_roots: tuple[Path, ...] = ()  # PEM files; empty means the Intel SGX Root CA
    collateral_dir: Path | None = None  # offline files; without it, Intel PCS (or a PCCS) through a cache
    pcs_url: str | None = "https://api.trustedservices.intel.com"  # None: serve the collateral cache only
    pcs_api_key: str | None = None
    pcs_api_key_file: Path | None = None  # the PCS API key is read from this file (preferred)
    pcs_update: Literal["standard", "early"] = "standard"
    collateral_grace_seconds: int = 0  # collateral past nextUpdate is accepted this long (and flagged)
    evidence_time: datetime | None = None  # fixed clock for evidence checks (tests, offline replay)
    workers: int = 1
    mode: Mode = "aad"
    policy_signer_certs: tuple[Path, ...] = ()
    admin_token: str | None = None  # generated and kept in data_dir when not given (and no OIDC)
    admin_token_file: Path | None = None  # the admin token is read from this file (preferred)
    admin_oidc_issuer: str | None = None  # management JWTs from this OIDC issuer are accepted too
    admin_oidc_audience: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    key_size: int = 2048
    # Signing keys (docs/keys.md): sealed under this KEK file (default: generated into data_dir), made
    # with this algorithm, in software or on the PKCS#11 token a ``pkcs11:`` URI names.
    key_encryption_key_file: Path | None = None
    signing_algorithm: Literal["RS256", "ES256"] = "RS256"
    signing_key: str | None = None
    pkcs11_module: str | None = None
    pkcs11_pin_file: Path | None = None
    key_reload_seconds: float = 30.0
    # Bounds (docs/service.md, "Limits"): policy evaluation (PolicyLimits field -> value), the compiled-
    # policy cache, how long attestations run on the last good policies and keys while the database is
    # down, and per-worker connection limits.
    policy_limits: dict[str, float] = field(default_factory=dict, hash=False)
    policy_cache_bytes: int = 64 << 20
    store_staleness_seconds: int = 900
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1024
    max_concurrency: int = 256
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def policy_limits_obj(self) -> Any:
        """The ``affidavit.policy.PolicyLimits`` in force (defaults, overridden by ``policy_limits``)."""
        from affidavit.policy.limits import PolicyLimits

        return PolicyLimits(**self.policy_limits)  # type: ignore[arg-type]

    @property
    def connection_limits(self) -> Any:
        from affidavit.service.connections import ConnectionLimits

        return ConnectionLimits(
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            keepalive_timeout=self.keepalive_timeout,
            max_connections=self.max_connections,
            max_concurrency=self.max_concurrency,
        )

    @property
    def collateral_grace(self) -> timedelta:
        return timedelta(seconds=self.collateral_grace_seconds)

    @property
    def tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base_url(self) -> str:
        """The URL a local client reaches the service at (wildcard hosts become loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"{self.scheme}://{_url_host(host)}:{self.port}"

    @property
    def public_issuer(self) -> str:
        return (self.issuer or self.base_url).rstrip("/")

    @property
    def kek_path(self) -> Path:
        return self.key_encryption_key_file or self.data_dir / DEFAULT_KEK_FILE

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'affidavit.db').resolve()}"

    def to_json(self) -> str:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in SECRET_FIELDS:
                continue  # never serialised: workers read secrets from files (secrets_to_files)
            v = getattr(self, f.name)
            if isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple):
                v = [str(x) for x in v]
            elif isinstance(v, datetime):
                v = v.isoformat()
            out[f.name] = v
        return json.dumps(out)

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        raw = json.loads(text)
        paths = {"data_dir", "tls_cert", "tls_key", "collateral_dir", "key_encryption_key_file",
                 "pkcs11_pin_file", *SECRET_FIELDS.values()}
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            v = raw[f.name]
            if f.name in paths and v is not None:
                v = Path(v)
            elif f.name in ("trust_roots", "policy_signer_certs"):
                v = tuple(Path(x) for x in v)
            elif f.name == "evidence_time" and v is not None:
                from affidavit.timefmt import parse_time

                try:
                    v = parse_time(v, assume_utc=True)
                except ValueError as exc:
                    from affidavit.service.errors import ServiceError

                    raise ServiceError(f"evidence_time: {exc}", code="configuration") from None
            kwargs[f.name] = v
        return cls(**kwargs)


def read_secret(path: Path, what: str) -> str:
    """A secret from a file: its text without surrounding whitespace; refuses empty or huge files."""
    from affidavit.service.errors import ServiceError

    try:
        data = path.read_bytes()[: MAX_SECRET_BYTES + 1]
    except OSError as exc:
        raise ServiceError(f"cannot read the {what} file {path}: {exc.strerror}",
                           code="configuration") from None
    text = data.decode("utf-8", "replace").strip()
    if not text or len(data) > MAX_SECRET_BYTES or "\n" in text:
        raise ServiceError(f"the {what} file {path} must hold one line of at most {MAX_SECRET_BYTES} bytes",
                           code="configuration")
    return text


def load_secrets(config: ServiceConfig) -> ServiceConfig:
    """``config`` with every secret that is named by a file read from it (given inline, it stays)."""
    changes: dict[str, Any] = {}
    for secret, file_field in SECRET_FIELDS.items():
        path = getattr(config, file_field)
        if getattr(config, secret) is None and path is not None:
            changes[secret] = read_secret(Path(path), secret.replace("_", " "))
    return dataclasses.replace(config, **changes) if changes else config


def secrets_to_files(config: ServiceConfig) -> ServiceConfig:
    """The configuration to hand to worker processes: each secret given inline is written to a 0600 file
    in ``<data_dir>/secrets/`` (a 0700 directory) and named by its ``*_file`` field instead."""
    import os

    changes: dict[str, Any] = {}
    for secret, file_field in SECRET_FIELDS.items():
        value = getattr(config, secret)
        if value is None:
            continue
        changes[secret] = None
        if getattr(config, file_field) is None:
            folder = config.data_dir / "secrets"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
            path = folder / secret.replace("_", "-")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            path.chmod(0o600)
            changes[file_field] = path.resolve()
    return dataclasses.replace(config, **changes) if changes else config


def _url_host(host: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host
