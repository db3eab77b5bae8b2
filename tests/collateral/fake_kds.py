"""A stand-in for AMD KDS on a free loopback port, serving a simulated AMD PKI with KDS's paths."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from affidavit.simulate.snp import SimulatedAmdPki, SimulatedVek


class FakeKds:
    """``/vcek/v1/{product}/{hwid}?...``, ``/{vcek|vlek}/v1/{product}/cert_chain`` and ``/crl``.
    ``calls`` counts requests by kind; ``throttle`` answers 429 with ``Retry-After``."""

    def __init__(self, pki: SimulatedAmdPki) -> None:
        self.pki = pki
        self.veks: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        self.crl: bytes | None = pki.crl([])
        self.calls: Counter[str] = Counter()
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.throttle: int | None = None
        self.delay = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def add(self, vek: SimulatedVek) -> None:
        hw = vek.chip_id[:8] if self.pki.product == "Turin" else vek.chip_id
        params = {"blSPL": vek.tcb.bootloader, "teeSPL": vek.tcb.tee, "snpSPL": vek.tcb.snp,
                  "ucodeSPL": vek.tcb.microcode}
        if self.pki.product == "Turin":
            params["fmcSPL"] = vek.tcb.fmc
        self.veks[(hw.hex(), tuple(sorted((k, str(v)) for k, v in params.items())))] = vek.der

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        parts = path.strip("/").split("/")
        if self.throttle is not None:
            return 429, b"", {"Retry-After": str(self.throttle)}
        if len(parts) != 4 or parts[1] != "v1" or parts[2] != self.pki.product:
            return 404, b"", {}
        kind, _, _, leaf = parts
        if leaf == "cert_chain":
            self.calls[f"{kind}_chain"] += 1
            body = self.pki.cert_chain_vlek if kind == "vlek" else self.pki.cert_chain_vcek
            return 200, body, {"Content-Type": "application/x-pem-file"}
        if leaf == "crl":
            self.calls["crl"] += 1
            return (200, self.crl, {}) if self.crl is not None else (404, b"", {})
        self.calls["vcek"] += 1
        found = self.veks.get((leaf, tuple(sorted(query.items()))))
        return (200, found, {}) if found is not None else (404, b"", {})

    def start(self) -> str:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with outer._lock:
                    outer.queries.append((url.path, query))
                    status, body, headers = outer._answer(url.path, query)
                time.sleep(outer.delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
