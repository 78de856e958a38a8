"""Scope narrowing to a role's ceiling: never wider than either side, and a wildcard request keeps
the specific types the ceiling allows."""

from __future__ import annotations

from fhir_server.auth.scopes import Scopes


def test_wildcard_request_keeps_the_ceilings_specific_grants():
    ceiling = Scopes.parse("user/*.rs user/Task.cu user/Observation.cu")
    granted = Scopes.parse("user/*.cruds").narrowed(ceiling)
    assert granted.within(ceiling) and granted.within(Scopes.parse("user/*.cruds"))
    assert granted.contexts_for("Task", "c") and granted.contexts_for("Task", "r")
    assert not granted.contexts_for("Task", "d")
    assert not granted.contexts_for("Patient", "c")


def test_narrowing_never_widens_a_specific_request():
    ceiling = Scopes.parse("user/*.cruds")
    granted = Scopes.parse("user/Observation.rs").narrowed(ceiling)
    assert granted.contexts_for("Observation", "r")
    assert not granted.contexts_for("Observation", "c")
    assert not granted.contexts_for("Patient", "r")
