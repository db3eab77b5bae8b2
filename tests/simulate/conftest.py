"""The simulated platforms (``tests/simulated_platforms.py``), shared with ``tests/evidence/dcap``."""

from tests.simulated_platforms import (  # noqa: F401 -- fixtures
    now,
    sgx_collateral,
    sgx_platform,
    sgx_verifier,
    tdx_collateral,
    tdx_platform,
    tdx_verifier,
)
