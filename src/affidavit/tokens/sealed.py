"""MAA's sealed AzureGuest response (azure-cvm.md §6.5): the JWT under AES-256-GCM (associated data
``Transport Key``, 12-byte IV, tag split into ``AuthenticationData``), the AES key RSA-PKCS#1 v1.5
encrypted to the TPM's ephemeral key, the JSON envelope base64url'd into ``token``.

Only the TPM holding the certified ephemeral key, with the quoted PCR values, can read the token: that
is the freshness of MAA's guest flow (its clients send an empty quote nonce).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from affidavit import strict_json
from affidavit.jose import b64url
from affidavit.tokens.errors import TokenError

TRANSPORT_KEY_AAD = b"Transport Key"
MAX_SEALED_TOKEN = 1 << 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seal_token(jwt: str, key: rsa.RSAPublicKey, *, random: Callable[[int], bytes] = os.urandom) -> str:
    """The ``token`` value of an AzureGuest response for ``jwt``, sealed to ``key``."""
    inner = random(32)
    iv = random(12)
    sealed = AESGCM(inner).encrypt(iv, jwt.encode("ascii"), TRANSPORT_KEY_AAD)
    envelope = {
        "AuthenticationData": _b64(sealed[-16:]),
        "EncryptedInnerKey": _b64(key.encrypt(inner, padding.PKCS1v15())),
        "EncryptionParams": {
            "BlockMode": "ChainingModeGCM",
            "BlockPadding": "PKCS7",
            "Cipher": "AES",
            "Iv": _b64(iv),
            "KeySizeInBits": 256,
        },
        "Jwt": _b64(sealed[:-16]),
    }
    return b64url(json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode("ascii"))


def _field(obj: Any, name: str) -> bytes:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise TokenError(f"sealed token: missing {name}", code="malformed_jws")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TokenError(f"sealed token: {name} is not base64", code="bad_base64") from None


def unseal_token(token: str, decrypt_key: Callable[[bytes], bytes]) -> str:
    """The JWT inside a sealed ``token``; ``decrypt_key`` RSA-decrypts ``EncryptedInnerKey`` (PKCS#1
    v1.5), on a real VM inside the vTPM (``tpm2_rsadecrypt``)."""
    if len(token) > MAX_SEALED_TOKEN:
        raise TokenError("sealed token too large", code="malformed_jws")
    try:
        envelope = strict_json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise TokenError("sealed token is not base64url JSON", code="bad_json") from None
    params = envelope.get("EncryptionParams") if isinstance(envelope, dict) else None
    iv = _field(params, "Iv")
    inner = decrypt_key(_field(envelope, "EncryptedInnerKey"))
    if len(inner) != 32 or len(iv) != 12:
        raise TokenError("sealed token: not an AES-256-GCM key and 12-byte IV", code="malformed_jws")
    try:
        jwt = AESGCM(inner).decrypt(
            iv, _field(envelope, "Jwt") + _field(envelope, "AuthenticationData"), TRANSPORT_KEY_AAD
        )
    except InvalidTag:
        raise TokenError("sealed token: authentication failed", code="bad_signature") from None
    return jwt.decode("ascii", "replace")
