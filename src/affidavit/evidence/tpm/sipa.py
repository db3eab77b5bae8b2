"""Windows SIPA event payloads (EV_EVENT_TAG in PCRs 12-14, ``wbcl.h``): nested little-endian TLVs
``{u32 type, u32 size, data}``; types with the container bit hold further TLVs. Decoded into MAA's
JSON names (``EVENT_TRUSTBOUNDARY``, ``EVENT_BOOTDEBUGGING``, ...).

Bounded: containers nest at most ``MAX_DEPTH`` deep, and ``MAX_ENTRIES`` TLVs, nested ones included, is
the most one payload (``decode``) and all the payloads of one log (``check_entries``) may hold. The
largest real ones in the test vectors, a Windows physical machine's, have 1,253 in one payload and 1,797
in the log; a 1 MiB log of 8-byte TLVs would hold 131,000, each decoded twice per request (1.2 s of CPU).
Over the count is refused (``EventLogError``) rather than read as "not SIPA", so it cannot hide the tags
it carries.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from affidavit.evidence.tpm.errors import EventLogError
from affidavit.jose import b64url

CONTAINER = 0x00010000
_BOOL, _INT, _STR, _BYTES, _ENUM = "bool", "int", "str", "bytes", "enum"

# type -> (MAA name, kind[, enum names])
TYPES: dict[int, tuple[str, str]] = {
    0x40010001: ("EVENT_TRUSTBOUNDARY", "container"),
    0x40010002: ("EVENT_ELAM_AGGREGATION", "container"),
    0x40010003: ("EVENT_LOADEDMODULE_AGGREGATION", "container"),
    0xC0010004: ("EVENT_TRUSTPOINT_AGGREGATION", "container"),
    0x40010005: ("EVENT_KSR_AGGREGATION", "container"),
    0x40010006: ("EVENT_KSR_SIGNED_MEASUREMENT_AGGREGATION", "container"),
    0x00020001: ("EVENT_INFORMATION", _BYTES),
    0x00020002: ("EVENT_BOOTCOUNTER", _INT),
    0x00020003: ("EVENT_TRANSFER_CONTROL", _ENUM),
    0x00020004: ("EVENT_APPLICATION_RETURN", _INT),
    0x00020005: ("EVENT_BITLOCKER_UNLOCK", _ENUM),
    0x00020006: ("EVENT_EVENTCOUNTER", _INT),
    0x00020007: ("EVENT_COUNTERID", _INT),
    0x00020008: ("EVENT_MORBIT_NOT_CANCELABLE", _BOOL),
    0x00020009: ("EVENT_APPLICATION_SVN", _INT),
    0x0002000A: ("EVENT_SVN_CHAIN_STATUS", _INT),
    0x0002000B: ("EVENT_MORBIT_API_STATUS", _INT),
    0x00040001: ("EVENT_BOOTDEBUGGING", _BOOL),
    0x00040002: ("EVENT_BOOT_REVOCATION_LIST", "revlist"),
    0x00050001: ("EVENT_OSKERNELDEBUG", _BOOL),
    0x00050002: ("EVENT_CODEINTEGRITY", _BOOL),
    0x00050003: ("EVENT_TESTSIGNING", _BOOL),
    0x00050004: ("EVENT_DATAEXECUTIONPREVENTION", _ENUM),
    0x00050005: ("EVENT_SAFEMODE", _BOOL),
    0x00050006: ("EVENT_WINPE", _BOOL),
    0x00050007: ("EVENT_PHYSICALADDRESSEXTENSION", _INT),
    0x00050008: ("EVENT_OSDEVICE", _ENUM),
    0x00050009: ("EVENT_SYSTEMROOT", _STR),
    0x0005000A: ("EVENT_HYPERVISOR_LAUNCH_TYPE", _ENUM),
    0x0005000B: ("EVENT_HYPERVISOR_PATH", _STR),
    0x0005000C: ("EVENT_HYPERVISOR_IOMMU_POLICY", _ENUM),
    0x0005000D: ("EVENT_HYPERVISOR_DEBUG", _BOOL),
    0x0005000E: ("EVENT_DRIVER_LOAD_POLICY", _ENUM),
    0x0005000F: ("EVENT_SI_POLICY", "sipolicy"),
    0x00050010: ("EVENT_HYPERVISOR_MMIO_NX_POLICY", _INT),
    0x00050011: ("EVENT_HYPERVISOR_MSR_FILTER_POLICY", _INT),
    0x00050012: ("EVENT_VSM_LAUNCH_TYPE", _ENUM),
    0x00050013: ("EVENT_OS_REVOCATION_LIST", "revlist"),
    0x00050014: ("EVENT_SMT_STATUS", _INT),
    0x00050020: ("EVENT_VSM_IDK_INFO", "idk"),
    0x00050021: ("EVENT_FLIGHTSIGNING", _BOOL),
    0x00050022: ("EVENT_PAGEFILE_ENCRYPTION_ENABLED", _BOOL),
    0x00050023: ("EVENT_VSM_IDKS_INFO", "idk"),
    0x00050024: ("EVENT_HIBERNATION_DISABLED", _BOOL),
    0x00050025: ("EVENT_DUMPS_DISABLED", _BOOL),
    0x00050026: ("EVENT_DUMP_ENCRYPTION_ENABLED", _BOOL),
    0x00050027: ("EVENT_DUMP_ENCRYPTION_KEY_DIGEST", _BYTES),
    0x00050028: ("EVENT_LSAISO_CONFIG", _INT),
    0x00050029: ("EVENT_SBCP_INFO", "sbcp"),
    0x00050031: ("EVENT_SI_POLICY_SIGNER", "signer"),
    0x00050032: ("EVENT_SI_POLICY_UPDATE_SIGNER", "signer"),
    0x00050030: ("EVENT_HYPERVISOR_BOOT_DMA_PROTECTION", _INT),
    0x00060001: ("EVENT_NOAUTHORITY", _BYTES),
    0x00060002: ("EVENT_AUTHORITYPUBKEY", _BYTES),
    0x00070001: ("EVENT_FILEPATH", _STR),
    0x00070002: ("EVENT_IMAGESIZE", _INT),
    0x00070003: ("EVENT_HASHALGORITHMID", _ENUM),
    0x00070004: ("EVENT_AUTHENTICODEHASH", _BYTES),
    0x00070005: ("EVENT_AUTHORITYISSUER", _STR),
    0x00070006: ("EVENT_AUTHORITYSERIAL", _BYTES),
    0x00070007: ("EVENT_IMAGEBASE", _INT),
    0x00070008: ("EVENT_AUTHORITYPUBLISHER", _STR),
    0x00070009: ("EVENT_AUTHORITYSHA1THUMBPRINT", _BYTES),
    0x0007000A: ("EVENT_IMAGEVALIDATED", _BOOL),
    0x0007000B: ("EVENT_MODULE_SVN", _INT),
    0x80080001: ("EVENT_QUOTE", _BYTES),
    0x80080002: ("EVENT_QUOTESIGNATURE", _BYTES),
    0x80080003: ("EVENT_AIKID", _BYTES),
    0x80080004: ("EVENT_AIKPUBDIGEST", _BYTES),
    0x00090001: ("EVENT_ELAM_KEYNAME", _STR),
    0x00090002: ("EVENT_ELAM_CONFIGURATION", _BYTES),
    0x00090003: ("EVENT_ELAM_POLICY", _BYTES),
    0x00090004: ("EVENT_ELAM_MEASURED", _BYTES),
    0x000A0001: ("EVENT_VBS_VSM_REQUIRED", _BOOL),
    0x000A0002: ("EVENT_VBS_SECUREBOOT_REQUIRED", _BOOL),
    0x000A0003: ("EVENT_VBS_IOMMU_REQUIRED", _BOOL),
    0x000A0004: ("EVENT_VBS_MMIO_NX_REQUIRED", _BOOL),
    0x000A0005: ("EVENT_VBS_MSR_FILTERING_REQUIRED", _BOOL),
    0x000A0006: ("EVENT_VBS_MANDATORY_ENFORCEMENT", _BOOL),
    0x000A0007: ("EVENT_VBS_HVCI_POLICY", _ENUM),
    0x000A0008: ("EVENT_VBS_MICROSOFT_BOOT_CHAIN_REQUIRED", _ENUM),
    0x000A0009: ("EVENT_VBS_DUMP_USES_AMEROOT", _BOOL),
    0x000A000A: ("EVENT_VBS_VSM_NOSECRETS_ENFORCED", _BOOL),
    0x000B0001: ("EVENT_KSR_SIGNATURE", _BYTES),
    0x000C0001: ("EVENT_DRTM_STATE_AUTH", _BYTES),
    0x000C0002: ("EVENT_DRTM_SMM_LEVEL", _INT),
    0x000C0003: ("EVENT_DRTM_AMD_SMM_HASH", _BYTES),
    0x000C0004: ("EVENT_DRTM_AMD_SMM_SIGNER_KEY", _BYTES),
}
# Names MAA always renders as lists, even with one element.
LIST_NAMES = frozenset(
    {
        "EVENT_LOADEDMODULE_AGGREGATION",
        "EVENT_AUTHORITYPUBKEY",
        "EVENT_SI_POLICY_SIGNER",
        "EVENT_SI_POLICY_UPDATE_SIGNER",
    }
)
ENUMS: dict[str, dict[int, str]] = {
    "EVENT_TRANSFER_CONTROL": {
        0: "SiBootAppNone",
        1: "SiBootAppOsLoader",
        2: "SiBootAppResume",
        3: "SiBootAppMemoryDiagnostic",
        4: "SiBootAppSetup",
        5: "SiBootHypervisor",
        0xFFFFFFFF: "SiBootAppReserved",
    },
    "EVENT_BITLOCKER_UNLOCK": {
        0: "NONE",
        1: "CACHED",
        2: "MEDIA",
        4: "TPM",
        0x40: "PIN",
        0x80: "EXTERNAL",
        0x100: "RECOVERY",
        0x200: "PASSPHRASE",
        0x400: "NBP",
    },
    "EVENT_DATAEXECUTIONPREVENTION": {
        0: "NxPolicyOptIn",
        1: "NxPolicyOptOut",
        2: "NxPolicyAlwaysOff",
        3: "NxPolicyAlwaysOn",
    },
    "EVENT_HYPERVISOR_LAUNCH_TYPE": {0: "HypervisorLaunchOff", 1: "HypervisorLaunchAuto"},
    "EVENT_HYPERVISOR_IOMMU_POLICY": {
        0: "BtIommuPolicyDefault",
        1: "BtIommuPolicyEnable",
        2: "BtIommuPolicyDisable",
    },
    "EVENT_DRIVER_LOAD_POLICY": {0: "GoodOnly", 1: "GoodPlusUnknown", 2: "AllDrivers"},
    "EVENT_HASHALGORITHMID": {
        0x8004: "CALG_SHA1",
        0x800C: "CALG_SHA_256",
        0x800D: "CALG_SHA_384",
        0x800E: "CALG_SHA_512",
    },
}
ENUMS.update(
    {
        "EVENT_VSM_LAUNCH_TYPE": {0: "VsmLaunchOff", 1: "VsmLaunchAuto"},
        "EVENT_VBS_HVCI_POLICY": {1: "HypervisorEnforcedCodeIntegrityEnable"},
        "EVENT_VBS_MICROSOFT_BOOT_CHAIN_REQUIRED": {1: "VbsBootChainSignerEnforceSoft"},
        "EVENT_OSDEVICE": {0x00010004: "OSDEVICE_TYPE_BLOCKIO_PARTITION"},
    }
)
# Types MAA's decoder leaves out of its JSON (observed in a real token); decoded but not emitted.
HIDDEN = frozenset({0x00020008, 0x00050010, 0x00050011, 0x00050014, 0x00050028, 0x00050030})
_TPM_HASHES = {0x0004: "SHA1", 0x000B: "SHA256", 0x000C: "SHA384", 0x000D: "SHA512"}
MAX_DEPTH = 8
MAX_ENTRIES = 8192  # TLVs in a payload, and in a log's: 6.5x / 4.5x the largest real ones (1,253 / 1,797)


def _hash_name(alg: int) -> str:
    return _TPM_HASHES.get(alg, str(alg))


def _structured(kind: str, data: bytes) -> Any:
    """The fixed layouts MAA expands (wbcl.h); ``None`` when the bytes do not fit."""
    if kind == "revlist" and len(data) >= 14:
        created, dlen, alg = struct.unpack_from("<QIH", data, 0)
        if 14 + dlen == len(data):
            return {
                "CreationTime": created,
                "Digest": b64url(data[14:]),
                "HashAlgId": _hash_name(alg),
                "RawData": b64url(data),
            }
    elif kind == "sipolicy" and len(data) >= 16:
        version, name_len, alg, dlen = struct.unpack_from("<QHHI", data, 0)
        if 16 + name_len + dlen == len(data) and name_len % 2 == 0:
            name = data[16 : 16 + name_len].decode("utf-16-le", "replace").rstrip("\x00")
            return {
                "Digest": b64url(data[16 + name_len :]),
                "HashAlgId": _hash_name(alg),
                "PolicyName": name,
                "PolicyVersion": version,
                "RawData": b64url(data),
            }
    elif kind == "sbcp" and len(data) >= 20:
        version, _offset, alg, dlen, options, signers = struct.unpack_from("<IIHHII", data, 0)
        if 20 + dlen <= len(data):
            text = "SecureBootPolicy: default (no options set)" if options == 0 else f"0x{options:08X}"
            return {
                "Digest": b64url(data[20 : 20 + dlen]),
                "HashAlgId": _hash_name(alg),
                "Options": text,
                "PayloadVersion": version,
                "SignersCount": signers,
            }
    elif kind == "idk" and len(data) >= 16:
        alg, bits, exp_len, mod_len = struct.unpack_from("<IIII", data, 0)
        if 16 + exp_len + mod_len == len(data):
            return {
                "RsaKeyBitLength": bits,
                "RsaModulus": b64url(data[16 + exp_len :]),
                "RsaPublicExponent": b64url(data[16 : 16 + exp_len]),
                "Vsm_idk_alg_id": "VSM_IDK_ALG_ID_RSA" if alg == 1 else str(alg),
            }
    elif kind == "signer" and len(data) >= 16:
        return _signer(data)
    return None


def _utf16(data: bytes) -> str:
    return data.decode("utf-16-le", "replace").rstrip("\x00")


def _signer(data: bytes) -> dict[str, Any] | None:
    """SI policy (update) signer: root id, policy name, EKU OIDs, certificates (publisher, issuer, digest)."""
    root, certs_len, cert_count, name_len, eku_len, eku_count = struct.unpack_from("<IIHHHH", data, 0)
    pos = 16
    if pos + name_len + eku_len + certs_len > len(data):
        return None
    name = _utf16(data[pos : pos + name_len])
    pos += name_len
    ekus: list[str] = []
    end = pos + eku_len
    for _ in range(eku_count):
        if pos >= end or pos + 1 + data[pos] > end:
            return None
        ekus.append(b64url(data[pos + 1 : pos + 1 + data[pos]]))
        pos += 1 + data[pos]
    pos = end
    certs: list[dict[str, Any]] = []
    end = pos + certs_len
    for _ in range(cert_count):
        if pos + 10 > end:
            return None
        pub_len, iss_len, alg, dig_len = struct.unpack_from("<HHIH", data, pos)
        pos += 10
        if pos + pub_len + iss_len + dig_len > end:
            return None
        certs.append(
            {
                "CapiHashAlgId": alg,
                "Digest": b64url(data[pos + pub_len + iss_len : pos + pub_len + iss_len + dig_len]),
                "IssuerCommonName": _utf16(data[pos + pub_len : pos + pub_len + iss_len]),
                "PublisherCommonName": _utf16(data[pos : pos + pub_len]),
            }
        )
        pos += pub_len + iss_len + dig_len
    return {"Certificates": certs, "EKUs": ekus, "PolicyName": name, "RawData": b64url(data), "RootId": root}


def _value(name: str, kind: str, data: bytes) -> Any:
    if kind == _BOOL and len(data) == 1:
        return bool(data[0])
    if kind in (_INT, _ENUM, _BOOL) and 1 <= len(data) <= 8:
        number = int.from_bytes(data, "little")
        if kind == _ENUM:
            return {"String": ENUMS.get(name, {}).get(number, str(number)), "Value": number}
        if kind == _BOOL:
            return bool(number)
        return number
    if kind == _STR and len(data) % 2 == 0:
        try:
            return data.decode("utf-16-le").rstrip("\x00")
        except UnicodeDecodeError:
            pass
    return b64url(data)


def _is_container(typ: int) -> bool:
    return TYPES.get(typ, ("", _BYTES))[1] == "container" or typ & 0x00FF0000 == CONTAINER


def count_entries(data: bytes, limit: int = MAX_ENTRIES) -> int:
    """The TLVs ``decode`` reads in ``data``, nested ones included; counting stops past ``limit``. Reads
    only the TLV headers, so a log's payloads are measured against one budget before any is decoded."""
    count = 0
    spans = [(0, len(data), 0)]
    while spans and count <= limit:
        pos, end, depth = spans.pop()
        while pos + 8 <= end and count <= limit:
            typ, size = struct.unpack_from("<II", data, pos)
            pos += 8
            if size > end - pos:
                break
            count += 1
            if _is_container(typ) and depth < MAX_DEPTH:
                spans.append((pos, pos + size, depth + 1))
            pos += size
    return count


