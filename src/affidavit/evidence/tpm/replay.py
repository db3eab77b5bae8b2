"""Replay an event log into PCR values, bank by bank."""

from __future__ import annotations

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.eventlog import EventLog

# PCR values are keyed by bank name ("sha1", "sha256", ...) then PCR index.
PcrValues = dict[str, dict[int, bytes]]


def initial_value(pcr: int, size: int, locality: int | None = None) -> bytes:
    """A PCR's value after TPM2_Startup: 17-22 start at all-ones; PCR0 carries the start-up locality."""
    if 17 <= pcr <= 22:
        return b"\xff" * size
    if pcr == 0 and locality:
        return bytes(size - 1) + bytes([locality & 0xFF])
    return bytes(size)


def replay(log: EventLog) -> PcrValues:
    """Extend every event (except EV_NO_ACTION) into its PCR, for every bank we can hash.

    Only PCRs that have events appear in the result: other PCRs are extended at run time (IMA, UKI)
    and the log says nothing about them. Banks with an unknown hash algorithm are left out. An event
    that lacks a bank's digest does not extend that bank (such a log cannot match a real TPM's bank).
    """
    out: PcrValues = {}
    events = [e for e in log.events if e.type != c.EV_NO_ACTION]
    touched = sorted({e.pcr for e in events})
    for alg in log.banks:
        fn = c.HASH_FUNCS.get(alg)
        size = c.HASH_SIZES.get(alg)
        if fn is None or size is None:
            continue
        pcrs = {i: initial_value(i, size, log.startup_locality) for i in touched}
        for e in events:
            digest = e.digests.get(alg)
            if digest is not None:
                pcrs[e.pcr] = fn(pcrs[e.pcr] + digest).digest()
        out[c.bank_name(alg)] = pcrs
    return out
