"""MAA's ``x-ms-policy-hash``: BASE64URL(SHA256(BASE64URL(UTF8(policy text)))), both unpadded (JOSE).

The live vectors (maa-api.md §7.4, maa-policy.md §1) have texts whose length is a multiple of 3, so they
cannot tell whether MAA pads the inner encoding; unpadded is what BASE64URL means in JOSE.
"""

from __future__ import annotations

import hashlib

from affidavit.jose import b64url


def policy_hash(text: str) -> str:
    return b64url(hashlib.sha256(b64url(text.encode("utf-8")).encode("ascii")).digest())
