"""How the HTTP clients (attestation client, relying party, TPM client) are told whom to trust over TLS.

httpx deprecates a CA-file path as ``verify``; callers may still pass one (it is what a command line has),
and it becomes an SSL context here, once.
"""

from __future__ import annotations

import ssl
from pathlib import Path

VerifyArg = bool | str | Path | ssl.SSLContext


def ssl_verify(verify: VerifyArg) -> bool | ssl.SSLContext:
    """``True`` (system CAs), ``False`` (no verification), a CA bundle path, or a ready SSL context."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    return ssl.create_default_context(cafile=str(verify))
