"""The key-encryption key: sealing with associated data, parsing its file, and what a wrong KEK says."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.store import (
    KeyEncryptionKey,
    StoreError,
    create_kek_file,
    from_stored,
    read_kek_file,
    to_stored,
)
from affidavit.store.kek import key_associated_data, parse_kek
from affidavit.tokens import SigningKey

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KEK = KeyEncryptionKey(bytes(range(32)))


def test_seal_opens_only_with_its_key_and_associated_data() -> None:
    sealed = KEK.seal(b"secret", b"kid-a")
    assert KEK.open(sealed, b"kid-a") == b"secret" and b"secret" not in sealed
    with pytest.raises(StoreError, match="does not open") as err:
        KEK.open(sealed, b"kid-b")  # moved to another row
    assert err.value.code == "key_encryption"
    with pytest.raises(StoreError, match="does not open"):
        KEK.open(KeyEncryptionKey(bytes(32)).seal(b"secret", b"kid-a"), b"kid-a")
    with pytest.raises(StoreError, match="is sealed under key-encryption key"):
        KEK.open(sealed, b"kid-a", kek_id="0000000000000000")
    for i in range(len(sealed)):  # any flipped byte is refused
        flipped = sealed[:i] + bytes([sealed[i] ^ 1]) + sealed[i + 1:]
        with pytest.raises(StoreError):
            KEK.open(flipped, b"kid-a")


def test_a_stored_key_holds_no_plaintext_and_rows_cannot_be_swapped() -> None:
    a, b = (SigningKey.generate("https://a.test", now=NOW, algorithm="ES256") for _ in range(2))
    row_a, row_b = to_stored(a, KEK), to_stored(b, KEK)
    der = a.private_key.private_bytes(*_pkcs8())
    assert row_a.sealed is not None and der not in row_a.sealed and row_a.kek_id == KEK.id
    assert from_stored(row_a, kek=KEK).sign(b"x")  # opens and signs
    swapped = dataclasses.replace(row_a, sealed=row_b.sealed)
    with pytest.raises(StoreError, match="does not open"):
        from_stored(swapped, kek=KEK)
    assert from_stored(row_a).signer is None  # without the KEK: published only
    assert KEK.open(row_a.sealed, key_associated_data(a.kid)) == der


def _pkcs8() -> tuple[object, object, object]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()


def test_kek_file_forms_and_creation(tmp_path: Path) -> None:
    raw = bytes(range(32))
    for name, data in {"b64": base64.b64encode(raw) + b"\n", "hex": raw.hex().encode() + b"\n",
        "raw": raw}.items():
        (tmp_path / name).write_bytes(data)
        assert read_kek_file(tmp_path / name) == KeyEncryptionKey(raw)
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(StoreError, match="does not hold a 32-byte key"):
        read_kek_file(tmp_path / "short")
    with pytest.raises(StoreError, match="cannot read"):
        read_kek_file(tmp_path / "missing")
    kek, created = create_kek_file(tmp_path / "new" / "kek")
    assert created and (tmp_path / "new" / "kek").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert create_kek_file(tmp_path / "new" / "kek") == (kek, False)
    assert repr(kek).count(kek.key.hex()) == 0  # the key is not in its repr


@given(st.binary(max_size=200))
def test_any_kek_file_content_parses_or_is_a_store_error(data: bytes) -> None:
    try:
        assert len(parse_kek(data, "file").key) == 32
    except StoreError as exc:
        assert exc.code == "key_encryption"


@given(st.binary(max_size=120))
def test_any_sealed_value_opens_or_is_a_store_error(data: bytes) -> None:
    with pytest.raises(StoreError):
        KEK.open(data, b"aad")
