"""HTTP client for a running service's management API: policies (MAA's GET/PUT/reset, Affidavit's history
and shadow diff) and policy management certificates.

MAA answers management calls with a PolicyResult JWT; this client decodes it (the TLS connection, not
the token, is what authenticates the service here) and returns its claims. Any non-200 answer is a
:class:`ServiceRejected` with the service's own code; an answer that is not the service's JSON (another
server on that port) is ``bad_response``; no answer at all is ``unreachable``.
"""

from __future__ import annotations

from typing import Any

import httpx

from affidavit.client import ClientError, ServiceRejected
from affidavit.client.http import error_of
from affidavit.ssl_verify import VerifyArg, ssl_verify

API_VERSION = "2022-08-01"


class ManagementClient:
    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        verify: VerifyArg = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "affidavit-cli"}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.Client(verify=ssl_verify(verify), timeout=timeout, headers=headers,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, content: str | None = None, media: str = "text/plain",
              params: dict[str, Any] | None = None) -> Any:
        query = {"api-version": API_VERSION, **(params or {})}
        headers = {"Content-Type": media} if content is not None else {}
        try:
            response = self._http.request(method, self.url + path, params=query, content=content,
                                          headers=headers)
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}", code="unreachable") from None
        if response.status_code != 200:
            code, message = error_of(response)
            if response.status_code == 401:
                message += " (pass --admin-token-file, e.g. the service's <data-dir>/admin-token)"
            raise ServiceRejected(response.status_code, code, message)
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"{self.url}{path} answered with something other than JSON: is this an Affidavit service?",
                code="bad_response",
            ) from None

    def _result(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call answered ``{"token": PolicyResult JWT}``: the token's claims."""
        from affidavit.relying_party import RelyingPartyError, decode_unverified

        answer = self._call(method, path, **kwargs)
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise ClientError(f"{self.url}{path} answered without a token", code="bad_response")
        try:
            return decode_unverified(token).claims
        except RelyingPartyError as exc:
            raise ClientError(f"{self.url}{path} answered a malformed token: {exc.message}",
                              code="bad_response") from None

    # -- policies --------------------------------------------------------------------------------------

    def get_policy(self, att_type: str) -> dict[str, Any]:
        return self._result("GET", f"/policies/{att_type}")

    def set_policy(self, att_type: str, jws: str) -> dict[str, Any]:
        return self._result("PUT", f"/policies/{att_type}", content=jws)

    def reset_policy(self, att_type: str, jws: str) -> dict[str, Any]:
        return self._result("POST", f"/policies/{att_type}:reset", content=jws)

    def history(self, att_type: str, *, limit: int | None = None, hash_: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = str(limit)
        if hash_ is not None:
            params["hash"] = hash_
        answer = self._call("GET", f"/policies/{att_type}/history", params=params)
        if not isinstance(answer, dict) or not isinstance(answer.get("history"), list):
            raise ClientError(f"{self.url} sent no policy history", code="bad_response")
        return answer

    def diff(self, att_type: str, text: str) -> dict[str, Any]:
        answer = self._call("POST", f"/policies/{att_type}:diff", content=text)
        if not isinstance(answer, dict) or not isinstance(answer.get("flipped"), list):
            raise ClientError(f"{self.url} sent no policy diff", code="bad_response")
        return answer

    # -- policy management certificates ----------------------------------------------------------------

    def certificates(self) -> dict[str, Any]:
        return self._result("GET", "/certificates")

    def modify_certificate(self, jws: str, *, add: bool) -> dict[str, Any]:
        import json

        path = "/certificates:add" if add else "/certificates:remove"
        return self._result("POST", path, content=json.dumps(jws), media="application/json")

