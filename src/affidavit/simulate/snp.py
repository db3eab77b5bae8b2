"""A simulated AMD SEV-SNP PKI and guest: ARK, ASK, ASVK, VCEKs and VLEKs with AMD's extensions, CRLs,
and signed ATTESTATION_REPORTs of every version (2, 3, 5) and both TCB layouts (Milan/Genoa, Turin).

Structure follows AMD's (sev-snp.md §3): RSASSA-PSS SHA-384 salt-48 CA signatures, ECDSA P-384 VEKs whose
SPL extensions and hwID match the report's REPORTED_TCB and CHIP_ID. The organisation name says it is
simulated and nothing chains to AMD's ARKs, so a verifier accepts it only with ``pki.trust()`` configured.
CA keys default to RSA-2048 (RSA-4096 like AMD's with ``rsa_bits=4096``) to keep tests fast; VEK serials are
positive (real VCEKs have serial 0, which `cryptography` can no longer build) so that CRLs can name them.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from affidavit.evidence.snp.certs import (
    OID_BL_SPL,
    OID_CSP_ID,
    OID_FMC_SPL,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
)
from affidavit.evidence.snp.report import GENOA, MILAN, REPORT_SIZE, SIGNED_SIZE, TURIN, TcbVersion
from affidavit.evidence.snp.trust import AmdTrust

ORGANIZATION = "Affidavit Simulated AMD PKI (not AMD)"
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
YEAR = dt.timedelta(days=365)
CPUID = {MILAN: (0x19, 0x01, 1), GENOA: (0x19, 0x11, 1), TURIN: (0x1A, 0x02, 1)}


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def der_integer(value: int) -> bytes:
    """A DER INTEGER (``02 02 00 d9`` for 217: values >= 128 take a leading zero byte)."""
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _ia5(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes([0x16, len(raw)]) + raw


def _ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


@dataclass(frozen=True)
class Tcb:
    """One TCB_VERSION's SPLs; ``encode(product)`` lays them out as that product's firmware does."""

    bootloader: int = 3
    tee: int = 0
    snp: int = 8
    microcode: int = 115
    fmc: int = 0

    def encode(self, product: str) -> bytes:
        spls = {"blSPL": self.bootloader, "teeSPL": self.tee, "snpSPL": self.snp, "ucodeSPL": self.microcode,
                "fmcSPL": self.fmc}
        return TcbVersion.from_spls(product, spls).raw


@dataclass(frozen=True)
class ReportFields:
    """What a simulated guest puts in its report; defaults resemble an Azure/ACI Milan guest."""

    version: int = 3
    guest_svn: int = 2
    policy: int = 0x3001F
    family_id: bytes = b"\x01" + bytes(15)
    image_id: bytes = b"\x02" + bytes(15)
    vmpl: int = 0
    current_tcb: Tcb = field(default_factory=Tcb)
    reported_tcb: Tcb = field(default_factory=Tcb)
    committed_tcb: Tcb = field(default_factory=Tcb)
    launch_tcb: Tcb = field(default_factory=Tcb)
    platform_info: int = 0x25
    author_key_en: bool = False
    report_data: bytes = bytes(64)
    measurement: bytes = bytes(range(48))
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = bytes(range(32))
    report_id_ma: bytes = b"\xff" * 32
    chip_id: bytes | None = None  # None: the chip's own
    version_numbers: tuple[int, int, int] = (1, 55, 61)  # major, minor, build
    launch_mit_vector: int = 0
    current_mit_vector: int = 0

    def with_tcb(self, tcb: Tcb) -> ReportFields:
        """All four TCBs set to ``tcb``."""
        return replace(self, current_tcb=tcb, reported_tcb=tcb, committed_tcb=tcb, launch_tcb=tcb)


def build_report(fields: ReportFields, product: str, chip_id: bytes, signing_key: int) -> bytearray:
    """The unsigned 1184-byte report (signature area zero)."""
    f = fields
    out = bytearray(REPORT_SIZE)

    def put(off: int, data: bytes) -> None:
        out[off : off + len(data)] = data

    put(0x000, f.version.to_bytes(4, "little"))
    put(0x004, f.guest_svn.to_bytes(4, "little"))
    put(0x008, f.policy.to_bytes(8, "little"))
    put(0x010, f.family_id)
    put(0x020, f.image_id)
    put(0x030, f.vmpl.to_bytes(4, "little"))
    put(0x034, (1).to_bytes(4, "little"))
    put(0x038, f.current_tcb.encode(product))
    put(0x040, f.platform_info.to_bytes(8, "little"))
    put(0x048, (int(f.author_key_en) | signing_key << 2).to_bytes(4, "little"))
    put(0x050, f.report_data)
    put(0x090, f.measurement)
    put(0x0C0, f.host_data)
    put(0x0E0, f.id_key_digest)
    put(0x110, f.author_key_digest)
    put(0x140, f.report_id)
    put(0x160, f.report_id_ma)
    put(0x180, f.reported_tcb.encode(product))
    if f.version >= 3:
        put(0x188, bytes(CPUID[product]))
    put(0x1A0, chip_id)
    put(0x1E0, f.committed_tcb.encode(product))
    major, minor, build = f.version_numbers
    put(0x1E8, bytes([build, minor, major, 0, build, minor, major, 0]))
    put(0x1F0, f.launch_tcb.encode(product))
    if f.version >= 5:
        put(0x1F8, f.launch_mit_vector.to_bytes(8, "little"))
        put(0x200, f.current_mit_vector.to_bytes(8, "little"))
    return out


def sign_report(unsigned: bytes | bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """ECDSA P-384/SHA-384 over 0x000..0x29F, r and s little-endian in 72-byte fields."""
    out = bytearray(unsigned)
    r, s = decode_dss_signature(key.sign(bytes(out[:SIGNED_SIZE]), ec.ECDSA(hashes.SHA384())))
    out[0x2A0:0x2E8] = r.to_bytes(72, "little")
    out[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(out)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class SimulatedVek:
    """A VCEK or VLEK and its private key, certified for one TCB (and, for a VCEK, one chip)."""

    kind: str  # VCEK | VLEK
    product: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chip_id: bytes  # all zero for a VLEK
    tcb: Tcb
    pki: SimulatedAmdPki

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return _pem(self.certificate)

    @property
    def chain_pem(self) -> bytes:
        """VEK, ASK/ASVK, ARK as MAA's ``VcekCertChain`` (THIM's vcekCert + certificateChain)."""
        return self.pem + (self.pki.cert_chain_vlek if self.kind == "VLEK" else self.pki.cert_chain_vcek)

    def report(self, fields: ReportFields | None = None, **changes: object) -> bytes:
        """A signed report; REPORTED_TCB defaults to this VEK's TCB (so they match) and CHIP_ID to the
        chip's, unless ``fields``/``changes`` say otherwise."""
        fields = fields or ReportFields().with_tcb(self.tcb)
        if changes:
            fields = replace(fields, **changes)  # type: ignore[arg-type]
        chip = self.chip_id if fields.chip_id is None else fields.chip_id
        unsigned = build_report(fields, self.product, chip, 1 if self.kind == "VLEK" else 0)
        return sign_report(unsigned, self.key)


