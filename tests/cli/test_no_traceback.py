"""Every ``affidavit`` command, driven the way people get it wrong: missing and unreadable files,
unwritable outputs, bad URLs, wrong flags, an unreachable or a wrong server, garbage input. Each answer
is one line (``error: CODE: message``) or, with ``--json``, one JSON error object on stdout; the exit
status is 1 (refused or failed) or 2 (usage); never a traceback. A new command must be added here."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from affidavit.cli import build_parser
from tests.cli.conftest import Run
from tests.conftest import ROOT, refused_port


class _NotAffidavit(http.server.BaseHTTPRequestHandler):
    """Another server on the port: HTML for everything."""

    def _answer(self) -> None:
        body = b"<html><body>It works!</body></html>"
        self.send_response(200 if self.path.startswith("/.well") else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up before the answer is written is not this test's failure


@pytest.fixture(scope="module")
def wrong_server() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _NotAffidavit)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def down() -> Iterator[str]:
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def f(tmp_path_factory: pytest.TempPathFactory, wrong_server: str, down: str) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad-inputs")
    (d / "garbage").write_bytes(os.urandom(300) + b"\x00\xff")
    (d / "text").write_text("hello, not a policy, a quote, a token or a key\n")
    (d / "claims.json").write_text("[]")
    (d / "policy.txt").write_text("version=1.0; authorizationrules { => permit(); };")
    (d / "adir").mkdir()
    (d / "token").write_text("t0ken\n")
    return {
        "missing": str(d / "missing" / "nothing.bin"),
        "dir": str(d / "adir"),  # unreadable as a file (also as root, unlike chmod 000)
        "garbage": str(d / "garbage"),
        "text": str(d / "text"),
        "claims": str(d / "claims.json"),
        "policy": str(d / "policy.txt"),
        "token": str(d / "token"),
        "unwritable": str(d / "garbage" / "sub" / "out"),  # a file in place of a directory
        "down": down,
        "wrong": wrong_server,
        "nodb": f"sqlite:///{d / 'nowhere' / 'affidavit.db'}",
        "baddb": f"sqlite:///{d / 'garbage' / 'x.db'}",
    }


# command -> invocations (placeholders {name} from the fixture ``f``); each also runs with --json
CASES: dict[str, list[str]] = {
    "serve": ["--nope", "--port notanumber", "--tls-cert {missing} --tls-key {missing} --data-dir {dir}",
              "--tls-cert {garbage} --tls-key {garbage} --data-dir {dir}", "--collateral-grace soon",
              "--database-url {baddb} --data-dir {dir}"],
    "attest sgx": ["--quote {missing} --url {down}", "--quote {garbage} --url 127.0.0.1:8443",
                   "--quote {dir} --url {down}", "--quote {garbage} --url {down}",
                   "--quote {garbage} --url {wrong}", "--quote {garbage} --url {down} --out {unwritable}",
                   "--source tsm --url {down}", "--quote {garbage} --url {down} --runtime-data {missing}"],
    "attest openenclave": ["--report {missing} --url {down}", "--report {garbage} --url {wrong}",
                           "--source gramine --url {down}", "--report {garbage} --url http://"],
    "attest tdx": ["--quote {garbage} --url {wrong}", "--source gramine --url {down}",
                   "--quote {garbage} --url {down} --draft-policy {dir}"],
    "attest tpm": ["--url {down} --eventlog {missing}", "--url 127.0.0.1:1",
                   "--url {down} --ak-cert {garbage}",
                   "--url {down} --eventlog {garbage} --out {unwritable}"],
    "attest snp": ["--report {missing} --url {down}", "--report {garbage} --url {down}",
                   "--report {garbage} --url 127.0.0.1:8443"],
    "attest azure-cvm": ["--url {down} --tcti swtpm:host=127.0.0.1,port=1 --no-eventlog"],
    "snp inspect": ["{missing}", "{dir}", "{garbage}", "{text}"],
    "snp verify": ["{missing}", "{garbage}", "{garbage} --vek {garbage}", "{garbage} --at never"],
    "quote inspect": ["{missing}", "{dir}", "{garbage}", "{text}"],
    "quote verify": ["{garbage} --collateral {missing}", "{missing} --collateral {garbage}",
                     "{text} --collateral {text}", "{garbage} --collateral {garbage} --at never"],
    "eventlog show": ["{missing}", "{dir}", "{garbage}", ""],
    "policy check": ["{missing}", "{dir}", "{garbage}", "{text}"],
    "policy eval": ["{policy} --claims {missing}", "{policy} --claims {garbage}", "{text} --claims {claims}",
                    "{missing} --claims {claims} --explain"],
    "policy hash": ["{missing}", "{garbage}"],
    "policy get": ["--url {down} --type SgxEnclave", "--url {wrong} --type SgxEnclave",
                   "--url {down} --type Nope", "--url localhost --type Tpm",
                   "--url {down} --type Tpm --admin-token-file {missing}",
                   "--url {down} --type Tpm --out {unwritable}"],
    "policy set": ["{missing} --url {down} --type Tpm", "{garbage} --url {down} --type Tpm",
                   "{text} --url {down} --type Tpm", "{policy} --url {wrong} --type Tpm",
                   "{policy} --url {down} --type Tpm --key {garbage} --cert {garbage}",
                   "{policy} --url {down} --type Tpm --key {missing}"],
    "policy reset": ["--url {down} --type Tpm", "--url {wrong} --type Tpm", "--type Tpm"],
    "policy history": ["--url {down} --type Tpm", "--url {wrong} --type Tpm",
                       "--url {down} --type Tpm --limit 0",
                       "--url {down} --type Tpm --oidc-token-file {dir}"],
    "policy rollback": ["abc --url {down} --type Tpm", "abc --url {wrong} --type Tpm",
                        "--url {down} --type Tpm"],
    "policy sign": ["{policy} --key {missing} --cert {missing}", "{policy} --key {garbage} --cert {garbage}",
                    "{text} --key {garbage} --cert {garbage}", "{policy} --key {text}",
                    "{policy} --key {garbage} --cert {garbage} --out {unwritable}"],
    "policy diff": ["{policy} --url {down} --type Tpm", "{policy} --url {wrong} --type Tpm",
                    "{garbage} --url {down} --type Tpm", "{missing} --url {down} --type Tpm"],
    "token show": ["{missing}", "{garbage}", "{token}", "a.b.c", "{dir}"],
    "token verify": ["{missing} --issuer {down}", "{garbage} --issuer {down}", "a.b.c --issuer {down}",
                     "{token} --issuer localhost:8080", "x.y.z --issuer {wrong}", "x.y.z --issuer {down}",
                     "a.b.c --issuer {down} --jwks {missing}", "a.b.c --issuer {down} --jwks {garbage}",
                     "a.b.c --issuer {down} --expect nonsense"],
    "keys list": ["--database-url {nodb}", "--database-url {baddb}", "--database-url mysql://x/y",
                  "--max-token-lifetime lots"],
    "keys rotate": ["--database-url {baddb}", "--database-url nonsense", "--bits 1024"],
    "collateral fetch": ["--fmspc 00906ED50000 --out {dir}/b.json --pcs-url {down} --retries 0",
                         "--fmspc 00906ED50000 --out {dir}/b.json --pcs-url {wrong} --retries 0",
                         "--fmspc nothex --out {dir}",
                         "--fmspc 00906ED50000 --out {dir} --pcs-url localhost"],
    "collateral import": ["{missing} --database-url {nodb}", "{garbage} --database-url {baddb}",
                          "{dir} --database-url {baddb}"],
    "collateral list": ["--database-url {nodb}", "--database-url {baddb}", "--at yesterday"],
    "certificates list": ["--url {down}", "--url {wrong}", "--url ftp://x"],
    "certificates add": ["{missing} --url {down} --key {garbage} --cert {garbage}",
                         "{garbage} --url {down} --key {garbage} --cert {garbage}", "--url {down}"],
    "certificates remove": ["{text} --url {wrong} --key {garbage} --cert {garbage}"],
}


def _leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix.strip()]
    out: list[str] = []
    for name, child in subs[0].choices.items():
        out += _leaf_commands(child, f"{prefix} {name}")
    return out


def test_every_command_is_driven() -> None:
    assert sorted(_leaf_commands(build_parser())) == sorted(CASES)


def _check(status: int, out: str, err: str, as_json: bool, argv: list[str]) -> None:
    shown = f"affidavit {' '.join(argv)}\nstdout: {out!r}\nstderr: {err!r}"
    assert status in (1, 2), shown
    assert "Traceback" not in out + err, shown
    assert "internal_error" not in out + err, shown  # every failure has a real code
    if as_json:
        doc = json.loads(out)
        assert isinstance(doc["error"]["code"], str) and isinstance(doc["error"]["message"], str), shown
        assert (doc["error"]["code"] == "usage") == (status == 2), shown
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), shown
        assert out == "", shown  # nothing announced or half-printed before the error
        assert lines[0].startswith("error: usage:") == (status == 2), shown


@pytest.mark.parametrize("command", sorted(CASES))
def test_failures_are_one_line_or_json(command: str, run: Run, f: dict[str, str]) -> None:
    for case in CASES[command]:
        argv = [*command.split(), *(a.format(**f) for a in case.split())]
        for as_json in (False, True):
            status, out, err = run(*argv, *(["--json"] if as_json else []))
            _check(status, out, err, as_json, argv)


def test_serve_names_a_busy_port_before_any_banner(run: Run, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, out, err = run("serve", "--data-dir", tmp_path, "--port", str(port))
    assert status == 1 and out == ""  # no banner: nothing was announced
    assert err.startswith(f"error: address_in_use: port {port} on 127.0.0.1 is already in use")
    assert "--port" in err


def test_a_real_process_prints_no_traceback(f: dict[str, str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for argv in (["attest", "sgx", "--url", "127.0.0.1:8443", "--quote", f["garbage"]],
                 ["serve", "--data-dir", f["dir"], "--tls-cert", "nope.pem", "--tls-key", "nope.pem"]):
        p = subprocess.run([sys.executable, "-m", "affidavit", *argv], capture_output=True, text=True,
                           env=env, timeout=60)
        assert p.returncode in (1, 2) and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "did you mean http://127.0.0.1:8443" in subprocess.run(
        [sys.executable, "-m", "affidavit", "attest", "sgx", "--url", "127.0.0.1:8443", "--quote", "x"],
        capture_output=True, text=True, env=env, timeout=60).stderr
