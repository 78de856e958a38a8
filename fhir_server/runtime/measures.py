"""The Measures Hearth ships (``workflow/data/measures/``: the screening programme's figures,
docs/analytics.md) stored as ``Measure`` resources by ``hearth db upgrade``, so that they are read,
searched and evaluated (``Measure/[id]/$evaluate-measure``) like any other Measure."""

from __future__ import annotations

from fhir_server.rest.context import Context
from resources.errors import Gone, NotFound
from resources.storage.repository import Unit
from workflow.analytics import shipped


def store_measures(ctx: Context) -> int:
    """Store each shipped Measure under its own id (``Measure/screening-volume``) unless a
    resource with that id exists or existed (one deleted on purpose stays deleted; one changed
    here is not overwritten) — as ``store_core_profiles`` does for the R4 core profiles. Returns
    how many were stored; running it again stores none."""
    stored = 0
    for res_id, measure in shipped().items():

        def store(u: Unit, measure: dict = measure, res_id: str = res_id) -> bool:
            try:
                u.read("Measure", res_id)
            except Gone:
                return False
            except NotFound:
                u.update("Measure", res_id, measure)
                return True
            return False

        if ctx.repo.run(store):
            stored += 1
    return stored
