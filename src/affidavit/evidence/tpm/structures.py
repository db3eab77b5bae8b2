"""Parsers for the big-endian TPM 2.0 structures a quote consists of.

Strict by design: every length is bounded, every algorithm must be known, and the whole buffer must
be consumed, because these bytes arrive from an untrusted client.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm._reader import Reader
from affidavit.evidence.tpm.errors import TpmFormatError

MAX_BANKS = 16
MAX_SELECT_BYTES = 4  # 32 PCRs; PC Client TPMs use 3
MAX_NAME = 2 + 64
MAX_EXTRA_DATA = 66  # sizeof(TPMT_HA)


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """One TPMS_PCR_SELECTION: a bank and the PCR indices selected in it (ascending)."""

    hash_alg: int
    pcrs: tuple[int, ...]

    @property
    def bank(self) -> str:
        return c.bank_name(self.hash_alg)

    def marshal(self) -> bytes:
        size = max(3, (max(self.pcrs, default=0) // 8) + 1)
        bits = bytearray(size)
        for i in self.pcrs:
            bits[i // 8] |= 1 << (i % 8)
        return self.hash_alg.to_bytes(2, "big") + bytes([size]) + bytes(bits)


@dataclass(frozen=True, slots=True)
class ClockInfo:
    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True, slots=True)
class Attest:
    """A parsed TPMS_ATTEST. ``raw`` is exactly the signed bytes."""

    raw: bytes
    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    # TPMS_QUOTE_INFO (type QUOTE)
    pcr_select: tuple[PcrSelection, ...] = ()
    pcr_digest: bytes = b""
    # TPMS_CERTIFY_INFO (type CERTIFY)
    certified_name: bytes = b""
    certified_qualified_name: bytes = b""
    # the raw TPMU_ATTEST for every type
    attested: bytes = b""


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed TPMT_SIGNATURE: RSA schemes carry ``rsa``; ECC schemes carry ``r`` and ``s``."""

    sig_alg: int
    hash_alg: int
    rsa: bytes = b""
    r: int = 0
    s: int = 0


@dataclass(frozen=True)
class TpmPublic:
    """A parsed TPMT_PUBLIC (RSA or ECC) with its key as a ``cryptography`` public key."""

    raw: bytes  # the marshaled TPMT_PUBLIC (no size prefix): what the Name hashes
    type: int
    name_alg: int
    object_attributes: int
    auth_policy: bytes
    scheme: int  # ALG_NULL when the key has no fixed scheme
    scheme_hash: int
    key_bits: int
    curve: int
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)

    @property
    def name(self) -> bytes:
        """TPM Name = nameAlg || H_nameAlg(TPMT_PUBLIC)."""
        fn = c.HASH_FUNCS.get(self.name_alg)
        if fn is None:
            raise TpmFormatError(f"TPMT_PUBLIC: unsupported nameAlg 0x{self.name_alg:04x}")
        return self.name_alg.to_bytes(2, "big") + bytes(fn(self.raw).digest())

    def is_restricted_signing(self) -> bool:
        need = OA_RESTRICTED | OA_SIGN | OA_FIXED_TPM | OA_FIXED_PARENT | OA_SENSITIVE_DATA_ORIGIN
        return self.object_attributes & need == need and not self.object_attributes & OA_DECRYPT


OA_FIXED_TPM = 0x2
OA_ST_CLEAR = 0x4
OA_FIXED_PARENT = 0x10
OA_SENSITIVE_DATA_ORIGIN = 0x20
OA_USER_WITH_AUTH = 0x40
OA_ADMIN_WITH_POLICY = 0x80
OA_NO_DA = 0x400
OA_ENCRYPTED_DUPLICATION = 0x800
OA_RESTRICTED = 0x10000
OA_DECRYPT = 0x20000
OA_SIGN = 0x40000


