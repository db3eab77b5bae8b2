"""Where SGX and TDX quotes come from on the attesting machine.

Every source answers one question: "give me a quote whose report data is these 64 bytes". The service then
checks that the first 32 bytes are SHA-256 of the runtime data sent beside the quote, which binds that data
(typically a public key) to the enclave or TD.

- :class:`GramineSource`: Gramine's pseudo-files under ``/dev/attestation`` inside an SGX enclave: write
  ``user_report_data`` (64 bytes), read ``quote``.
- :class:`ConfigfsTsmSource`: the Linux configfs-tsm interface used by TDX and SEV-SNP guests
  (``/sys/kernel/config/tsm/report``): create an entry, write ``inblob``, read ``outblob``, and check that
  ``generation`` did not move under us (another writer on the same entry would mean a quote for other data).
- :class:`FileSource`: a quote captured earlier; its report data is whatever it was, so it only fits when the
  runtime data is the same as at capture time.
- :class:`SimulatedSource`: the simulated enclave of :mod:`affidavit.simulate`, for development and demos.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from affidavit.client import ClientError

if TYPE_CHECKING:
    from affidavit.simulate import SimulatedEnclave, SimulatedTd

REPORT_DATA_SIZE = 64


def report_data_for(runtime_data: bytes | None) -> bytes:
    """Report data binding ``runtime_data`` the way MAA checks it: SHA-256 then 32 zero bytes."""
    if runtime_data is None:
        return bytes(REPORT_DATA_SIZE)
    return hashlib.sha256(runtime_data).digest() + bytes(32)


def _check_report_data(report_data: bytes) -> None:
    if len(report_data) != REPORT_DATA_SIZE:
        raise ClientError(
            f"report data must be {REPORT_DATA_SIZE} bytes, got {len(report_data)}", code="bad_report_data"
        )


class QuoteSource(Protocol):
    def get_quote(self, report_data: bytes) -> bytes: ...


@dataclass(frozen=True)
class FileSource:
    path: Path

    def get_quote(self, report_data: bytes) -> bytes:
        _check_report_data(report_data)
        try:
            return Path(self.path).read_bytes()
        except OSError as exc:
            raise ClientError(
                f"cannot read quote file {self.path}: {exc.strerror}", code="source_failed"
            ) from None


@dataclass(frozen=True)
class GramineSource:
    root: Path = Path("/dev/attestation")

    def get_quote(self, report_data: bytes) -> bytes:
        _check_report_data(report_data)
        root = Path(self.root)
        kind_file = root / "attestation_type"
        if kind_file.exists():
            kind = kind_file.read_text().strip()
            if kind != "dcap":
                raise ClientError(
                    f"Gramine attestation type is {kind!r}; DCAP quotes need 'dcap'",
                    code="source_unsupported",
                )
        try:
            (root / "user_report_data").write_bytes(report_data)
            quote = (root / "quote").read_bytes()
        except OSError as exc:
            raise ClientError(
                f"Gramine attestation interface at {root}: {exc.strerror or exc}", code="source_failed"
            ) from None
        if not quote:
            raise ClientError("Gramine returned an empty quote", code="source_failed")
        return quote


@dataclass(frozen=True)
class ConfigfsTsmSource:
    root: Path = Path("/sys/kernel/config/tsm/report")

    def get_quote(self, report_data: bytes) -> bytes:
        return self.read(report_data)["outblob"]

    def read(
        self, report_data: bytes, *, extra: tuple[str, ...] = (), privlevel: int | None = None
    ) -> dict[str, bytes]:
        """One report: ``outblob`` and the ``extra`` attributes (SEV-SNP: ``auxblob``, the certificate
        table), optionally at ``privlevel`` (the SNP VMPL to request the report from)."""
        _check_report_data(report_data)
        entry = Path(self.root) / f"affidavit-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            entry.mkdir()
        except OSError as exc:
            raise ClientError(
                f"cannot create a configfs-tsm report at {entry}: {exc.strerror or exc}", code="source_failed"
            ) from None
        try:
            if privlevel is not None:
                (entry / "privlevel").write_text(str(privlevel))
            (entry / "inblob").write_bytes(report_data)
            before = _read_generation(entry)
            quote = (entry / "outblob").read_bytes()
            blobs = {"outblob": quote}
            for name in extra:
                path = entry / name
                blobs[name] = path.read_bytes() if path.exists() else b""
            after = _read_generation(entry)
            if before != after:
                raise ClientError(
                    "configfs-tsm report was rewritten while reading it (generation changed)",
                    code="source_race",
                )
            if not quote:
                raise ClientError("configfs-tsm returned an empty outblob", code="source_failed")
            return blobs
        except OSError as exc:
            raise ClientError(
                f"configfs-tsm report at {entry}: {exc.strerror or exc}", code="source_failed"
            ) from None
        finally:
            try:
                entry.rmdir()  # configfs removes the attribute files with the directory
            except OSError:
                pass

    def provider(self) -> str | None:
        """The TEE behind the interface (``tdx_guest``, ``sev_guest``), read from a fresh entry."""
        entry = Path(self.root) / f"affidavit-probe-{os.getpid()}"
        try:
            entry.mkdir(exist_ok=True)
            return (entry / "provider").read_text().strip() or None
        except OSError:
            return None
        finally:
            try:
                entry.rmdir()
            except OSError:
                pass


def _read_generation(entry: Path) -> str | None:
    path = entry / "generation"
    return path.read_text().strip() if path.exists() else None


class SimulatedSource:
    """A simulated SGX enclave or TD (``affidavit.simulate``): real quotes, signed by a simulated Intel PKI.

    For development and demos without hardware. Its quotes verify only where ``root_pem`` is configured as
    a trust anchor (``affidavit serve --trust-root``) and ``collateral()`` is served (``--collateral-dir``).
    """

    def __init__(self, enclave: SimulatedEnclave | SimulatedTd) -> None:
        self.enclave = enclave

    @classmethod
    def sgx(cls, **options: Any) -> SimulatedSource:
        """An enclave on a new simulated platform; options as ``SimulatedEnclave.create`` takes them."""
        from affidavit.simulate import SimulatedEnclave

        return cls(SimulatedEnclave.create(**options))

    @classmethod
    def tdx(cls, **options: Any) -> SimulatedSource:
        """A TD on a new simulated platform; options as ``SimulatedTd.create`` takes them."""
        from affidavit.simulate import SimulatedTd

        return cls(SimulatedTd.create(**options))

    @property
    def tee(self) -> str:
        return str(self.enclave.platform.tee)

    @property
    def root_pem(self) -> bytes:
        """The simulated Intel root certificate: the trust anchor a verifier needs for these quotes."""
        return bytes(self.enclave.platform.root_pem)

    def collateral(self, **options: Any) -> dict[str, Any]:
        """Collateral for this platform in the offline JSON form (a file for ``--collateral-dir``)."""
        return self.enclave.collateral(**options)

    def get_quote(self, report_data: bytes) -> bytes:
        _check_report_data(report_data)
        return bytes(self.enclave.quote(report_data))
