"""Collateral items as fetched and cached: one signed document or CRL each, kept as received.

The cache works item by item (a TCB Info per TEE and FMSPC, a QE identity per TEE, a PCK CRL per CA,
the root CA CRL) because items expire and are refreshed independently; a platform's collateral is
assembled from four items only when a quote needs it. Bodies keep the exact signed bytes so that the
verifier checks, and the token hashes, what Intel signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from affidavit import strict_json, timefmt
from affidavit.collateral import CollateralError
from affidavit.evidence.dcap.collateral import OFFLINE_KEYS
from affidavit.evidence.dcap.names import pck_ca_kind

TCB_INFO = "tcb_info"
QE_IDENTITY = "qe_identity"
PCK_CRL = "pck_crl"
ROOT_CA_CRL = "root_ca_crl"
KINDS = (ROOT_CA_CRL, PCK_CRL, QE_IDENTITY, TCB_INFO)

TEES = ("sgx", "tdx")
CAS = ("processor", "platform")
_QE_TEE = {"QE": "sgx", "TD_QE": "tdx"}


def invalid(message: str) -> CollateralError:
    return CollateralError(message, code="collateral_invalid")


@dataclass(frozen=True, order=True)
class ItemKey:
    """What an item serves: ``tee`` is "" for CRLs; ``name`` is the FMSPC (TCB Info) or CA type (PCK CRL)."""

    kind: str
    tee: str = ""
    name: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.kind, self.tee, self.name) if p)


def tcb_info_key(tee: str, fmspc: str) -> ItemKey:
    return ItemKey(TCB_INFO, tee, fmspc.upper())


def qe_identity_key(tee: str) -> ItemKey:
    return ItemKey(QE_IDENTITY, tee)


def pck_crl_key(ca: str) -> ItemKey:
    return ItemKey(PCK_CRL, "", ca)


ROOT_CA_CRL_KEY = ItemKey(ROOT_CA_CRL)


def platform_keys(fmspc: str, ca: str, tee: str) -> tuple[ItemKey, ItemKey, ItemKey, ItemKey]:
    """The four items a quote from this platform needs, root CRL first (the others are checked against it)."""
    if tee not in TEES or ca not in CAS:
        raise CollateralError(f"unsupported platform: tee={tee!r} ca={ca!r}", code="collateral_not_found")
    return ROOT_CA_CRL_KEY, pck_crl_key(ca), qe_identity_key(tee), tcb_info_key(tee, fmspc)


@dataclass(frozen=True)
class CollateralItem:
    """One piece of collateral as received.

    ``body`` is the exact signed JSON text (TCB Info, QE identity) or the lowercase hex of a DER CRL;
    ``signature`` the hex r||s of a signed JSON document ("" for CRLs); ``chain`` the PEM issuer chain,
    signer first ("" for the root CA CRL, which the trust anchor signs). ``number`` orders documents of
    one key: the tcbEvaluationDataNumber (0 for CRLs, which are ordered by ``issue_date`` alone).
    """

    key: ItemKey
    body: str
    signature: str
    chain: str
    issue_date: datetime
    next_update: datetime
    number: int

    def rank(self) -> tuple[int, datetime]:
        """Newer documents rank higher; a cache never replaces an item by one of lower rank."""
        return (self.number, self.issue_date)


def parse_time(value: Any, what: str) -> datetime:
    """A document's time (``affidavit.timefmt``: a zone required, the result in UTC) or ``invalid``."""
    if not isinstance(value, str):
        raise invalid(f"{what} is not a date string")
    try:
        return timefmt.parse_time(value)
    except ValueError as exc:
        raise invalid(f"{what} is not an ISO 8601 date with a time zone: {value[:40]!r}") from exc


def signed_item(kind: str, text: str, signature: str, chain: str) -> CollateralItem:
    """A TCB Info or QE identity from its exact signed JSON text, signature (hex) and issuer chain."""
    try:
        doc = strict_json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"{kind} is not JSON") from exc
    if not isinstance(doc, dict):
        raise invalid(f"{kind} is not a JSON object")
    try:
        sig = bytes.fromhex(signature)
    except (ValueError, TypeError) as exc:
        raise invalid(f"{kind} signature is not hex") from exc
    if len(sig) != 64:
        raise invalid(f"{kind} signature must be 64 bytes (r||s), found {len(sig)}")
    number = doc.get("tcbEvaluationDataNumber", 0)
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise invalid(f"{kind} tcbEvaluationDataNumber is not a non-negative integer")
    if kind == TCB_INFO:
        fmspc = doc.get("fmspc")
        if not isinstance(fmspc, str) or len(fmspc) != 12 or not _is_hex(fmspc):
            raise invalid("tcb_info fmspc is not 6 bytes of hex")
        ident = doc.get("id", "SGX")  # TCB Info v2 (SGX only) has no id
        if ident not in ("SGX", "TDX"):
            raise invalid(f"tcb_info id {str(ident)[:20]!r} is neither SGX nor TDX")
        key = tcb_info_key(str(ident).lower(), fmspc)
    elif kind == QE_IDENTITY:
        ident = doc.get("id")
        tee = _QE_TEE.get(ident) if isinstance(ident, str) else None
        if tee is None:
            raise invalid(f"qe_identity id {str(doc.get('id'))[:20]!r} is neither QE nor TD_QE")
        key = qe_identity_key(tee)
    else:
        raise invalid(f"not a signed document kind: {kind}")
    issue = parse_time(doc.get("issueDate"), f"{kind} issueDate")
    nxt = parse_time(doc.get("nextUpdate"), f"{kind} nextUpdate")
    return CollateralItem(key, text, sig.hex(), chain, issue, nxt, number)


