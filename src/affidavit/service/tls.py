"""A self-signed TLS certificate for the service host, generated once and kept in the data directory.

Kept (not regenerated per start) so that clients that pinned it, or a CA bundle pointing at it, keep
working across restarts. Regenerated only when the host is not covered or the certificate nears expiry.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)


def _names(host: str) -> list[x509.GeneralName]:
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), loopback]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    else:
        if not ip.is_unspecified and ip != ipaddress.ip_address("127.0.0.1"):
            names.append(x509.IPAddress(ip))
    return names


def _usable(cert_path: Path, host: str, now: datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    return all(n in sans for n in _names(host))


def ensure_self_signed(data_dir: Path, host: str, *, now: datetime | None = None) -> tuple[Path, Path]:
    """Paths of (certificate, key) PEM files for ``host`` under ``data_dir/tls``, created if needed."""
    now = now or datetime.now(UTC)
    tls_dir = data_dir / "tls"
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    if key_path.exists() and _usable(cert_path, host, now):
        return cert_path, key_path
    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_tmp, cert_tmp = key_path.with_suffix(".tmp"), cert_path.with_suffix(".tmp")
    fd = os.open(key_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert_tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(key_tmp, key_path)
    os.replace(cert_tmp, cert_path)
    return cert_path, key_path
