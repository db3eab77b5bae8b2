"""The attesting side: evidence sources and the HTTP client that sends evidence to the service.

- ``affidavit.client.http``: :class:`AttestationClient`, MAA's attest calls with retries and typed errors.
- ``affidavit.client.sources``: where SGX/TDX quotes come from (a file, Gramine's ``/dev/attestation``, the
  Linux configfs-tsm interface, the simulated enclave).
- ``affidavit.client.tpm``: TPM evidence collection and MAA's TPM protocol.
"""

from affidavit.errors import AffidavitError


class ClientError(AffidavitError):
    """The attestation could not be carried out, or the service refused it."""

    code = "client_error"


class ServiceRejected(ClientError):
    """The service answered with an error body; ``code``/``message`` are the service's own."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status

    def __str__(self) -> str:
        return f"{self.code} (HTTP {self.status}): {self.message}"