def crl_item(kind: str, der: bytes, chain: str) -> CollateralItem:
    """A PCK CRL (keyed by the CA that issued it) or the root CA CRL, from its DER bytes."""
    try:
        crl = x509.load_der_x509_crl(der)
        issuer = [str(a.value) for a in crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)]
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
    except ValueError as exc:
        raise invalid(f"{kind} is not a DER CRL") from exc
    if next_update is None:
        raise invalid(f"{kind} has no nextUpdate")
    if kind == PCK_CRL:
        ca = pck_ca_kind(issuer[0] if issuer else "")
        if ca is None:
            raise invalid("pck_crl is not issued by an Intel SGX PCK Processor or Platform CA")
        key = pck_crl_key(ca)
    elif kind == ROOT_CA_CRL:
        key = ROOT_CA_CRL_KEY
    else:
        raise invalid(f"not a CRL kind: {kind}")
    return CollateralItem(key, der.hex(), "", chain, this_update, next_update, 0)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CollateralSet:
    """The four items one platform needs, convertible to and from the offline JSON form."""

    root_ca_crl: CollateralItem
    pck_crl: CollateralItem
    qe_identity: CollateralItem
    tcb_info: CollateralItem

    @property
    def items(self) -> tuple[CollateralItem, CollateralItem, CollateralItem, CollateralItem]:
        return (self.root_ca_crl, self.pck_crl, self.qe_identity, self.tcb_info)

    @property
    def fmspc(self) -> str:
        return self.tcb_info.key.name

    @property
    def tee(self) -> str:
        return self.tcb_info.key.tee

    @property
    def ca(self) -> str:
        return self.pck_crl.key.name

    @property
    def next_update(self) -> datetime:
        return min(i.next_update for i in self.items)

    def to_json(self) -> dict[str, str]:
        """dcap-qvl's ``QuoteCollateralV3`` form, as in ``shared/vectors/sgx/*/collateral*.json``."""
        return {
            "pck_crl_issuer_chain": self.pck_crl.chain,
            "root_ca_crl": self.root_ca_crl.body,
            "pck_crl": self.pck_crl.body,
            "tcb_info_issuer_chain": self.tcb_info.chain,
            "tcb_info": self.tcb_info.body,
            "tcb_info_signature": self.tcb_info.signature,
            "qe_identity_issuer_chain": self.qe_identity.chain,
            "qe_identity": self.qe_identity.body,
            "qe_identity_signature": self.qe_identity.signature,
        }

    @classmethod
    def from_json(cls, obj: Any) -> CollateralSet:
        """Split a collateral object in the offline JSON form into items (their signatures unchecked)."""
        if not isinstance(obj, dict):
            raise invalid("collateral is not a JSON object")
        try:
            fields = {k: obj[k] for k in JSON_FIELDS}
        except KeyError as exc:
            raise invalid(f"collateral lacks {exc.args[0]}") from exc
        if not all(isinstance(v, str) for v in fields.values()):
            raise invalid("collateral fields must be strings")
        try:
            root_der, pck_der = bytes.fromhex(fields["root_ca_crl"]), bytes.fromhex(fields["pck_crl"])
        except ValueError as exc:
            raise invalid("collateral CRLs must be hex") from exc
        qe = signed_item(
            QE_IDENTITY,
            fields["qe_identity"],
            fields["qe_identity_signature"],
            fields["qe_identity_issuer_chain"],
        )
        tcb = signed_item(
            TCB_INFO, fields["tcb_info"], fields["tcb_info_signature"], fields["tcb_info_issuer_chain"]
        )
        if qe.key.tee != tcb.key.tee:
            raise invalid(f"collateral mixes a {tcb.key.tee} TCB Info with a {qe.key.tee} QE identity")
        return cls(
            root_ca_crl=crl_item(ROOT_CA_CRL, root_der, ""),
            pck_crl=crl_item(PCK_CRL, pck_der, fields["pck_crl_issuer_chain"]),
            qe_identity=qe,
            tcb_info=tcb,
        )


JSON_FIELDS = OFFLINE_KEYS  # the offline form's fields, as the verifier reads them
