"""The attestation service: MAA's REST API over Starlette, served by uvicorn (``affidavit serve``).

Modules: ``config`` (:class:`ServiceConfig`), ``state`` (:class:`ServiceState`, built once per worker),
``app`` (:func:`create_app`, routing, error mapping), ``decode`` (bounded bodies, base64, request
shapes), ``pipeline`` (evidence → claims → policy → token claims), ``attest``, ``policies``,
``certificates``, ``metadata`` (the endpoints), ``common`` (auth, types, signing), ``errors``
(:class:`ServiceError`, MAA's ``{"error":{"code","message"}}``), ``tls`` (self-signed certificates).

Shared state, for endpoints written elsewhere (the TPM protocol's ``affidavit.service.tpm_route``):
every request reaches ``request.app.state.affidavit``, a :class:`ServiceState` with

- ``config``: the :class:`ServiceConfig` (``mode``, ``max_body_bytes``, ``data_dir``, ...);
- ``store``: the ``affidavit.store.Store`` (``get_policy(type)`` etc.);
- ``keyring()``: the current ``affidavit.tokens.KeyRing`` (``.current`` signs);
- ``compiler``: an ``affidavit.policy.PolicyCompiler`` (``.compile(text)``, cached by hash);
- ``verifier``, ``collateral``: the DCAP verifier and the collateral provider;
- ``tpm_verifier``: the TPM verifier over the configured AK trust, shared by request threads;
- ``clock()`` (real time) and ``evidence_clock()`` (``--evidence-time`` or real time);
- ``issuer`` and ``jku`` (``issuer + "/certs"``); ``admin_token``.

Helpers for such endpoints: ``affidavit.service.common`` (``state_of(request)``, ``sign(state, claims)``,
``sign_in_thread`` (the same, from async handlers), ``attestation_type``), ``affidavit.service.decode``
(``read_body(request, state.config.max_body_bytes)``, ``check_api_version``, ``require_media``,
``parse_json``, ``b64decode_lenient``), ``affidavit.service.policies.stored_policy_choice(state, "Tpm")``
(the policy text in force and its signer). Raise :class:`ServiceError` (``status``, MAA ``code``) or any
layer's ``AffidavitError``; the app maps it to MAA's error body. The store is synchronous: async handlers
call it through ``starlette.concurrency.run_in_threadpool``, never on the event loop. ``/attest/Tpm`` is
routed to ``tpm_route.attest_tpm`` when that module exists.
"""

from affidavit.service.config import ServiceConfig
from affidavit.service.errors import ServiceError

__all__ = ["ServiceConfig", "ServiceError", "ServiceState", "create_app"]


def __getattr__(name: str) -> object:
    # create_app and ServiceState pull in Starlette and every layer: import them on first use.
    if name == "create_app":
        from affidavit.service.app import create_app

        return create_app
    if name == "ServiceState":
        from affidavit.service.state import ServiceState

        return ServiceState
    raise AttributeError(name)
