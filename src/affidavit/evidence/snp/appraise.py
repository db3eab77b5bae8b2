"""Appraisal: does the authenticated report agree with its certificate, and with the verifier's options?

- SIGNING_KEY names the certificate kind (0 = VCEK, 1 = VLEK).
- The product the report names (CPUID, v3+) and the VEK's productName agree with the chain's product,
  whose TCB layout (legacy or Turin) decodes every TCB_VERSION.
- The VEK's SPL extensions equal REPORTED_TCB (fmc too on Turin) and are <= CURRENT_TCB componentwise.
- A VCEK's hwID equals CHIP_ID (Turin: 8 bytes = CHIP_ID[0:8], the rest zero) unless CHIP_ID is masked.
- `SnpOptions`: the version range, and what the caller forbids (debug, migration agent, a VMPL other
  than the expected one). By default debug, migration and VMPL are claims for the policy, as in MAA.
"""

from __future__ import annotations

from dataclasses import dataclass

from affidavit.evidence.snp.authenticate import VerifiedChain
from affidavit.evidence.snp.errors import (
    CHIP_ID_MISMATCH,
    KEY_KIND_MISMATCH,
    POLICY_VIOLATION,
    PRODUCT_MISMATCH,
    TCB_MISMATCH,
    UNSIGNED_REPORT,
    UNSUPPORTED_VERSION,
    SnpError,
)
from affidavit.evidence.snp.report import (
    SIGNING_KEY_NONE,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    TURIN,
    SnpReport,
    TcbVersion,
)

TCB_FIELDS = (("fmcSPL", "fmc"), ("blSPL", "bootloader"), ("teeSPL", "tee"), ("snpSPL", "snp"),
              ("ucodeSPL", "microcode"))


@dataclass(frozen=True)
class SnpOptions:
    """What a verifier requires beyond AMD's rules. Defaults accept every genuine report of v2..v5."""

    min_version: int = 2
    max_version: int = 5
    allow_debug: bool = True
    allow_migration_agent: bool = True
    vmpl: int | None = None  # e.g. 0: refuse reports requested from another VMPL
    require_crl: bool = False
    require_committed_tcb: bool = False  # COMMITTED_TCB == CURRENT_TCB (no provisional firmware)


def check_version(report: SnpReport, options: SnpOptions) -> None:
    if not options.min_version <= report.version <= options.max_version:
        raise SnpError(
            f"SNP report version {report.version} outside the accepted "
            f"{options.min_version}..{options.max_version}",
            code=UNSUPPORTED_VERSION,
        )


_KIND_OF_KEY = {SIGNING_KEY_VCEK: "VCEK", SIGNING_KEY_VLEK: "VLEK"}


def check_signing_key(report: SnpReport, chain: VerifiedChain) -> None:
    key = report.signing_key
    if key == SIGNING_KEY_NONE:
        raise SnpError("the report is unsigned (SIGNING_KEY = 7)", code=UNSIGNED_REPORT)
    expected = _KIND_OF_KEY[key]
    if chain.kind != expected:
        raise SnpError(
            f"the report's SIGNING_KEY says {expected} but the certificate is a {chain.kind}",
            code=KEY_KIND_MISMATCH,
        )


def check_product(report: SnpReport, chain: VerifiedChain) -> None:
    named = report.cpuid_product
    if named is not None and named != chain.product:
        raise SnpError(
            f"the report's CPUID names {named} but the certificates are {chain.product}'s",
            code=PRODUCT_MISMATCH,
        )
    # productName's stepping is unreliable (sev-snp.md §6.6); its product line is not.
    if chain.extensions.product_name is not None:
        if chain.vek_product != chain.product:
            raise SnpError(
                f"VEK productName {chain.extensions.product_name!r} is not a {chain.product} part",
                code=PRODUCT_MISMATCH,
            )


def check_tcb(report: SnpReport, chain: VerifiedChain) -> TcbVersion:
    """The VEK's SPLs against REPORTED_TCB (equal) and CURRENT_TCB (<=); returns REPORTED_TCB."""
    reported = report.tcb("reported", chain.product)
    current = report.tcb("current", chain.product)
    spls = chain.extensions.spls
    problems = []
    for ext_name, field in TCB_FIELDS:
        value = getattr(reported, field)
        if value is None:  # fmc on the legacy layout
            continue
        cert_value = spls.get(ext_name)
        if cert_value is None:
            problems.append(f"VEK has no {ext_name} extension")
        elif cert_value != value:
            problems.append(f"VEK {ext_name}={cert_value} but REPORTED_TCB.{field}={value}")
        elif cert_value > getattr(current, field):
            now_value = getattr(current, field)
            problems.append(f"VEK {ext_name}={cert_value} above CURRENT_TCB.{field}={now_value}")
    if problems:
        raise SnpError("; ".join(problems), code=TCB_MISMATCH)
    return reported


def check_chip_id(report: SnpReport, chain: VerifiedChain) -> None:
    if chain.kind != "VCEK" or report.chip_id_masked:
        return
    hw_id = chain.extensions.hw_id
    if hw_id is None:
        raise SnpError("VCEK has no hwID extension", code=CHIP_ID_MISMATCH)
    chip = report.chip_id
    if chain.product == TURIN and len(hw_id) == 8:
        ok = hw_id == chip[:8] and not any(chip[8:])
    else:
        ok = hw_id == chip
    if not ok:
        raise SnpError(
            f"VCEK hwID {hw_id[:8].hex()}... != CHIP_ID {chip[:8].hex()}... (another chip's certificate)",
            code=CHIP_ID_MISMATCH,
        )


def check_options(report: SnpReport, chain: VerifiedChain, options: SnpOptions) -> None:
    if report.debug and not options.allow_debug:
        raise SnpError("the guest policy allows debugging (POLICY.DEBUG)", code=POLICY_VIOLATION)
    if report.migrate_ma and not options.allow_migration_agent:
        raise SnpError("the guest policy allows a migration agent (POLICY.MIGRATE_MA)", code=POLICY_VIOLATION)
    if options.vmpl is not None and report.vmpl != options.vmpl:
        raise SnpError(
            f"report requested from VMPL {report.vmpl}, expected {options.vmpl}", code=POLICY_VIOLATION
        )
    if options.require_committed_tcb and report.committed_tcb_raw != report.current_tcb_raw:
        raise SnpError("COMMITTED_TCB differs from CURRENT_TCB (provisional firmware)", code=POLICY_VIOLATION)


def appraise(report: SnpReport, chain: VerifiedChain, options: SnpOptions) -> TcbVersion:
    """Every check above in order; returns REPORTED_TCB decoded with the product's layout."""
    check_signing_key(report, chain)
    check_product(report, chain)
    reported = check_tcb(report, chain)
    check_chip_id(report, chain)
    check_options(report, chain, options)
    return reported
