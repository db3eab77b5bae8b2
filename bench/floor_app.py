"""The stack's own floor for ``POST /attest/SgxEnclave``: a minimal ASGI app on the service's stack.

bench/attest.py runs it after the real server, in the same run and with the same requests, clients and
worker model (one uvicorn + httptools + uvloop process per core, each with its own SO_REUSEPORT socket),
so the bench can say how far the service is from what this stack costs at the least. It does only the
work no attestation service can skip, with the fastest codecs the service has (orjson, pybase64):
parse the JSON body, base64-decode the quote and runtime data, one
ECDSA P-256 verification (the quote's signature by its attestation key; the key object is kept per key,
as the service keeps it), the runtime-data binding (SHA-256 against REPORTDATA), a claim set the size of
the service's token (the SGX claims, collateral hashes, lifetime, a random ``jti``), sorted JSON, RS256
(or ES256) on the event loop, and ``{"token": ...}``. No policy, no PCK chain or collateral checks, no
request id, logs or metrics: it is a yardstick, never a server. ``GET`` answers 200 (the bench's
readiness probe).

    python bench/floor_app.py --port P [--workers N] [--algorithm RS256|ES256]
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import os
import sys
import time
from typing import Any

import orjson
import pybase64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ALGORITHM = os.environ.get("FLOOR_APP_ALGORITHM", "RS256")
_HEADER, _BODY = 48, 384  # SGX quote v3: header, then the report body, then the signature data


def _b64(text: str) -> bytes:
    raw = text.encode("ascii")
    return pybase64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)


def _b64url(data: bytes) -> str:
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Floor:
    """One worker's key and caches."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        if algorithm == "ES256":
            self.ec_key = ec.generate_private_key(ec.SECP256R1())
        else:
            self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        header = {"alg": algorithm, "jku": "http://127.0.0.1/certs", "kid": "floor", "typ": "JWT"}
        self.header = _b64url(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))
        self.keys: dict[bytes, ec.EllipticCurvePublicKey] = {}
        digest = hashlib.sha256(b"collateral").hexdigest()
        self.collateral = {name: digest for name in ("qeidcertshash", "qeidcrlhash", "qeidhash",
                                                      "tcbinfocertshash", "tcbinfocrlhash", "tcbinfohash")}

    def sign(self, data: bytes) -> bytes:
        if self.algorithm == "ES256":
            from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

            r, s = decode_dss_signature(self.ec_key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def token(self, body: bytes) -> bytes | None:
        """The token for one request body, or None when its quote or binding does not verify."""
        obj = orjson.loads(body)
        quote = _b64(obj["quote"])
        runtime = _b64(obj["runtimeData"]["data"])
        signed, sig_data = quote[: _HEADER + _BODY], quote[_HEADER + _BODY + 4:]
        signature, raw_key = sig_data[:64], sig_data[64:128]
        key = self.keys.get(raw_key)
        if key is None:
            key = self.keys[raw_key] = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b"\x04" + raw_key)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = encode_dss_signature(r, s)
        try:
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        except Exception:  # noqa: BLE001 -- InvalidSignature: refused
            return None
        report = quote[_HEADER:_HEADER + _BODY]
        if hashlib.sha256(runtime).digest() != report[320:352]:
            return None
        now = int(time.time())
        collateral = {**self.collateral, "quotehash": hashlib.sha256(quote).hexdigest()}
        ehd = _b64url(runtime)
        identity = {"is-debuggable": bool(report[48] & 2),
                    "product-id": int.from_bytes(report[256:258], "little"),
                    "sgx-mrenclave": report[64:96].hex(), "sgx-mrsigner": report[128:160].hex(),
                    "svn": int.from_bytes(report[258:260], "little"), "tee": "sgx"}
        claims: dict[str, Any] = {
            **identity, "aas-ehd": ehd, "maa-ehd": ehd, "x-ms-sgx-ehd": ehd,
            "maa-attestationcollateral": collateral, "x-ms-sgx-collateral": collateral,
            "x-ms-attestation-type": "sgx", "x-ms-policy": identity, "x-ms-policy-hash": "floor",
            "x-ms-sgx-advisory-ids": [], "x-ms-sgx-is-debuggable": identity["is-debuggable"],
            "x-ms-sgx-mrenclave": identity["sgx-mrenclave"], "x-ms-sgx-mrsigner": identity["sgx-mrsigner"],
            "x-ms-sgx-product-id": identity["product-id"], "x-ms-sgx-svn": identity["svn"],
            "x-ms-sgx-report-data": report[320:384].hex(), "x-ms-sgx-tcb-status": "UpToDate",
            "x-ms-ver": "1.0", "iss": "http://127.0.0.1", "jti": os.urandom(32).hex(),
            "iat": now, "nbf": now, "exp": now + 28800,
        }
        text = self.header + "." + _b64url(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
        token = text + "." + _b64url(self.sign(text.encode("ascii")))
        return b'{"token":"' + token.encode("ascii") + b'"}'


_floor: Floor | None = None
_JSON = [(b"content-type", b"application/json; charset=utf-8")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app (module docstring)."""
    global _floor
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    if _floor is None:
        _floor = Floor(ALGORITHM)
    status, out = 200, b"{}"
    if scope["method"] == "POST":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            token = _floor.token(b"".join(chunks))
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
            token = None
        status, out = (200, token) if token is not None else (400, b'{"error":"refused"}')
    headers = [*_JSON, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--algorithm", default="RS256", choices=("RS256", "ES256"))
    args = parser.parse_args()
    os.environ["FLOOR_APP_ALGORITHM"] = args.algorithm  # read by the spawned workers at import
    from affidavit.service.workers import run_workers

    options = {"app": "floor_app:app", "http": "httptools", "loop": "uvloop", "log_level": "warning",
               "access_log": False, "server_header": False, "lifespan": "on"}
    return run_workers(args.workers, "127.0.0.1", args.port, options)


if __name__ == "__main__":
    sys.exit(main())
