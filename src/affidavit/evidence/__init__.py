"""Evidence verifiers: bytes, collateral, trust anchors and ``now`` in; a typed result or one error out."""

from affidavit.errors import AffidavitError


class EvidenceError(AffidavitError):
    """Evidence is malformed, inauthentic, or does not meet the vendor's baseline."""

    code = "evidence_invalid"
