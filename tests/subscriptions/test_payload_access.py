"""Which notifications carry the resource (SMART ``r``) and which only its id (``s`` without
``r``): the owner filter a Subscription stores (``enforce.search_security`` ->
``outbox.owner_json``) and ``outbox.content_allowed`` on it. No server: the rules alone."""

from __future__ import annotations

import pytest

from fhir_server.auth.enforce import search_security
from fhir_server.auth.scopes import Scopes
from fhir_server.rest.context import Access
from resources.subscriptions.outbox import (
    content_allowed,
    owner_hash,
    owner_json,
    owner_security,
    payload_content,
)


def owner(scope: str, patient: str | None = None, role: str | None = None) -> dict | None:
    access = Access("app", Scopes.parse(scope), role=role, patient=patient)
    stored = owner_json(search_security(access, None))
    assert owner_json(owner_security(stored)) == stored  # what is stored reads back the same
    return stored


@pytest.mark.parametrize(
    ("scope", "patient", "res_type", "full"),
    [
        ("system/Observation.rs", None, "Observation", True),
        ("system/Observation.s", None, "Observation", False),  # may search, not read: id-only
        ("system/*.s system/Observation.r", None, "Observation", True),
        ("system/*.s system/Observation.r", None, "Task", False),
        ("system/Observation.read", None, "Observation", True),  # v1 read = rs
        ("patient/Observation.rs", "p1", "Observation", True),
        ("patient/Observation.s", "p1", "Observation", False),
        ("patient/*.s patient/Observation.r", "p1", "Observation", True),
        ("patient/*.s patient/Observation.r", "p1", "Task", False),
        # found beyond the compartment (user-level search), readable only inside it: the match
        # did not check the compartment, so the payload stays id-only
        ("user/Observation.s patient/Observation.r", "p1", "Observation", False),
        ("user/Observation.rs", "p1", "Observation", True),
    ],
)
def test_content_needs_read_reaching_as_far_as_the_match(scope, patient, res_type, full):
    assert content_allowed(owner(scope, patient, "doctor" if patient else None), res_type) is full


def test_owner_filters_without_a_narrower_read_are_stored_as_before():
    # no "content" key unless read reaches less far: the owner keys (and the live views
    # shared by them) of every existing kind of token stay what they were
    for scope in ("system/*.rs", "user/Observation.rs user/Task.cruds", "patient/*.read"):
        stored = owner(scope, "p1" if scope.startswith("patient") else None)
        assert stored is not None and "content" not in stored
    narrow = owner("system/Observation.s")
    assert narrow is not None and narrow["content"]["types"] == []
    assert owner_hash(narrow) != owner_hash(owner("system/Observation.rs"))
    assert content_allowed(None, "Observation")  # an operator's (no filter): everything


def test_payload_content_is_what_was_asked_never_more_than_the_owner_reads():
    reader, searcher = owner("system/Observation.rs"), owner("system/Observation.s")
    for asked in ("empty", "id-only", "full-resource"):
        assert payload_content(asked, reader, "Observation") == asked
    assert payload_content("full-resource", searcher, "Observation") == "id-only"
    assert payload_content("id-only", searcher, "Observation") == "id-only"
    assert payload_content("empty", searcher, "Observation") == "empty"