def check_entries(payloads: Iterable[bytes], count: Callable[[bytes], int] | None = None) -> None:
    """Refuse payloads (one log's) that hold more than ``MAX_ENTRIES`` TLVs between them. ``count``: a
    remembered ``count_entries`` (``maa_json.EventCache.sipa_count``)."""
    left = MAX_ENTRIES
    for data in payloads:
        left -= count(data) if count is not None else count_entries(data, left)
        if left < 0:
            raise EventLogError(f"event log: its SIPA payloads hold more than {MAX_ENTRIES} entries")


def _parse(data: bytes, depth: int, budget: list[int]) -> dict[str, Any] | None:
    """``budget[0]``: the TLVs the whole payload may still hold (shared with the nested calls)."""
    out: dict[str, Any] = {name: [] for name in LIST_NAMES}
    repeated: set[str] = set()
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            return None
        budget[0] -= 1
        if budget[0] < 0:
            raise EventLogError(f"event log: a SIPA payload holds more than {MAX_ENTRIES} entries")
        typ, size = struct.unpack_from("<II", data, pos)
        pos += 8
        if size > len(data) - pos:
            return None
        body = data[pos : pos + size]
        pos += size
        name, kind = TYPES.get(typ, (f"0x{typ:08X}", _BYTES))
        value: Any
        if kind == "container" or typ & 0x00FF0000 == CONTAINER:  # _is_container
            if depth >= MAX_DEPTH:
                return None
            value = _parse(body, depth + 1, budget)
            if value is None:
                return None
        elif typ in HIDDEN:
            continue
        elif kind in ("revlist", "sipolicy", "sbcp", "idk", "signer"):
            value = _structured(kind, body)
            if value is None:
                value = b64url(body)
        else:
            value = _value(name, kind, body)
        if name in LIST_NAMES or name in repeated:
            out[name].append(value)
        elif name in out:
            out[name] = [out[name], value]
            repeated.add(name)
        else:
            out[name] = value
    return {k: v for k, v in out.items() if v != [] or k not in LIST_NAMES}


def decode(data: bytes) -> dict[str, Any] | None:
    """Decode one EV_EVENT_TAG payload; ``None`` when it is not a well-formed SIPA TLV sequence.

    Raises ``EventLogError`` when it holds more than ``MAX_ENTRIES`` TLVs."""
    if len(data) < 8:
        return None
    return _parse(data, 0, [MAX_ENTRIES])


def walk(tree: Any) -> list[tuple[str, Any]]:
    """Every (name, value) pair in a decoded tree, depth first."""
    out: list[tuple[str, Any]] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if isinstance(v, list):
                for item in v:
                    out.append((k, item))
                    out += walk(item)
            else:
                out.append((k, v))
                out += walk(v)
    return out
