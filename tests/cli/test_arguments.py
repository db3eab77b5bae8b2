"""The parser itself: every flag and argument has help text, key sizes agree between commands, URLs are
checked, read-only commands create no files; shared argument types (durations)."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from affidavit.cli import build_parser, main
from affidavit.cli.arguments import RSA_KEY_SIZES, duration, service_url
from affidavit.tokens.keys import ALLOWED_BITS
from tests.cli.conftest import Run

Parsers = list[tuple[str, argparse.ArgumentParser]]


def _parsers(parser: argparse.ArgumentParser, name: str = "affidavit") -> Parsers:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                out += _parsers(child, f"{name} {child_name}")
    return out


def _action(name: str, parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in parser._actions if a.dest == dest)


def test_every_flag_and_argument_has_help() -> None:
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, parser in _parsers(build_parser())
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction)
        and not (a.help and a.help.strip())
    ]
    assert missing == []


def test_key_sizes_agree() -> None:
    parsers = dict(_parsers(build_parser()))
    serve = _action("serve", parsers["affidavit serve"], "key_size").choices
    rotate = _action("rotate", parsers["affidavit keys rotate"], "bits").choices
    assert tuple(serve) == tuple(rotate) == RSA_KEY_SIZES == ALLOWED_BITS


def test_sources_fit_the_evidence_kind() -> None:
    parsers = dict(_parsers(build_parser()))
    assert _action("sgx", parsers["affidavit attest sgx"], "source").choices == ("gramine",)
    assert _action("tdx", parsers["affidavit attest tdx"], "source").choices == ("tsm",)
    assert not any(a.dest == "source" for a in parsers["affidavit attest openenclave"]._actions)


@pytest.mark.parametrize("url", ["127.0.0.1:8443", "localhost", "ftp://x", "http://", "http://h:port"])
def test_urls_without_scheme_or_host_are_refused(url: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        service_url(url)
    assert service_url("https://h:8443/") == "https://h:8443"


def test_read_only_commands_create_no_files(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFFIDAVIT_DATABASE_URL", raising=False)
    for argv in (["keys", "list"], ["collateral", "list"], ["keys", "list", "--json"]):
        status, out, err = run(*argv)
        assert status == 1 and "no database at var/affidavit.db" in out + err
    assert os.listdir(tmp_path) == []  # no var/, no affidavit.db


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
    args = build_parser().parse_args(["serve", "--collateral-grace", "7d", "--pcs-update", "early"])
    assert (args.collateral_grace, args.pcs_update) == (timedelta(days=7), "early")
    assert main(["serve", "--collateral-grace", "soon"]) == 2  # a usage error: one line, exit 2
    assert "not a duration" in capsys.readouterr().err
