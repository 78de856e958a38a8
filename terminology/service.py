"""``Terminology``: the one object the application builds (once, at start) for terminology: a
``Resolver`` over stored and built-in content, an ``Expander`` with the configured size limit,
and the two questions the search compiler asks for token ``:in`` / ``:not-in`` and ``:below`` /
``:above`` (resources.search.token.CodeSets)."""

from __future__ import annotations

from resources.errors import FhirError, Invalid
from terminology.builtin import Builtin
from terminology.expand import Expander
from terminology.resolve import Find, Resolver

DEFAULT_MAX_EXPANSION = 10_000


class Terminology:
    def __init__(
        self,
        find: Find | None = None,
        *,
        max_expansion: int = DEFAULT_MAX_EXPANSION,
        builtin: Builtin | None = None,
    ) -> None:
        self.resolver = Resolver(find, builtin)
        self.expander = Expander(self.resolver, max_expansion)

    # -- for search (resources.search.token.CodeSets) --------------------------------------
    def value_set_codes(self, url: str) -> list[tuple[str, str]]:
        """(system, code) of every code in the value set ``url`` (``url|version``), for
        ``:in`` / ``:not-in``. Search errors are 400s: an unknown value set is a bad value."""
        try:
            vs = self.resolver.require("ValueSet", url)
            return list(self.expander.codes(vs))
        except FhirError as exc:
            raise _as_search_error(exc, "ValueSet") from exc

    def hierarchy_codes(self, system: str, code: str, direction: str) -> list[str]:
        """``code`` and the codes below it (``direction="below"``) or above it (``"above"``)
        in the hierarchy of the code system ``system`` (``url|version`` allowed)."""
        try:
            cs = self.resolver.require_code_system(system)
            concept = cs.get(code)
            if concept is None:
                raise Invalid(f"code {code!r} is not defined in the code system {system}")
            more = (
                cs.descendants(concept.code) if direction == "below" else cs.ancestors(concept.code)
            )
        except FhirError as exc:
            raise _as_search_error(exc, "CodeSystem") from exc
        codes = [concept.code, *more]
        if len(codes) > self.expander.max_size:
            raise Invalid(
                f"{system}|{code} has {len(codes)} codes {direction} it, more than the "
                f"server's HEARTH_MAX_EXPANSION_SIZE ({self.expander.max_size})",
            )
        return codes


def _as_search_error(exc: FhirError, what: str) -> FhirError:
    """A search criterion that cannot be evaluated is a bad request (400) with the cause's
    issue code (not-found, too-costly, not-supported)."""
    err = Invalid(exc.diagnostics, exc.issues)
    return err
