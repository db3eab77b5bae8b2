"""The store layer's single error type."""

from __future__ import annotations

from affidavit.errors import AffidavitError


class StoreError(AffidavitError):
    """Persistence failed. Codes: ``bad_url``, ``unavailable`` (cannot connect/open), ``conflict`` (a
    uniqueness rule refused the change), ``schema_too_new``, ``database_error``, ``not_found``."""

    code = "store_error"


def unavailable(message: str) -> StoreError:
    """The ``unavailable`` error (the database cannot be reached), for readers outside the store that
    serve cached values through an outage (``service.outage``)."""
    return StoreError(message, code="unavailable")
