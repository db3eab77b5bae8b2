"""ACI / AKS UVM endorsements (``Endorsements.Uvm[0]`` of MAA's SevSnpVm report JSON, sev-snp.md §5.4).

The endorsement is a COSE_Sign1 (CBOR tag 18) by Microsoft's ContainerPlat signing chain whose JSON
payload names the UVM's launch measurement and SVN. What this module does: decode the structure with a
small bounded CBOR reader and read the payload, the feed and the issuer, so the caller can compare
``launchmeasurement`` with the report's MEASUREMENT. What it does NOT do (yet): verify the COSE signature,
resolve the ``did:x509`` issuer against the ``x5chain`` or check the RFC 3161 timestamp. Hence its
results are exposed as Affidavit claims saying "matches, unverified signature", never as MAA's
``x-ms-compliance-status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from affidavit import strict_json
from affidavit.evidence.snp.errors import ENDORSEMENT_MALFORMED, SnpError

MAX_ENDORSEMENT_BYTES = 64 * 1024
_MAX_ITEMS = 256
_MAX_DEPTH = 8


class _Cbor:
    """Definite-length CBOR only (COSE uses nothing else); bounded in depth and item count."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.items = 0

    def _fail(self, message: str) -> SnpError:
        return SnpError(f"UVM endorsement CBOR: {message}", code=ENDORSEMENT_MALFORMED)

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _arg(self, info: int) -> int:
        if info < 24:
            return info
        if info in (24, 25, 26, 27):
            return int.from_bytes(self._take(1 << (info - 24)), "big")
        raise self._fail("indefinite or reserved length")

    def read(self, depth: int = 0) -> Any:
        self.items += 1
        if depth > _MAX_DEPTH or self.items > _MAX_ITEMS:
            raise self._fail("too deep or too many items")
        head = self._take(1)[0]
        major, info = head >> 5, head & 0x1F
        if major == 7:
            if info in (20, 21):
                return info == 21
            if info in (22, 23):
                return None
            raise self._fail("floats and simple values are not used here")
        value = self._arg(info)
        if major == 0:
            return value
        if major == 1:
            return -1 - value
        if major == 2:
            return self._take(value)
        if major == 3:
            try:
                return self._take(value).decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail("text is not UTF-8") from None
        if major == 4:
            return [self.read(depth + 1) for _ in range(value)]
        if major == 5:
            out = {}
            for _ in range(value):
                key = self.read(depth + 1)
                if isinstance(key, list | dict | tuple):  # a tag may wrap a container: unhashable
                    raise self._fail("map key is not a scalar")
                out[key if not isinstance(key, bytes) else key.hex()] = self.read(depth + 1)
            return out
        return ("tag", value, self.read(depth + 1))  # major 6


def decode_cbor(data: bytes) -> Any:
    reader = _Cbor(data)
    value = reader.read()
    if reader.pos != len(data):
        raise reader._fail("data after the item")
    return value


@dataclass(frozen=True)
class UvmEndorsement:
    """What a UVM endorsement claims (its signature unverified)."""

    launch_measurement: str  # lower-case hex
    guest_svn: str  # a string in the payload, by design (CCF #5620)
    issuer: str | None
    feed: str | None
    payload: dict[str, Any]


def parse_uvm_endorsement(data: bytes) -> UvmEndorsement:
    if len(data) > MAX_ENDORSEMENT_BYTES:
        raise SnpError(
            f"UVM endorsement larger than {MAX_ENDORSEMENT_BYTES} bytes", code=ENDORSEMENT_MALFORMED
        )
    value = decode_cbor(data)
    if isinstance(value, tuple) and value[:2] == ("tag", 18):
        value = value[2]
    if not (isinstance(value, list) and len(value) == 4 and isinstance(value[0], bytes)
            and isinstance(value[2], bytes)):
        raise SnpError("UVM endorsement is not a COSE_Sign1", code=ENDORSEMENT_MALFORMED)
    protected = decode_cbor(value[0]) if value[0] else {}
    if not isinstance(protected, dict):
        raise SnpError("UVM endorsement protected header is not a map", code=ENDORSEMENT_MALFORMED)
    try:
        payload = strict_json.loads(value[2].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SnpError("UVM endorsement payload is not JSON", code=ENDORSEMENT_MALFORMED) from None
    if not isinstance(payload, dict):
        raise SnpError("UVM endorsement payload is not a JSON object", code=ENDORSEMENT_MALFORMED)
    measurement = payload.get("x-ms-sevsnpvm-launchmeasurement")
    svn = payload.get("x-ms-sevsnpvm-guestsvn")
    if not isinstance(measurement, str) or not isinstance(svn, str | int):
        raise SnpError("UVM endorsement payload lacks launchmeasurement/guestsvn", code=ENDORSEMENT_MALFORMED)
    issuer, feed = protected.get("iss"), protected.get("feed")
    return UvmEndorsement(
        launch_measurement=measurement.lower(),
        guest_svn=str(svn),
        issuer=issuer if isinstance(issuer, str) else None,
        feed=feed if isinstance(feed, str) else None,
        payload=payload,
    )
