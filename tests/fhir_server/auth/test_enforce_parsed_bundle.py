"""The authorization checks a Bundle's entries as parsed once (``FhirRequest.bundle``, set by
``gate.run``): it does not parse them again, and it refuses an entry the scopes do not allow."""

from __future__ import annotations

import pytest

from fhir_server.auth import enforce
from fhir_server.auth.scopes import Scopes
from fhir_server.rest.context import Access
from resources.errors import Forbidden
from resources.storage import transaction

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Observation/1"}},
    ],
}


def test_entries_are_authorized_as_parsed(monkeypatch):
    parsed = transaction.parse_bundle(BUNDLE)

    def no_second_parse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the entries were parsed again")

    monkeypatch.setattr(transaction, "parse_entry", no_second_parse)
    monkeypatch.setattr(transaction, "parse_entries", no_second_parse)
    allowed = Access("c", Scopes.parse("system/Patient.c system/Observation.d"))
    enforce._bundle(allowed, parsed)
    refused = Access("c", Scopes.parse("system/Patient.c"))
    with pytest.raises(Forbidden, match=r"Bundle.entry\[1\]"):
        enforce._bundle(refused, parsed)
    enforce._bundle(refused, None)  # not a Bundle: the interaction answers it
