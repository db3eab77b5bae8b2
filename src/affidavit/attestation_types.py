"""The attestation-type registry: the one list of what Affidavit attests.

Each :class:`AttestationType` says, as data, everything the rest of the code needs to know about one
type: its verifier (a factory path, resolved by the service), its policy type and default policy, its
route(s) and request shape, how the pipeline names its claims, what ``affidavit attest`` and the client
offer, and what OpenID ``claims_supported`` advertises. Routes (``/attest/{type}``, ``/policies/{type}``),
``affidavit attest``, ``AttestationClient.attest``, the default policies and the OpenID metadata all read
it; nothing else keeps a list of types.

Adding a type is one entry here (or one :func:`register` call) plus the type's own module; see
``docs/architecture.md`` ("Adding an attestation type").

This module is data only: it imports nothing from the layers it describes (the verifier factory is a
``"module:attribute"`` path), so every layer may read it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from affidavit.policy.defaults import PERMIT_ALL, SGX_DEFAULT, SNP_DEFAULT, TDX_DEFAULT

__all__ = [
    "AttestationType",
    "UnknownAttestationType",
    "all_types",
    "claims_supported",
    "lookup",
    "register",
    "registered",
    "unregister",
]

MAA_SHAPE = "maa"
"""``{<evidence_field>: b64url, runtimeData, initTimeData, nonce, draftPolicyForAttestation}`` ->
``{"token": ...}`` (maa-api §3); ``service.decode.parse_attest_request``."""
TPM_SHAPE = "tpm"
"""MAA's two-round TPM protocol in ``{"data": b64url(JSON)}`` envelopes (``service.tpm_route``)."""
AZURE_GUEST_SHAPE = "azureguest"
"""``{"AttestationInfo": b64url(JSON)}`` in, a token sealed to the guest's vTPM key out
(``service.azure_guest``)."""

# The claims live MAA advertises (maa-api §5.1) that are not any one type's.
_COMMON_CLAIMS = (
    "cnf", "nonce", "x-ms-ver", "x-ms-attestation-type", "x-ms-policy-hash", "x-ms-policy-signer",
)


@dataclass(frozen=True)
class AttestationType:
    """One attestation type. Only ``name``, ``verifier``, ``token_type`` and ``default_policy`` are
    required; the rest default to the MAA JSON shape with no TCB status and no CLI command.

    Identity and routes
      - ``name``: the policy type and the canonical ``/attest/{name}`` path segment (matched
        case-insensitively, as the SDK's enum is); ``aliases``: other accepted spellings.
      - ``request_shape``: ``"maa"`` (:data:`MAA_SHAPE`) or ``"tpm"`` (:data:`TPM_SHAPE`); a new wire
        protocol adds a shape to ``service.shapes``.
      - ``evidence_field``: the JSON member that carries the evidence in the MAA shape.
      - ``sidecar_quirks``: the MAA shape also accepts what confidential-sidecar clients send: a numeric
        ``nonce`` (echoed as sent) and ``{"data": "", "dataType": ""}`` meaning "not given" (SevSnpVm).
    Verification
      - ``verifier``: ``"module:attribute"`` of a factory ``f(state) -> EvidenceVerifier``, called once per
        worker with the service state (``evidence.contract.VerifierHost``).
    Policy
      - ``default_policy``: the text that applies while none is stored (hashed as ``x-ms-policy-hash``,
        so byte-exact).
    Token claims (``service.pipeline``)
      - ``token_type``: the ``x-ms-attestation-type`` value.
      - ``tcb_status_claim`` / ``advisory_ids_claim``: where ``VerifiedEvidence.tcb_status`` /
        ``advisory_ids`` go (None: not emitted); ``collateral_claims``: the claim(s) carrying
        ``collateral_hashes``.
      - ``runtime_target_name`` / ``inittime_target_name``: what the bindings' refusals call the evidence
        fields ``runtimeData`` / ``initTimeData`` bind to (SevSnpVm: REPORT_DATA, HOST_DATA).
      - ``runtime_binary_claims``: the claim(s) carrying Binary ``runtimeData`` (base64url); JSON
        ``runtimeData`` is ``x-ms-runtime``, ``initTimeData`` is ``x-ms-inittime`` /
        ``x-ms-inittime-data`` for every type.
      - ``incoming_aliases``: extra incoming names (alias -> claim) the policy also sees (SGX's ``$``).
      - ``policy_claims_top_level``: policy-issued claims at the token's top level as well as under
        ``x-ms-policy`` (only when issued); False: only under ``x-ms-policy``, always present (TPM).
      - ``token_minutes``: the lifetime when the policy sets no ``report_validity_in_minutes``.
      - ``claims_supported``: the names OpenID metadata advertises for this type.
    Client and CLI
      - ``api_version``: what the client sends (None: the client's configured default);
        ``cli_name`` / ``cli_help``: ``affidavit attest <cli_name>`` (None: no command);
        ``client_sources``: where the CLI may get evidence (``file``, ``gramine``, ``tsm``; ``tpm`` for
        the TPM protocol's own arguments).
    """

    name: str
    verifier: str
    token_type: str
    default_policy: str
    aliases: tuple[str, ...] = ()
    request_shape: str = MAA_SHAPE
    evidence_field: str = "quote"
    sidecar_quirks: bool = False
    runtime_target_name: str = "report data"
    inittime_target_name: str = "config id"
    tcb_status_claim: str | None = None
    advisory_ids_claim: str | None = None
    collateral_claims: tuple[str, ...] = ()
    runtime_binary_claims: tuple[str, ...] = ("x-ms-runtime-data",)
    incoming_aliases: Mapping[str, str] = field(default_factory=dict)
    policy_claims_top_level: bool = True
    token_minutes: int = 8 * 60
    claims_supported: tuple[str, ...] = ()
    api_version: str | None = None
    cli_name: str | None = None
    cli_help: str = ""
    client_sources: tuple[str, ...] = ("file",)

    @property
    def path(self) -> str:
        return f"/attest/{self.name}"


