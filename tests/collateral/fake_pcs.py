"""A stand-in for Intel PCS on a free loopback port, serving real collateral with PCS's real headers.

Responses are rebuilt from collateral in the offline JSON form: the TCB Info body is
``{"tcbInfo":<exact signed text>,"signature":"<hex>"}`` with the URL-encoded issuer chain in
``TCB-Info-Issuer-Chain`` (``SGX-TCB-Info-Issuer-Chain`` for TCB Info v2, as the v3 API sent it), and so
on. Faults are switched on per endpoint: slow, down (503), garbage, a bad signature, a wrong FMSPC;
serving an older document is a matter of loading it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

TCB = "tcb"
QE = "qe"
PCK_CRL = "pckcrl"
ROOT_CRL = "rootcacrl"
_CRL_TYPE = "application/pkix-crl"


def pcs_body(field: str, text: str, signature: str) -> bytes:
    """A PCS v4 body for a signed document: the exact signed text and the hex signature."""
    return ('{"' + field + '":' + text + ',"signature":"' + signature + '"}').encode()


class FakePcs:
    """Serves loaded collateral; ``calls`` counts requests per endpoint (``tcb``, ``qe``, ...)."""

    def __init__(self) -> None:
        self.tcb: dict[tuple[str, str], tuple[str, str, str]] = {}  # (tee, FMSPC) -> text, sig, chain
        self.qe: dict[str, tuple[str, str, str]] = {}  # tee -> text, sig, chain
        self.pck_crl: dict[str, tuple[bytes, str]] = {}  # ca -> DER, chain
        self.root_crl: bytes | None = None
        self.faults: dict[str, str] = {}  # endpoint -> "down" | "garbage" | "bad_signature" | "wrong_fmspc"
        self.delay = 0.0
        self.flaky: Counter[str] = Counter()  # endpoint -> how many 503s to answer before serving again
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

    # --- content ---------------------------------------------------------------------------------

    def load(self, collateral: dict[str, Any], ca: str) -> None:
        """Serve the items of one collateral object (offline JSON form) issued for a ``ca`` PCK CA."""
        tcb = json.loads(collateral["tcb_info"])
        qe = json.loads(collateral["qe_identity"])
        tee = str(tcb.get("id", "SGX")).lower()
        self.tcb[(tee, tcb["fmspc"].upper())] = (
            collateral["tcb_info"],
            collateral["tcb_info_signature"],
            collateral["tcb_info_issuer_chain"],
        )
        self.qe["tdx" if qe["id"] == "TD_QE" else "sgx"] = (
            collateral["qe_identity"],
            collateral["qe_identity_signature"],
            collateral["qe_identity_issuer_chain"],
        )
        self.pck_crl[ca] = (bytes.fromhex(collateral["pck_crl"]), collateral["pck_crl_issuer_chain"])
        self.root_crl = bytes.fromhex(collateral["root_ca_crl"])

    # --- server ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL; it stays the same after :meth:`stop` (connections are then refused)."""
        assert self._url, "start() first"
        return self._url

    def start(self) -> FakePcs:
        pcs = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                pcs._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    # --- request handling ------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        segments = parts.path.strip("/").split("/")
        endpoint, tee = self._route(segments)
        with self._lock:
            self.calls[endpoint] += 1
            self.requests.append((parts.path, query, dict(h.headers.items())))
        if self.delay:
            time.sleep(self.delay)
        fault = self.faults.get(endpoint) or self.faults.get("*")
        with self._lock:
            if self.flaky[endpoint] > 0:
                self.flaky[endpoint] -= 1
                fault = "down"
        if fault == "down":
            return self._send(h, 503, b"", {"Error-Code": "ServiceUnavailable"})
        if fault == "garbage":
            return self._send(h, 200, b"\x00<html>gateway says hello</html>", {})
        try:
            status, body, headers = self._answer(endpoint, tee, query, fault)
        except KeyError:
            status, body, headers = 404, b"", {"Error-Code": "NotFound"}
        self._send(h, status, body, headers)

    @staticmethod
    def _route(segments: list[str]) -> tuple[str, str]:
        # /{sgx,tdx}/certification/v4/{tcb, qe/identity, pckcrl, rootcacrl}
        if len(segments) >= 4 and segments[1:3] == ["certification", "v4"]:
            rest = "/".join(segments[3:])
            names = {"tcb": TCB, "qe/identity": QE, "pckcrl": PCK_CRL, "rootcacrl": ROOT_CRL}
            if rest in names:
                return names[rest], segments[0]
        return "unknown", ""

    def _answer(
        self, endpoint: str, tee: str, query: dict[str, list[str]], fault: str | None
    ) -> tuple[int, bytes, dict[str, str]]:
        if endpoint == TCB:
            fmspc = query["fmspc"][0].upper()
            if fault == "wrong_fmspc":  # another platform's (genuine, validly signed) TCB Info
                fmspc = next(f for (t, f) in self.tcb if t == tee and f != fmspc)
            text, sig, chain = self.tcb[(tee, fmspc)]
            header = "TCB-Info-Issuer-Chain" if '"id"' in text else "SGX-TCB-Info-Issuer-Chain"
            return 200, self._signed("tcbInfo", text, sig, fault), {header: quote(chain, safe="")}
        if endpoint == QE:
            text, sig, chain = self.qe[tee]
            body = self._signed("enclaveIdentity", text, sig, fault)
            return 200, body, {"SGX-Enclave-Identity-Issuer-Chain": quote(chain, safe="")}
        if endpoint == PCK_CRL:
            der, chain = self.pck_crl[query["ca"][0]]
            if fault == "bad_signature":
                der = der[:-8] + bytes(b ^ 0x55 for b in der[-8:])
            headers = {"SGX-PCK-CRL-Issuer-Chain": quote(chain, safe=""), "Content-Type": _CRL_TYPE}
            return 200, der, headers
        if endpoint == ROOT_CRL and self.root_crl is not None:
            return 200, self.root_crl.hex().encode(), {}  # a PCCS answers with hex text
        raise KeyError(endpoint)

    @staticmethod
    def _signed(field: str, text: str, sig: str, fault: str | None) -> bytes:
        if fault == "bad_signature":
            sig = sig[:-2] + format(int(sig[-2:], 16) ^ 1, "02x")
        return pcs_body(field, text, sig)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            h.send_response(status)
            h.send_header("Request-ID", "fake-pcs")
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass
