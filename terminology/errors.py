"""The terminology failures, as the typed errors of ``resources.errors`` (the HTTP edge maps each
to its status by class): an expansion past the configured size is ``too-costly`` (422), a value
set that cannot be expanded (a code system this server does not hold, a filter it cannot
evaluate) is ``not-supported`` (422), an unknown canonical is ``not-found`` (404)."""

from __future__ import annotations

from resources.errors import NotFound, Unprocessable


class TooCostly(Unprocessable):
    """The expansion would hold more codes than the server is configured to produce."""

    issue_code = "too-costly"


class NotExpandable(Unprocessable):
    """The value set cannot be expanded here (valueset-operations.html#expand)."""

    issue_code = "not-supported"


class UnknownCanonical(NotFound):
    """No CodeSystem / ValueSet / ConceptMap with this canonical URL (and version)."""
