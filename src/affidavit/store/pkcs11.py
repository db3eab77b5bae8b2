"""Signing keys that never leave a PKCS#11 token (an HSM; SoftHSM2 in tests), through python-pkcs11.

Keys are named by RFC 7512 URIs: ``pkcs11:token=LABEL;object=LABEL`` (path attributes, percent-encoded),
with the query attributes ``module-path=/path/to/module.so`` and ``pin-source=file:/path/to/pin`` (also
``--pkcs11-module`` / ``--pkcs11-pin-file``). The database stores a key's *location*: the URI's path
only (``pkcs11:token=...;object=...``), never a PIN or a module path, which belong to each server.

Private keys are generated on the token as sensitive and non-extractable (``CKA_SENSITIVE``,
``CKA_EXTRACTABLE`` false) and used only through ``C_Sign``: RS256 is ``CKM_SHA256_RSA_PKCS``, ES256 is
``CKM_ECDSA`` over the SHA-256 digest (raw ``r || s``, as JWS wants it). The key's ``x5c`` certificate
is signed by the token too (:func:`affidavit.tokens.keys.external_certificate`).

Every failure is a :class:`affidavit.store.StoreError` with code ``pkcs11`` and a one-line message.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from affidavit.store.errors import StoreError

_PIN_MAX_BYTES = 256
_libraries: dict[str, Any] = {}  # C_Initialize once per module and process
_libraries_lock = threading.Lock()


def _fail(message: str) -> StoreError:
    return StoreError(message, code="pkcs11")


def is_pkcs11_uri(text: str) -> bool:
    return text.lower().startswith("pkcs11:")


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI that Affidavit uses."""

    token: str
    object: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if not is_pkcs11_uri(text):
            raise _fail(f"not a PKCS#11 URI (pkcs11:token=...;object=...): {text!r}")
        path, _, query = text[len("pkcs11:"):].partition("?")
        attrs: dict[str, str] = {}
        for part in [p for p in path.split(";") if p] + [q for q in query.split("&") if q]:
            name, eq, value = part.partition("=")
            if not eq:
                raise _fail(f"PKCS#11 URI attribute without a value: {part!r}")
            attrs[name.strip().lower()] = unquote(value)
        unknown = set(attrs) - {"token", "object", "module-path", "pin-source", "type", "id"}
        if unknown:
            raise _fail(f"PKCS#11 URI attributes not supported: {', '.join(sorted(unknown))}")
        if attrs.get("type", "private") != "private":
            raise _fail("a signing key URI names a private key (type=private)")
        if not attrs.get("token"):
            raise _fail("the PKCS#11 URI names no token (token=LABEL)")
        return cls(attrs["token"], attrs.get("object") or None, attrs.get("module-path"),
            attrs.get("pin-source"))

    def location(self, object_label: str | None = None) -> str:
        """The path-only URI stored in the database for the key ``object_label`` (default: this one)."""
        label = object_label or self.object
        text = f"pkcs11:token={quote(self.token, safe='')}"
        return text + (f";object={quote(label, safe='')}" if label else "")


def read_pin(source: str | Path) -> str:
    """The PIN in a file (``file:/path`` or a path); one trailing newline is dropped."""
    text = str(source)
    path = Path(text[len("file:"):] if text.startswith("file:") else text)
    try:
        data = path.read_bytes()[: _PIN_MAX_BYTES + 1]
    except OSError as exc:
        raise _fail(f"cannot read the PKCS#11 PIN file {path}: {exc.strerror}") from None
    if len(data) > _PIN_MAX_BYTES:
        raise _fail(f"the PKCS#11 PIN file {path} is longer than {_PIN_MAX_BYTES} bytes")
    return data.decode("utf-8", "replace").rstrip("\r\n")


def _library(module_path: str) -> Any:
    import pkcs11

    with _libraries_lock:
        lib = _libraries.get(module_path)
        if lib is None:
            if not Path(module_path).is_file():
                raise _fail(f"PKCS#11 module {module_path} does not exist")
            try:
                lib = pkcs11.lib(module_path)
            except pkcs11.PKCS11Error as exc:
                reason = exc or type(exc).__name__
                raise _fail(f"cannot load PKCS#11 module {module_path}: {reason}") from None
            _libraries[module_path] = lib
        return lib


class Pkcs11Signer:
    """One private key on the token (a :class:`affidavit.tokens.KeySigner`)."""

    def __init__(self, token: Pkcs11Token, label: str, private: Any, public: rsa.RSAPublicKey |
                 ec.EllipticCurvePublicKey) -> None:
        self._token = token
        self.label = label
        self._private = private
        self._public = public

    @property
    def location(self) -> str:
        return self._token.uri.location(self.label)

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        import pkcs11

        with self._token.lock:  # one session: its operations must not interleave
            try:
                if isinstance(self._public, rsa.RSAPublicKey):
                    return bytes(self._private.sign(data, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS))
                return bytes(self._private.sign(hashlib.sha256(data).digest(),
                    mechanism=pkcs11.Mechanism.ECDSA))
            except pkcs11.PKCS11Error as exc:
                raise _fail(f"the token refused to sign with {self.location}: {type(exc).__name__}") from None


