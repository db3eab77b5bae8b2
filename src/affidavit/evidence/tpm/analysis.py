"""An event log checked on its own: replayed PCRs and, per event, whether its digest covers its data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from affidavit.evidence.tpm.coverage import MISMATCH, check_event
from affidavit.evidence.tpm.eventlog import Event, EventLog, parse_event_log

if TYPE_CHECKING:
    from affidavit.evidence.tpm.maa_json import EventCache
from affidavit.evidence.tpm.replay import PcrValues, replay


@dataclass(frozen=True)
class LogAnalysis:
    log: EventLog
    replayed: PcrValues
    status: tuple[str, ...]  # coverage status per event, parallel to log.events

    @property
    def mismatches(self) -> list[Event]:
        """Events whose digest must cover their data and does not: evidence of a forged log."""
        return [e for e, s in zip(self.log.events, self.status, strict=True) if s == MISMATCH]


def analyze_log(data: bytes | EventLog, cache: EventCache | None = None) -> LogAnalysis:
    """Parse (if given bytes), replay every bank and check every event's data against its digest."""
    log = data if isinstance(data, EventLog) else parse_event_log(data)
    check = check_event if cache is None else cache.status
    return LogAnalysis(log, replay(log), tuple(check(e) for e in log.events))