class UnknownAttestationType(LookupError):
    """No registered type has this name (the service turns it into 400 InvalidParameter)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown attestation type {name!r}; expected one of {', '.join(names())}")
        self.name = name


_SGX_CLAIMS = (
    "x-ms-sgx-is-debuggable", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner", "x-ms-sgx-svn", "x-ms-sgx-ehd",
    "x-ms-sgx-collateral", "is-debuggable", "sgx-mrsigner", "sgx-mrenclave", "product-id", "svn", "tee",
)
# MAA's deprecated incoming names (maa-policy §6.1), still supplied to policies.
_SGX_ALIASES = MappingProxyType({
    "$is-debuggable": "x-ms-sgx-is-debuggable",
    "$sgx-mrsigner": "x-ms-sgx-mrsigner",
    "$sgx-mrenclave": "x-ms-sgx-mrenclave",
    "$product-id": "x-ms-sgx-product-id",
    "$svn": "x-ms-sgx-svn",
    "$tee": "x-ms-attestation-type",
})
SGX_ENCLAVE = AttestationType(
    name="SgxEnclave",
    verifier="affidavit.service.verifiers:sgx_enclave",
    token_type="sgx",
    default_policy=SGX_DEFAULT,
    tcb_status_claim="x-ms-sgx-tcb-status",
    advisory_ids_claim="x-ms-sgx-advisory-ids",
    collateral_claims=("x-ms-sgx-collateral", "maa-attestationcollateral"),
    runtime_binary_claims=("x-ms-sgx-ehd", "aas-ehd", "maa-ehd"),
    incoming_aliases=_SGX_ALIASES,
    claims_supported=_SGX_CLAIMS,
    cli_name="sgx",
    cli_help="an SGX DCAP quote (POST /attest/SgxEnclave)",
    client_sources=("file", "gramine"),  # Gramine's /dev/attestation gives SGX quotes
)
OPEN_ENCLAVE = replace(
    SGX_ENCLAVE,
    name="OpenEnclave",
    verifier="affidavit.service.verifiers:open_enclave",
    evidence_field="report",
    cli_name="openenclave",
    cli_help="an Open Enclave report (POST /attest/OpenEnclave)",
    client_sources=("file",),  # an Open Enclave report is always a file
)
TPM = AttestationType(
    name="Tpm",
    verifier="affidavit.service.verifiers:tpm",
    token_type="tpm",
    default_policy="",  # as MAA provisions it: denies until an operator sets one
    request_shape=TPM_SHAPE,
    policy_claims_top_level=False,
    token_minutes=24 * 60,  # MAA's TPM default (policy.PROPERTY_DEFAULTS)
    cli_name="tpm",
    cli_help="a TPM quote and boot log (MAA's TPM protocol, POST /attest/Tpm)",
    client_sources=("tpm",),
)
TDX_VM = AttestationType(
    name="TdxVm",
    verifier="affidavit.service.verifiers:tdx_vm",
    token_type="tdxvm",
    default_policy=TDX_DEFAULT,
    tcb_status_claim="attester_tcb_status",
    advisory_ids_claim="attester_advisory_ids",
    collateral_claims=("x-ms-collateral",),
    api_version="2025-06-01",
    cli_name="tdx",
    cli_help="a TDX quote (POST /attest/TdxVm)",
    client_sources=("file", "tsm"),  # the configfs-tsm interface gives TD quotes
)

SEV_SNP_VM = AttestationType(
    name="SevSnpVm",
    verifier="affidavit.service.snp_route:build",
    token_type="sevsnpvm",
    default_policy=SNP_DEFAULT,
    evidence_field="report",
    sidecar_quirks=True,
    runtime_target_name="REPORT_DATA",
    inittime_target_name="HOST_DATA",
    cli_name="snp",  # its own arguments (cli.attest: --report/--source tsm, --chain, --vmpl)
    cli_help="an AMD SEV-SNP report (POST /attest/SevSnpVm)",
    client_sources=("file", "tsm"),
)
AZURE_GUEST = AttestationType(
    name="AzureGuest",
    verifier="affidavit.service.azure_guest:build",
    token_type="azurevm",
    default_policy=PERMIT_ALL,
    request_shape=AZURE_GUEST_SHAPE,
    evidence_field="AttestationInfo",
    runtime_binary_claims=(),
    cli_name=None,  # `affidavit attest azure-cvm` (client.azure_cvm) talks to the vTPM itself
)
BUILTIN: tuple[AttestationType, ...] = (SGX_ENCLAVE, OPEN_ENCLAVE, TPM, TDX_VM, SEV_SNP_VM, AZURE_GUEST)

_REGISTRY: dict[str, AttestationType] = {}
_BY_LOWER: dict[str, str] = {}


def register(entry: AttestationType, *, replace: bool = False) -> AttestationType:
    """Add ``entry`` (a plugin or a test); its name and aliases must be new unless ``replace``."""
    spellings = {s.lower() for s in (entry.name, *entry.aliases)}
    if not replace:
        taken = sorted(s for s in spellings if s in _BY_LOWER)
        if taken:
            raise ValueError(f"attestation type name(s) already registered: {', '.join(taken)}")
    elif entry.name in _REGISTRY:
        unregister(entry.name)
    _REGISTRY[entry.name] = entry
    for spelling in spellings:
        _BY_LOWER[spelling] = entry.name
    return entry


def unregister(name: str) -> None:
    entry = _REGISTRY.pop(lookup(name).name)
    for spelling in (entry.name, *entry.aliases):
        _BY_LOWER.pop(spelling.lower(), None)


@contextmanager
def registered(entry: AttestationType) -> Iterator[AttestationType]:
    """``entry`` registered for the duration of a ``with`` block (tests)."""
    register(entry)
    try:
        yield entry
    finally:
        unregister(entry.name)


def lookup(name: str) -> AttestationType:
    """The type a path segment or policy type names (case-insensitive, aliases included)."""
    canonical = _BY_LOWER.get(name.lower())
    if canonical is None:
        raise UnknownAttestationType(name)
    return _REGISTRY[canonical]


def all_types() -> tuple[AttestationType, ...]:
    """Every registered type, in registration order (built-ins first)."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def claims_supported() -> tuple[str, ...]:
    """OpenID ``claims_supported``: the common claims, then each type's, de-duplicated in order."""
    seen: dict[str, None] = dict.fromkeys(_COMMON_CLAIMS)
    for entry in _REGISTRY.values():
        seen.update(dict.fromkeys(entry.claims_supported))
    return tuple(seen)


for _entry in BUILTIN:
    register(_entry)