@dataclass
class SimulatedAmdPki:
    """ARK, ASK and ASVK of one simulated product line."""

    product: str
    ark_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask: x509.Certificate
    asvk_key: rsa.RSAPrivateKey
    asvk: x509.Certificate
    not_before: dt.datetime

    @classmethod
    def create(
        cls, product: str = MILAN, *, rsa_bits: int = 2048, now: dt.datetime | None = None
    ) -> SimulatedAmdPki:
        now = now or dt.datetime.now(dt.UTC)
        start = now - YEAR
        keys = [rsa.generate_private_key(65537, rsa_bits) for _ in range(3)]
        root = f"ARK-{product}"
        ark = cls._ca(root, keys[0], root, keys[0], start, pathlen=None, serial=0x10000)
        ask = cls._ca(f"SEV-{product}", keys[1], root, keys[0], start, pathlen=0, serial=0x10001)
        asvk = cls._ca(f"SEV-VLEK-{product}", keys[2], root, keys[0], start, pathlen=0, serial=0x10101)
        return cls(product, keys[0], ark, keys[1], ask, keys[2], asvk, start)

    @staticmethod
    def _ca(
        cn: str, key: rsa.RSAPrivateKey, issuer_cn: str, issuer_key: rsa.RSAPrivateKey,
        start: dt.datetime, *, pathlen: int | None, serial: int,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(issuer_cn))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + 25 * YEAR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=pathlen), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=pathlen is None, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        )
        return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=PSS)

    # -- what a verifier needs ---------------------------------------------------------------------

    def trust(self) -> AmdTrust:
        """Pins this PKI's ARK (and knows its ASK/ASVK)."""
        return AmdTrust.from_pem(self.ark_pem + _pem(self.ask, self.asvk))

    @property
    def ark_pem(self) -> bytes:
        return _pem(self.ark)

    @property
    def cert_chain_vcek(self) -> bytes:
        """KDS ``/vcek/v1/{product}/cert_chain``: ASK then ARK."""
        return _pem(self.ask, self.ark)

    @property
    def cert_chain_vlek(self) -> bytes:
        """KDS ``/vlek/v1/{product}/cert_chain``: ASVK then ARK."""
        return _pem(self.asvk, self.ark)

    # -- endorsement keys --------------------------------------------------------------------------

    def chip_id(self, label: str = "chip") -> bytes:
        """A chip id as the product reports it (Turin: 8 bytes, then zeros)."""
        raw = os.urandom(64)
        return raw[:8] + bytes(56) if self.product == TURIN else raw

    def vcek(
        self,
        chip_id: bytes | None = None,
        tcb: Tcb | None = None,
        *,
        now: dt.datetime | None = None,
        lifetime: dt.timedelta = 7 * YEAR,
        product_name: str | None = None,
        hw_id: bytes | None = None,
    ) -> SimulatedVek:
        """A VCEK for ``chip_id`` at ``tcb``; ``hw_id`` overrides the hwID extension (a wrong chip)."""
        chip = chip_id if chip_id is not None else self.chip_id()
        tcb = tcb or Tcb()
        if hw_id is None:
            hw_id = chip[:8] if self.product == TURIN else chip
        default_name = {MILAN: "Milan-B0", GENOA: "Genoa", TURIN: "Turin"}.get(self.product, self.product)
        exts = self._vek_extensions(tcb, product_name or default_name) + [_ext(OID_HWID, hw_id)]
        return self._vek("VCEK", self.ask_key, f"SEV-{self.product}", chip, tcb, exts, now, lifetime)

    def vlek(
        self,
        tcb: Tcb | None = None,
        *,
        csp_id: str = "CN=simulated-csp.invalid",
        now: dt.datetime | None = None,
        lifetime: dt.timedelta = YEAR,
    ) -> SimulatedVek:
        tcb = tcb or Tcb()
        exts = self._vek_extensions(tcb, self.product) + [_ext(OID_CSP_ID, _ia5(csp_id))]
        issuer = f"SEV-VLEK-{self.product}"
        return self._vek("VLEK", self.asvk_key, issuer, bytes(64), tcb, exts, now, lifetime)

    def _vek_extensions(self, tcb: Tcb, product_name: str) -> list[x509.UnrecognizedExtension]:
        exts = [
            _ext(OID_STRUCT_VERSION, der_integer(1 if self.product == TURIN else 0)),
            _ext(OID_PRODUCT_NAME, _ia5(product_name)),
            _ext(OID_BL_SPL, der_integer(tcb.bootloader)),
            _ext(OID_TEE_SPL, der_integer(tcb.tee)),
            _ext(OID_SNP_SPL, der_integer(tcb.snp)),
            _ext(OID_UCODE_SPL, der_integer(tcb.microcode)),
        ]
        if self.product == TURIN:
            exts.append(_ext(OID_FMC_SPL, der_integer(tcb.fmc)))
        return exts

    def _vek(
        self, kind: str, issuer_key: rsa.RSAPrivateKey, issuer_cn: str, chip: bytes, tcb: Tcb,
        exts: list[x509.UnrecognizedExtension], now: dt.datetime | None, lifetime: dt.timedelta,
    ) -> SimulatedVek:
        key = ec.generate_private_key(ec.SECP384R1())
        start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"SEV-{kind}")]))
            .issuer_name(_name(issuer_cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
        )
        for ext in exts:
            builder = builder.add_extension(ext, critical=False)
        cert = builder.sign(issuer_key, hashes.SHA384(), rsa_padding=PSS)
        return SimulatedVek(kind, self.product, key, cert, chip, tcb, self)

    # -- revocation --------------------------------------------------------------------------------

    def crl(
        self,
        revoked: list[int] | tuple[int, ...] = (),
        *,
        issuer: str = "ark",
        now: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(days=7),
    ) -> bytes:
        """A DER CRL signed by the ARK (AMD's, revoking ASK/ASVK serials) or by ``"ask"``/``"asvk"``
        (revoking VEK serials)."""
        cert, key = {"ark": (self.ark, self.ark_key), "ask": (self.ask, self.ask_key),
                     "asvk": (self.asvk, self.asvk_key)}[issuer]
        start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=1)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(start)
            .next_update(start + lifetime)
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start).build()
            )
        crl = builder.sign(key, hashes.SHA384(), rsa_padding=PSS)
        return crl.public_bytes(serialization.Encoding.DER)
