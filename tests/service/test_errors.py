"""The one error table (``service.errors``): every code any served layer raises maps to an MAA code and an
HTTP status. The codes are enumerated from the source (``code="..."`` arguments, ``fail("...", ...)``
helpers and class-level ``code = "..."``), so a new code is covered the day it is written."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from affidavit.errors import AffidavitError
from affidavit.service.errors import CODE_ROWS, LAYER_ROWS, ServiceError, classify

SRC = Path(__file__).resolve().parents[2] / "src" / "affidavit"
MAA_CODES = {"InvalidParameter", "InvalidOperation", "PolicyEvaluationError", "PolicyParsingError",
             "Unauthorized", "ServiceUnavailable", "RequestEntityTooLarge", "UnsupportedMediaType",
             "NotFound", "MethodNotAllowed", "Conflict", "TooManyRequests"}
# Served layers: the package each one's errors come from, and its error class.
LAYERS = {
    "evidence": "affidavit.evidence:EvidenceError",
    "collateral": "affidavit.collateral:CollateralError",
    "tokens": "affidavit.tokens:TokenError",
    "store": "affidavit.store:StoreError",
}
FAIL_HELPERS = {"fail", "_fail"}


def _literal_codes(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                if kw.arg == "code" and isinstance(value, str):
                    yield value
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in FAIL_HELPERS and node.args and isinstance(node.args[0], ast.Constant):
                if isinstance(node.args[0].value, str):
                    yield node.args[0].value
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets):
                if isinstance(node.value.value, str):
                    yield node.value.value


def codes_of(package: str) -> set[str]:
    found: set[str] = set()
    for path in sorted((SRC / package).rglob("*.py")):
        found.update(_literal_codes(ast.parse(path.read_text())))
    return found


def _cls(path: str) -> type[AffidavitError]:
    import importlib

    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AffidavitError)
    return cls


ALL = sorted((layer, code) for layer in LAYERS for code in codes_of(layer))


def test_codes_are_found() -> None:
    assert len(ALL) > 60  # the scan works: SGX, TPM, collateral, token and store codes
    assert ("evidence", "quote_signature_invalid") in ALL and ("tokens", "bad_certificate") in ALL


@pytest.mark.parametrize(("layer", "code"), ALL)
def test_every_layer_code_maps_to_an_maa_code(layer: str, code: str) -> None:
    status, maa = classify(_cls(LAYERS[layer])("m", code=code))
    assert maa in MAA_CODES
    outage = layer == "store" or (layer, code) == ("collateral", "collateral_unavailable")
    assert status == (503 if outage else 400)


def test_the_table() -> None:
    from affidavit.collateral import CollateralError
    from affidavit.evidence import EvidenceError
    from affidavit.evidence.tpm import TpmError
    from affidavit.policy import PolicyEvaluationError, PolicyParsingError
    from affidavit.store import StoreError
    from affidavit.tokens import TokenError

    assert classify(EvidenceError("m", code="quote_signature_invalid")) == (400, "InvalidParameter")
    assert classify(TpmError("m")) == (400, "InvalidParameter")
    # an unreachable upstream with nothing valid cached is an outage, not a bad quote (issue 11)
    assert classify(CollateralError("m", code="collateral_unavailable")) == (503, "ServiceUnavailable")
    assert classify(CollateralError("m", code="collateral_not_found")) == (400, "InvalidParameter")
    assert classify(PolicyParsingError("m")) == (400, "PolicyParsingError")
    assert classify(PolicyEvaluationError("m")) == (400, "PolicyEvaluationError")
    assert classify(StoreError("m", code="unavailable")) == (503, "ServiceUnavailable")
    for code in ("bad_certificate", "signer_expired", "signer_not_yet_valid"):  # a bad chain (maa-api §7.2)
        assert classify(TokenError("m", code=code)) == (400, "InvalidParameter")
    for code in ("malformed_jws", "bad_json", "bad_signature", "untrusted_signer", "missing_claim"):
        assert classify(TokenError("m", code=code)) == (400, "InvalidOperation")
    assert classify(ServiceError("m", code="Unauthorized", status=401)) == (401, "Unauthorized")
    assert classify(AffidavitError("m")) == (400, "InvalidParameter")


def test_no_stale_rows() -> None:
    by_path = {path: layer for layer, path in LAYERS.items()}
    for path, code in CODE_ROWS:
        assert (by_path[path], code) in ALL, f"{path} never raises {code!r}"
    for path, _status, _code in LAYER_ROWS:
        _cls(path)


def test_service_codes_are_maa_codes() -> None:
    """A ServiceError's code is what the client sees: MAA's vocabulary (``configuration`` stops the start
    and never reaches a client)."""
    for code in codes_of("service"):
        assert code in MAA_CODES | {"configuration"}, code
