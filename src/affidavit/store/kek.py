"""The key-encryption key (KEK): AES-256-GCM over every private key and secret the database holds.

A database (or its backup) alone mints no token: the signing keys in it are sealed under a 32-byte key
kept in a file outside it (``affidavit serve --key-encryption-key-file``). Each sealed value is
``nonce (12) || ciphertext || tag (16)`` with associated data naming what it is (the key's ``kid``, the
secret's name), so a sealed value moved to another row does not open. ``KeyEncryptionKey.id`` (public: a
hash of the key) is stored next to every sealed value so that a wrong KEK is named as such.

The file holds the key as base64 (what :func:`create_kek_file` writes, one line), 64 hex digits, or the
32 raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from affidavit.store.errors import StoreError

KEK_BYTES = 32
NONCE_BYTES = 12
_MAX_FILE_BYTES = 4096


def _fail(message: str) -> StoreError:
    return StoreError(message, code="key_encryption")


@dataclass(frozen=True)
class KeyEncryptionKey:
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEK_BYTES:
            raise _fail(f"a key-encryption key has {KEK_BYTES} bytes, not {len(self.key)}")

    @classmethod
    def generate(cls) -> KeyEncryptionKey:
        return cls(secrets.token_bytes(KEK_BYTES))

    @property
    def id(self) -> str:
        """A public name for this KEK (16 hex digits of a hash), stored beside what it sealed."""
        return hashlib.sha256(b"affidavit key-encryption key id\x00" + self.key).hexdigest()[:16]

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes, *, kek_id: str | None = None,
        what: str = "key") -> bytes:
        """The plaintext; a :class:`StoreError` ``key_encryption`` when the KEK is not the one that sealed
        it, or the value was altered or moved."""
        if kek_id is not None and kek_id != self.id:
            raise _fail(f"{what} is sealed under key-encryption key {kek_id}, but the one given is {self.id}")
        if len(sealed) < NONCE_BYTES + 16:
            raise _fail(f"sealed {what} is truncated")
        try:
            return AESGCM(self.key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
        except InvalidTag:
            raise _fail(f"sealed {what} does not open: wrong key-encryption key, or altered") from None


def parse_kek(data: bytes, source: str) -> KeyEncryptionKey:
    """The KEK in a file's bytes: base64 or hex text of 32 bytes, or the 32 bytes themselves."""
    if len(data) == KEK_BYTES:
        return KeyEncryptionKey(data)
    text = data.strip()
    for decode in (binascii.unhexlify, lambda t: base64.b64decode(t, validate=True)):
        try:
            raw = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == KEK_BYTES:
            return KeyEncryptionKey(raw)
    raise _fail(f"{source} does not hold a {KEK_BYTES}-byte key (base64, hex or raw)")


def read_kek_file(path: Path) -> KeyEncryptionKey:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(f"cannot read the key-encryption key file {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise _fail(f"the key-encryption key file {path} is larger than {_MAX_FILE_BYTES} bytes")
    return parse_kek(data, f"the key-encryption key file {path}")


def create_kek_file(path: Path) -> tuple[KeyEncryptionKey, bool]:
    """Read the KEK at ``path``, creating it (mode 0600, base64) if it does not exist; True when this call
    created it. Processes starting together agree on one key: the first link wins."""
    if path.exists():
        return read_kek_file(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    kek = KeyEncryptionKey.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(kek.key) + b"\n")
    created = True
    try:
        os.link(tmp, path)
    except FileExistsError:
        created = False
    finally:
        tmp.unlink(missing_ok=True)
    return (kek if created else read_kek_file(path)), created


def key_associated_data(kid: str) -> bytes:
    return b"affidavit signing key\x00" + kid.encode("utf-8")


def secret_associated_data(name: str) -> bytes:
    return b"affidavit secret\x00" + name.encode("utf-8")
