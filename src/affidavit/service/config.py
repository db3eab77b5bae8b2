"""The service's configuration: one dataclass, filled by ``affidavit serve`` from flags and AFFIDAVIT_* vars.

It round-trips through JSON so that uvicorn worker processes (which import the app by name) rebuild
exactly the configuration the parent parsed.
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
    pcs_update: Literal["standard", "early"] = "standard"
    collateral_grace_seconds: int = 0  # collateral past nextUpdate is accepted this long (and flagged)
    evidence_time: datetime | None = None  # fixed clock for evidence checks (tests, offline replay)
    workers: int = 1
    mode: Mode = "aad"
    policy_signer_certs: tuple[Path, ...] = ()
    admin_token: str | None = None  # aad mode: generated and kept in data_dir when not given (and no OIDC)
    admin_oidc_issuer: str | None = None  # management JWTs from this OIDC issuer are accepted too
    admin_oidc_audience: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    key_size: int = 2048
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

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
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'affidavit.db').resolve()}"

    def to_json(self) -> str:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
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
        paths = {"data_dir", "tls_cert", "tls_key", "collateral_dir"}
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
                v = datetime.fromisoformat(v)
            kwargs[f.name] = v
        return cls(**kwargs)


def _url_host(host: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host
