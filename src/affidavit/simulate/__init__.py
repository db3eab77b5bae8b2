"""A simulated Intel SGX/TDX PKI and quote generator, for development and tests without hardware.

``SimulatedPlatform.create(...)`` builds a test root CA, PCK CAs, a TCB signing certificate and a PCK
certificate with a real SGX extension; the platform signs v3/v4/v5 quotes for any report body and emits
collateral (CRLs, TCB Info, QE identity) in the offline JSON form that ``load_collateral`` reads. Its
quotes verify only when ``root_pem`` is configured as a trust anchor; never ship that root to production.
"""

from affidavit.simulate.collateral import (
    ENCLAVE_STATUSES,
    TCB_STATUSES,
    EnclaveLevel,
    TcbLevel,
    TdxModuleIdentity,
)
from affidavit.simulate.enclave import SimulatedEnclave, SimulatedTd, runtime_data_binding
from affidavit.simulate.pck_extension import PckExtension, PlatformConfiguration
from affidavit.simulate.pki import SimulatedPki, normalize_seed
from affidavit.simulate.platform import PlatformTcb, SimulatedPlatform
from affidavit.simulate.report import SgxReportBody, TdReportBody, sgx_attributes

__all__ = [
    "ENCLAVE_STATUSES",
    "TCB_STATUSES",
    "EnclaveLevel",
    "PckExtension",
    "PlatformConfiguration",
    "PlatformTcb",
    "SgxReportBody",
    "SimulatedEnclave",
    "SimulatedPki",
    "SimulatedPlatform",
    "SimulatedTd",
    "TcbLevel",
    "TdReportBody",
    "TdxModuleIdentity",
    "normalize_seed",
    "runtime_data_binding",
    "sgx_attributes",
]
