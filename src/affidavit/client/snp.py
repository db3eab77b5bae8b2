"""SEV-SNP evidence on the attesting guest: a report from configfs-tsm (provider ``sev_guest``) with the
VCEK/VLEK chain from its ``auxblob`` certificate table, or a file, as MAA's ``report`` JSON document.

On real hardware (Linux >= 6.7 with ``CONFIG_TSM_REPORTS`` and the ``sev-guest`` driver, configfs
mounted at ``/sys/kernel/config``): ``affidavit attest snp --source tsm --url https://... --runtime-json
key.json`` writes SHA-256(runtime data) into REPORT_DATA[0:32], reads ``outblob`` (the 1184-byte
report) and ``auxblob`` (the host-provided VCEK/ASK/ARK, when the hypervisor supplies them; empty on some
hosts, and then the service fetches the VCEK from AMD KDS). ``--vmpl`` sets ``privlevel``.
"""

from __future__ import annotations

from pathlib import Path

from affidavit.client import ClientError


def _pem(der: bytes) -> bytes:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode()


def chain_from_aux(aux: bytes) -> bytes | None:
    """VcekCertChain PEM (VEK, ASK/ASVK, ARK) from a configfs-tsm ``auxblob``; None when it has no VEK."""
    from affidavit.evidence.snp import SnpError
    from affidavit.evidence.snp.certtable import parse_cert_table

    try:
        table = parse_cert_table(aux)
    except SnpError as exc:
        raise ClientError(f"configfs-tsm auxblob: {exc.message}", code="source_failed") from None
    vek = table.get("vcek") or table.get("vlek")
    if vek is None:
        return None
    roles = ("vlek" if "vlek" in table else "vcek", "ask", "ark")
    return b"".join(_pem(table[r]) for r in roles if r in table)


def snp_document(
    *,
    report_file: Path | None,
    tsm_root: Path,
    report_data: bytes,
    chain_pem: bytes | None = None,
    vmpl: int | None = None,
) -> bytes:
    """MAA's report document for a file (raw report or the JSON document itself) or a fresh TSM report."""
    from affidavit.evidence.snp.maa import build_document

    if report_file is not None:
        try:
            data = report_file.read_bytes()
        except OSError as exc:
            raise ClientError(
                f"cannot read report file {report_file}: {exc.strerror}", code="source_failed"
            ) from None
        if data.lstrip().startswith(b"{"):
            return data
        return build_document(data, chain_pem)
    from affidavit.client.sources import ConfigfsTsmSource

    source = ConfigfsTsmSource(tsm_root)
    provider = source.provider()
    if provider is not None and provider != "sev_guest":
        raise ClientError(f"configfs-tsm provider is {provider!r}, not sev_guest", code="source_unsupported")
    blobs = source.read(report_data, extra=("auxblob",), privlevel=vmpl)
    return build_document(blobs["outblob"], chain_pem or chain_from_aux(blobs["auxblob"]))
