"""Terminology (FHIR R4 terminology-service.html): CodeSystems, ValueSets and ConceptMaps and
their operations, as pure functions over the resources.

| module | what |
|---|---|
| ``codesystem.py`` | a CodeSystem compiled for lookups: concepts by code, hierarchy, subsumption |
| ``builtin.py`` | the R4 CodeSystems and ValueSets shipped in ``data/`` (loaded on first use) |
| ``resolve.py`` | canonical ``url|version`` resolution: stored resources first, then built-in |
| ``expand.py`` | ValueSet expansion: compose include/exclude, filters, imports, parameters |
| ``lookup.py`` | $lookup and $subsumes results |
| ``validate.py`` | $validate-code on a CodeSystem or a ValueSet |
| ``translate.py`` | ConceptMap $translate |
| ``service.py`` | ``Terminology``: what the application builds once, and the search hook |
| ``errors.py`` | too-costly, not-expandable, unknown canonical |

This package may use ``resources`` (its error types) but never storage: stored CodeSystems,
ValueSets and ConceptMaps come in through a ``find(res_type, query)`` callback.
"""

from terminology.service import Terminology

__all__ = ["Terminology"]