class Pkcs11Token:
    """A logged-in session on one token. ``uri`` gives the token label (and module/PIN source)."""

    def __init__(self, uri: Pkcs11Uri, *, module_path: str | None = None, pin: str | None = None) -> None:
        import pkcs11

        self.uri = uri
        self.lock = threading.RLock()
        module = uri.module_path or module_path
        if not module:
            raise _fail("no PKCS#11 module: give module-path= in the URI or --pkcs11-module")
        if pin is None:
            if uri.pin_source is None:
                raise _fail("no PKCS#11 PIN: give pin-source=file:... in the URI or --pkcs11-pin-file")
            pin = read_pin(uri.pin_source)
        lib = _library(module)
        try:
            token = lib.get_token(token_label=uri.token)
        except pkcs11.NoSuchToken:
            raise _fail(f"PKCS#11 token {uri.token!r} not found in {module}") from None
        except pkcs11.MultipleTokensReturned:
            raise _fail(f"more than one PKCS#11 token is labelled {uri.token!r}") from None
        except pkcs11.PKCS11Error as exc:
            raise _fail(f"cannot list the tokens of {module}: {type(exc).__name__}") from None
        try:
            self._session = token.open(rw=True, user_pin=pin)
        except pkcs11.PinIncorrect:
            raise _fail(f"wrong PIN for PKCS#11 token {uri.token!r}") from None
        except pkcs11.PinLocked:
            raise _fail(f"the PIN of PKCS#11 token {uri.token!r} is locked") from None
        except pkcs11.PKCS11Error as exc:
            raise _fail(f"cannot log in to PKCS#11 token {uri.token!r}: {type(exc).__name__}") from None
        self._signers: dict[str, Pkcs11Signer] = {}

    def signer(self, label: str) -> Pkcs11Signer:
        """The key labelled ``label`` (a private key with a public key or certificate of the same label)."""
        import pkcs11
        from pkcs11 import Attribute, ObjectClass

        with self.lock:
            known = self._signers.get(label)
            if known is not None:
                return known
            try:
                private = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
                public_obj = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
            except pkcs11.NoSuchKey:
                raise _fail(f"no key pair labelled {label!r} on PKCS#11 token {self.uri.token!r}") from None
            except pkcs11.MultipleObjectsReturned:
                raise _fail(f"more than one key labelled {label!r} on token {self.uri.token!r}") from None
            except pkcs11.PKCS11Error as exc:
                reason = type(exc).__name__
                raise _fail(f"cannot read key {label!r} on token {self.uri.token!r}: {reason}") from None
            public = _public_key(public_obj, label)
            if private[Attribute.EXTRACTABLE] or not private[Attribute.SENSITIVE]:
                raise _fail(f"key {label!r} on token {self.uri.token!r} is exportable: "
                            "signing keys must be sensitive and non-extractable")
            signer = Pkcs11Signer(self, label, private, public)
            self._signers[label] = signer
            return signer

    def signer_at(self, location: str) -> Pkcs11Signer:
        """The key a stored location names; it must be on this token."""
        uri = Pkcs11Uri.parse(location)
        if uri.token != self.uri.token or uri.object is None:
            raise _fail(f"key {location} is not on the configured token {self.uri.token!r}")
        return self.signer(uri.object)

    def generate(self, label: str, algorithm: str, bits: int = 2048) -> Pkcs11Signer:
        """A new key pair on the token, labelled ``label`` (sensitive, never extractable)."""
        import pkcs11
        from pkcs11 import Attribute, KeyType
        from pkcs11.util.ec import encode_named_curve_parameters

        private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                            Attribute.TOKEN: True, Attribute.PRIVATE: True}
        public_template: dict[Any, Any] = {Attribute.VERIFY: True, Attribute.TOKEN: True}
        with self.lock:
            try:
                self._session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
            except pkcs11.NoSuchKey:
                pass
            except pkcs11.PKCS11Error:
                raise _fail(f"a key labelled {label!r} exists on token {self.uri.token!r} already") from None
            else:
                raise _fail(f"a key labelled {label!r} exists on token {self.uri.token!r} already")
            try:
                if algorithm == "ES256":
                    public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters("secp256r1")
                    self._session.generate_keypair(KeyType.EC, store=True, label=label,
                                                   public_template=public_template,
                                                   private_template=private_template)
                else:
                    self._session.generate_keypair(KeyType.RSA, bits, store=True, label=label,
                                                   public_template=public_template,
                                                   private_template=private_template)
            except pkcs11.PKCS11Error as exc:
                raise _fail(f"the token could not generate a key: {type(exc).__name__}") from None
        return self.signer(label)

    def close(self) -> None:
        with self.lock:
            try:
                self._session.close()
            except Exception:  # noqa: BLE001 -- closing a session that is gone already
                pass


def _public_key(obj: Any, label: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    from pkcs11 import Attribute, KeyType

    if obj.key_type == KeyType.RSA:
        n = int.from_bytes(obj[Attribute.MODULUS], "big")
        e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if obj.key_type == KeyType.EC:
        point = bytes(obj[Attribute.EC_POINT])
        if len(point) == 67 and point[:2] == b"\x04\x41":  # DER OCTET STRING around the point
            point = point[2:]
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError:
            raise _fail(f"key {label!r} is not an EC P-256 key") from None
    raise _fail(f"key {label!r} is neither RSA nor EC")
