"""Claims of a verified report: MAA's ``x-ms-sevsnpvm-*`` names and value types (sev-snp.md §5.5), and
Affidavit's own platform claims under ``x-affidavit-sevsnp-*`` (fields MAA never emits, for policies).

Hex values are lower-case hex of the raw bytes in report order; SVNs are numbers from REPORTED_TCB (what
the VCEK certifies); policy bits are booleans.
"""

from __future__ import annotations

from typing import Any

from affidavit.evidence.snp.report import SnpReport, TcbVersion

AFFIDAVIT_PREFIX = "x-affidavit-sevsnp-"


def maa_claims(report: SnpReport, reported: TcbVersion) -> dict[str, Any]:
    """The ``x-ms-sevsnpvm-*`` claims MAA puts in a SevSnpVm token, with MAA's value types."""
    return {
        "x-ms-sevsnpvm-authorkeydigest": report.author_key_digest.hex(),
        "x-ms-sevsnpvm-bootloader-svn": reported.bootloader,
        "x-ms-sevsnpvm-familyId": report.family_id.hex(),
        "x-ms-sevsnpvm-guestsvn": report.guest_svn,
        "x-ms-sevsnpvm-hostdata": report.host_data.hex(),
        "x-ms-sevsnpvm-idkeydigest": report.id_key_digest.hex(),
        "x-ms-sevsnpvm-imageId": report.image_id.hex(),
        "x-ms-sevsnpvm-is-debuggable": report.debug,
        "x-ms-sevsnpvm-launchmeasurement": report.measurement.hex(),
        "x-ms-sevsnpvm-microcode-svn": reported.microcode,
        "x-ms-sevsnpvm-migration-allowed": report.migrate_ma,
        "x-ms-sevsnpvm-reportdata": report.report_data.hex(),
        "x-ms-sevsnpvm-reportid": report.report_id.hex(),
        "x-ms-sevsnpvm-smt-allowed": report.smt_allowed,
        "x-ms-sevsnpvm-snpfw-svn": reported.snp,
        "x-ms-sevsnpvm-tee-svn": reported.tee,
        "x-ms-sevsnpvm-vmpl": report.vmpl,
    }


def platform_claims(report: SnpReport, product: str, signer: str) -> dict[str, Any]:
    """Fields MAA does not emit (chip, platform, all four TCBs, versions), under Affidavit's prefix."""
    p = AFFIDAVIT_PREFIX
    out: dict[str, Any] = {
        p + "product": product,
        p + "report-version": report.version,
        p + "signing-key": signer,
        p + "policy": f"{report.policy:016x}",
        p + "abi-major": report.abi_major,
        p + "abi-minor": report.abi_minor,
        p + "platform-info": f"{report.platform_info:016x}",
        p + "chip-id": report.chip_id.hex(),
        p + "reportid-ma": report.report_id_ma.hex(),
        p + "author-key-en": report.author_key_en,
        p + "current-version": f"{report.current_major}.{report.current_minor}.{report.current_build}",
        p + "committed-version": (
            f"{report.committed_major}.{report.committed_minor}.{report.committed_build}"
        ),
    }
    for which in ("current", "reported", "committed", "launch"):
        out[p + f"{which}-tcb"] = report.tcb(which, product).tcbm
    if report.current_mit_vector is not None and report.launch_mit_vector is not None:
        out[p + "launch-mit-vector"] = f"{report.launch_mit_vector:016x}"
        out[p + "current-mit-vector"] = f"{report.current_mit_vector:016x}"
    return out