def _hash_alg(r: Reader, allow_null: bool = False) -> int:
    alg = r.u16()
    if alg in c.HASH_SIZES or (allow_null and alg == c.ALG_NULL):
        return alg
    raise r.fail(f"unknown hash algorithm 0x{alg:04x}")


def _pcr_selection(r: Reader) -> tuple[PcrSelection, ...]:
    count = r.u32()
    if count > MAX_BANKS:
        raise r.fail(f"{count} PCR banks selected (max {MAX_BANKS})")
    out: list[PcrSelection] = []
    seen: set[int] = set()
    for _ in range(count):
        alg = _hash_alg(r)
        if alg in seen:
            raise r.fail(f"bank {c.bank_name(alg)} selected twice")
        seen.add(alg)
        size = r.u8()
        if size > MAX_SELECT_BYTES:
            raise r.fail(f"sizeofSelect {size} > {MAX_SELECT_BYTES}")
        bits = r.take(size)
        pcrs = tuple(i for i in range(size * 8) if bits[i // 8] >> (i % 8) & 1)
        out.append(PcrSelection(alg, pcrs))
    return tuple(out)


def parse_pcr_selection(data: bytes) -> tuple[PcrSelection, ...]:
    """Parse a marshaled TPML_PCR_SELECTION (whole buffer)."""
    r = Reader(data, "TPML_PCR_SELECTION")
    out = _pcr_selection(r)
    r.done()
    return out


def marshal_pcr_selection(selection: tuple[PcrSelection, ...] | list[PcrSelection]) -> bytes:
    return len(selection).to_bytes(4, "big") + b"".join(s.marshal() for s in selection)


def parse_attest(data: bytes) -> Attest:
    """Parse a TPMS_ATTEST. Magic and type are returned, not judged (``verify_quote`` does that)."""
    r = Reader(data, "TPMS_ATTEST")
    magic = r.u32()
    typ = r.u16()
    signer = r.tpm2b(MAX_NAME)
    extra = r.tpm2b(MAX_EXTRA_DATA)
    clock = ClockInfo(r.u64(), r.u32(), r.u32(), False)
    safe = r.u8()
    if safe > 1:
        raise r.fail(f"clockInfo.safe is {safe}, not a TPMI_YES_NO")
    clock = ClockInfo(clock.clock, clock.reset_count, clock.restart_count, bool(safe))
    fw = r.u64()
    start = r.pos
    fields: dict[str, object] = {}
    if typ == c.ST_ATTEST_QUOTE:
        fields["pcr_select"] = _pcr_selection(r)
        fields["pcr_digest"] = r.tpm2b(64)
    elif typ == c.ST_ATTEST_CERTIFY:
        fields["certified_name"] = r.tpm2b(MAX_NAME)
        fields["certified_qualified_name"] = r.tpm2b(MAX_NAME)
    else:
        r.take(r.remaining())
    r.done()
    return Attest(
        raw=r.buf,
        magic=magic,
        type=typ,
        qualified_signer=signer,
        extra_data=extra,
        clock_info=clock,
        firmware_version=fw,
        attested=r.buf[start:],
        **fields,  # type: ignore[arg-type]
    )


def parse_signature(data: bytes) -> Signature:
    """Parse a TPMT_SIGNATURE (RSASSA, RSAPSS, ECDSA and the other ECC schemes)."""
    r = Reader(data, "TPMT_SIGNATURE")
    alg = r.u16()
    if alg in (c.ALG_RSASSA, c.ALG_RSAPSS):
        sig = Signature(alg, _hash_alg(r), rsa=r.tpm2b(1024))
        if not sig.rsa:
            raise r.fail("empty RSA signature")
    elif alg in (c.ALG_ECDSA, c.ALG_SM2, c.ALG_ECSCHNORR, c.ALG_ECDAA):
        hash_alg = _hash_alg(r)
        if alg == c.ALG_ECDAA:
            raise r.fail("ECDAA signatures are not supported")
        r_bytes = r.tpm2b(66)
        s_bytes = r.tpm2b(66)
        sig = Signature(alg, hash_alg, r=int.from_bytes(r_bytes, "big"), s=int.from_bytes(s_bytes, "big"))
    elif alg == c.ALG_HMAC:
        hash_alg = _hash_alg(r)
        r.take(c.HASH_SIZES[hash_alg])
        sig = Signature(alg, hash_alg)
    elif alg == c.ALG_NULL:
        sig = Signature(alg, c.ALG_NULL)
    else:
        raise r.fail(f"unknown signature algorithm 0x{alg:04x}")
    r.done()
    return sig


_CURVES: dict[int, type[ec.EllipticCurve]] = {
    c.ECC_NIST_P256: ec.SECP256R1,
    c.ECC_NIST_P384: ec.SECP384R1,
    c.ECC_NIST_P521: ec.SECP521R1,
}


def _sym_def(r: Reader) -> None:
    alg = r.u16()
    if alg != c.ALG_NULL:
        r.u16()  # keyBits
        r.u16()  # mode


def _scheme(r: Reader) -> tuple[int, int]:
    scheme = r.u16()
    if scheme == c.ALG_NULL:
        return scheme, c.ALG_NULL
    return scheme, _hash_alg(r)


def _tpmt_public(r: Reader) -> TpmPublic:
    start = r.pos
    typ = r.u16()
    name_alg = _hash_alg(r, allow_null=True)
    attrs = r.u32()
    policy = r.tpm2b(64)
    curve = 0
    if typ == c.ALG_RSA:
        _sym_def(r)
        scheme, scheme_hash = _scheme(r)
        bits = r.u16()
        exponent = r.u32() or 65537
        modulus = r.tpm2b(1024)
        if bits not in (1024, 2048, 3072, 4096) or len(modulus) * 8 != bits:
            raise r.fail(f"RSA modulus of {len(modulus)} bytes for keyBits {bits}")
        if exponent < 3 or exponent % 2 == 0:
            raise r.fail(f"invalid RSA exponent {exponent}")
        try:
            key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(
                exponent, int.from_bytes(modulus, "big")
            ).public_key()
        except ValueError as exc:  # a zero or tiny modulus of the right size (n < 3, e >= n)
            raise r.fail(f"invalid RSA public key ({exc})") from None
    elif typ == c.ALG_ECC:
        _sym_def(r)
        scheme, scheme_hash = _scheme(r)
        curve = r.u16()
        kdf = r.u16()
        if kdf != c.ALG_NULL:
            _hash_alg(r)
        x = r.tpm2b(66)
        y = r.tpm2b(66)
        curve_cls = _CURVES.get(curve)
        if curve_cls is None:
            raise r.fail(f"unsupported ECC curve 0x{curve:04x}")
        bits = curve_cls().key_size
        try:
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_cls()
            ).public_key()
        except ValueError as exc:
            raise r.fail(f"ECC point is not on the curve ({exc})") from None
    else:
        raise r.fail(f"unsupported key type 0x{typ:04x} (need RSA or ECC)")
    return TpmPublic(
        raw=r.buf[start : r.pos],
        type=typ,
        name_alg=name_alg,
        object_attributes=attrs,
        auth_policy=policy,
        scheme=scheme,
        scheme_hash=scheme_hash,
        key_bits=bits,
        curve=curve,
        public_key=key,
    )


def parse_public(data: bytes) -> TpmPublic:
    """Parse a TPM2B_PUBLIC, or a bare TPMT_PUBLIC (both forms occur in tools' output)."""
    data = bytes(data)
    if len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2:
        r = Reader(data, "TPM2B_PUBLIC")
        inner = r.tpm2b()
        r.done()
        data = inner
    r = Reader(data, "TPMT_PUBLIC")
    pub = _tpmt_public(r)
    r.done()
    return pub


def key_sha256_b64(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """MAA's ``aikPubHash``: base64(SHA256(SubjectPublicKeyInfo DER))."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
