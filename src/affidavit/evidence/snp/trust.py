"""Pinned AMD roots: the ARK of each product line, and the ASK/ASVK certificates AMD KDS publishes.

The package ships AMD's public certificates for Milan, Genoa and Turin (``amd/<product>_cert_chain_vcek.pem``
= ASK then ARK, ``..._vlek.pem`` = ASVK then ARK, byte-identical to KDS ``/vcek|vlek/v1/<product>/cert_chain``
as vendored by virtee/sev and google/go-sev-guest). Trust rests on the ARK's public key (SPKI): an ARK
arriving with the evidence is accepted only when its key equals a pinned one, and the shipped ASK/ASVK
are verified against the ARK like any other (they only save clients from sending them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.evidence.snp.certs import (
    CertFacts,
    CertInput,
    cert_facts,
    cn,
    is_rsa,
    load_certificates,
    product_of_name,
    spki,
)
from affidavit.evidence.snp.errors import TRUST_INVALID, SnpError
from affidavit.evidence.snp.report import PRODUCTS


@dataclass(frozen=True)
class AmdTrust:
    """Pinned ARKs (product -> certificate, compared by SPKI) and known intermediates (ASK/ASVK)."""

    arks: dict[str, x509.Certificate]
    intermediates: tuple[x509.Certificate, ...] = ()

    @cached_property
    def known(self) -> dict[bytes, x509.Certificate]:
        """DER -> certificate for every certificate of this trust (loaded and checked once), so a chain
        that repeats them (every VcekCertChain does) is not parsed again."""
        import base64

        out: dict[bytes, x509.Certificate] = {}
        for c in (*self.arks.values(), *self.intermediates):
            der = c.public_bytes(Encoding.DER)
            out[der] = c
            b64 = base64.b64encode(der)
            out[b64] = c  # a PEM body, whitespace removed (never a DER certificate)
            lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
            for nl in (b"\n", b"\r\n"):  # the PEM text between BEGIN and END as tools write it
                out[nl + nl.join(lines) + nl] = c
        return out

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> tuple[tuple[str, bytes], ...]:
        """A stable identity for caches: the pinned products and keys."""
        return tuple(sorted((p, spki(c)) for p, c in self.arks.items()))

    @cached_property
    def names(self) -> dict[int, CertFacts]:
        """id -> `CertFacts` (CN, names, signed bytes) of this trust's certificates, read once (they live
        as long as the trust does, so their ids stay theirs)."""
        return {id(c): cert_facts(c) for c in set(self.known.values())}

    @cached_property
    def _cas(self) -> frozenset[int]:
        return frozenset(id(c) for c in set(self.known.values()) if _basic_ca(c))

    @cached_property
    def _windows(self) -> dict[tuple[str, int], Any]:
        from affidavit.evidence.snp.authenticate import Window

        return {
            (role, id(c)): Window(role, self.names[id(c)].cn, c.not_valid_before_utc, c.not_valid_after_utc)
            for c in set(self.known.values())
            for role in ("intermediate", "ark")
        }

    def window(self, role: str, name: str, cert: x509.Certificate) -> Any:
        """The ``authenticate.Window`` of ``cert`` in ``role``: made once for this trust's own
        certificates (they live as long as the trust), afresh for any other."""
        found = self._windows.get((role, id(cert))) if id(cert) in self.names else None
        if found is None:
            from affidavit.evidence.snp.authenticate import Window

            found = Window(role, name, cert.not_valid_before_utc, cert.not_valid_after_utc)
        return found

    def is_ca(self, cert: x509.Certificate) -> bool:
        """BasicConstraints CA (precomputed for this trust's own certificates)."""
        return id(cert) in self._cas if id(cert) in self.names else _basic_ca(cert)

    @classmethod
    def amd(cls) -> AmdTrust:
        """AMD's ARKs (and ASK/ASVKs) for Milan, Genoa and Turin, shipped in this package."""
        root = resources.files("affidavit.evidence.snp").joinpath("amd")
        data = b"".join(
            root.joinpath(f"{p.lower()}_cert_chain_{kind}.pem").read_bytes()
            for p in PRODUCTS
            for kind in ("vcek", "vlek")
        )
        return cls.from_pem(data)

    @classmethod
    def from_pem(cls, data: CertInput | Iterable[CertInput]) -> AmdTrust:
        """Trust from certificates: every self-signed ``ARK-<product>`` becomes a pinned root; ASK/ASVK
        certificates (``SEV-<product>``, ``SEV-VLEK-<product>``) are kept as known intermediates."""
        try:
            certs = load_certificates(data)
        except SnpError as exc:
            raise SnpError(f"AMD trust roots: {exc.message}", code=TRUST_INVALID) from None
        arks: dict[str, x509.Certificate] = {}
        inters: list[x509.Certificate] = []
        for cert in certs:
            name = cn(cert)
            product = product_of_name(name)
            if product is None or not is_rsa(cert):
                raise SnpError(f"AMD trust roots: unexpected certificate {name!r}", code=TRUST_INVALID)
            if name.startswith("ARK-"):
                from affidavit.evidence.snp.authenticate import pss_signed_by

                if cert.subject != cert.issuer or not pss_signed_by(cert, cert):
                    raise SnpError(f"AMD trust roots: {name} is not self-signed (RSA-PSS SHA-384)",
                                   code=TRUST_INVALID)
                if product in arks and spki(arks[product]) != spki(cert):
                    raise SnpError(f"AMD trust roots: two different ARKs for {product}", code=TRUST_INVALID)
                arks[product] = cert
            else:
                inters.append(cert)
        if not arks:
            raise SnpError("AMD trust roots: no ARK certificate given", code=TRUST_INVALID)
        seen: set[bytes] = set()
        unique = []
        for c in inters:
            key = c.fingerprint(hashes.SHA256())
            if key not in seen:
                seen.add(key)
                unique.append(c)
        return cls(arks, tuple(unique))

    def merged(self, other: AmdTrust) -> AmdTrust:
        return AmdTrust({**self.arks, **other.arks}, self.intermediates + other.intermediates)

    def ark_for(self, product: str) -> x509.Certificate | None:
        return self.arks.get(product)


def _basic_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except Exception:  # noqa: BLE001 - ExtensionNotFound, a malformed or duplicated extension: not a CA
        return False
    return bool(bc.ca)
