"""The one ISO 8601 parser (affidavit.timefmt): what it accepts, what it refuses, and that any text gives an
aware UTC datetime or a ValueError; its callers keep their own error types."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affidavit.timefmt import db_time, format_time, parse_db_time, parse_time

Z = datetime(2025, 6, 10, 12, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-10T12:30:05Z", Z),
        ("2025-06-10T12:30:05+00:00", Z),
        ("2025-06-10T14:30:05+02:00", Z),
        ("2025-06-10T14:30:05+0200", Z),
        ("2025-06-10T11:30:05-01:00", Z),
        ("2025-06-10 12:30:05Z", Z),
        ("2025-06-10T12:30Z", Z.replace(second=0)),
        ("2025-06-10T12:30:05.25Z", Z.replace(microsecond=250000)),
        ("2025-06-10T12:30:05.123456789Z", Z.replace(microsecond=123456)),
    ],
)
def test_accepted_forms_are_utc(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected and got.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "", "2025-06-10T12:30:05", "2025-06-10", "2025-06-10T12:30:05z", "2025-06-10T12:30:05ZZ",
        "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-06-10T24:00:00Z", "2025-06-10T12:60:00Z",
        "2025-06-10T12:30:05+24:00", "2025-06-10T12:30:05+01:60", "2025-06-10T12:30:05+1", "20250610T123005Z",
        "2025-W24-2", "0000-01-01T00:00:00Z", "\uff12025-06-10T12:30:05Z", "2025-06-10T12:30:05.Z",
        "2025-06-10T12:30:05.1234567890Z", " 2025-06-10T12:30:05Z", "2025-06-10T12:30:05Z\n",
        "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2025-06-10T12:30:05Z" + " " * 64,
    ],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_naive_times_are_refused_unless_the_caller_means_utc() -> None:
    assert parse_time("2025-06-10T12:30:05", assume_utc=True) == Z
    assert parse_time("2025-06-10", assume_utc=True) == datetime(2025, 6, 10, tzinfo=UTC)
    assert parse_time("2025-06-10T14:30:05+02:00", assume_utc=True) == Z  # a zone given still counts


@given(st.text(max_size=80))
@settings(max_examples=400, deadline=None)
def test_any_text_is_an_aware_utc_time_or_a_value_error(text: str) -> None:
    for assume in (False, True):
        try:
            got = parse_time(text, assume_utc=assume)
        except ValueError:
            continue
        assert got.tzinfo is UTC


@given(st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
                     r"(Z|[+-][0-9]{2}:?[0-9]{2})?\Z"))
@settings(max_examples=300, deadline=None)
def test_near_misses_of_the_grammar_are_a_time_or_a_value_error(text: str) -> None:
    try:
        got = parse_time(text, assume_utc=True)
    except ValueError:
        return
    assert got.tzinfo is UTC


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                               timezone(-timedelta(hours=11))])))
@settings(max_examples=300, deadline=None)
def test_formats_round_trip(when: datetime) -> None:
    assert parse_db_time(db_time(when)) == when
    assert parse_time(db_time(when)) == when
    assert parse_time(when.isoformat()) == when
    assert parse_time(format_time(when)) == when.replace(microsecond=0)
    assert len(db_time(when)) == len("2025-06-10T12:30:05.000000Z")


def test_formatting_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        db_time(datetime(2025, 6, 10))
    with pytest.raises(ValueError):
        format_time(datetime(2025, 6, 10))


def test_callers_keep_their_error_types() -> None:
    from affidavit.cli.arguments import iso_time
    from affidavit.collateral import CollateralError
    from affidavit.collateral.items import parse_time as collateral_time
    from affidavit.service.config import ServiceConfig
    from affidavit.service.errors import ServiceError

    assert iso_time("2025-06-10T12:30:05") == Z
    with pytest.raises(argparse.ArgumentTypeError):
        iso_time("yesterday")
    assert collateral_time("2025-06-10T12:30:05Z", "issueDate") == Z
    with pytest.raises(CollateralError) as err:
        collateral_time("2025-06-10T12:30:05", "issueDate")  # a document's time needs its zone
    assert err.value.code == "collateral_invalid"
    config = ServiceConfig(evidence_time=Z)
    assert ServiceConfig.from_json(config.to_json()).evidence_time == Z
    with pytest.raises(ServiceError) as serr:
        ServiceConfig.from_json('{"evidence_time": "soon"}')
    assert serr.value.code == "configuration"


def test_tcb_info_dates_need_a_zone() -> None:
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.dcap.tcbinfo import _Obj

    assert _Obj({"issueDate": "2025-06-10T12:30:05Z"}, "tcbInfo").date("issueDate") == Z
    for bad in ("2025-06-10T12:30:05", "June 10", "2025-06-10T12:30:05z"):
        with pytest.raises(EvidenceError):
            _Obj({"issueDate": bad}, "tcbInfo").date("issueDate")
