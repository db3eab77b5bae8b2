"""Shared CLI argument types."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.cli import main
from affidavit.cli.arguments import duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), (" 1.5H ", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "d", "-1h", "abc", "inf", "nan", "1e300d", "12w"])
def test_bad_durations_are_argument_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


@given(st.text(max_size=20))
def test_any_text_is_a_duration_or_an_argument_error(text: str) -> None:
    try:
        assert duration(text) >= timedelta(0)
    except argparse.ArgumentTypeError:
        pass


def test_serve_and_quote_take_the_grace_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from affidavit.cli import build_parser

    args = build_parser().parse_args(["serve", "--collateral-grace", "7d", "--pcs-update", "early"])
    assert (args.collateral_grace, args.pcs_update) == (timedelta(days=7), "early")
    with pytest.raises(SystemExit):
        main(["serve", "--collateral-grace", "soon"])
    assert "not a duration" in capsys.readouterr().err
