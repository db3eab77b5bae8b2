"""The public issuer of a fleet: every replica must sign with, and publish, the one URL relying parties use.

The default issuer is the listen address (``scheme://host:port``, a wildcard host written as loopback),
right for one process on a laptop and wrong for anything behind a load balancer: tokens would carry an
``iss`` and ``jku`` no relying party can reach, and each replica would name itself. So ``serve`` refuses
to start with a loopback issuer while listening on a non-loopback address, unless told
``--allow-loopback-issuer``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from affidavit.service.config import ServiceConfig
from affidavit.service.errors import ServiceError

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True for loopback addresses and names (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    host = host.strip("[]").lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_public_issuer(config: ServiceConfig, *, allow_loopback: bool = False) -> None:
    """Raise a ``configuration`` ServiceError when a non-loopback listener would issue tokens under a
    loopback issuer (the default one included)."""
    if allow_loopback or is_loopback(config.host or "0.0.0.0"):
        return
    issuer = config.public_issuer
    try:
        host = urlsplit(issuer).hostname or ""
    except ValueError:
        raise ServiceError(f"--issuer {issuer!r} is not a URL", code="configuration") from None
    if is_loopback(host):
        what = "the default issuer" if config.issuer is None else "--issuer"
        raise ServiceError(
            f"listening on {config.host} but {what} is {issuer}, a loopback URL relying parties elsewhere "
            "cannot reach: set --issuer (AFFIDAVIT_ISSUER) to the public base URL every replica shares, or "
            "pass --allow-loopback-issuer",
            code="configuration",
        )
