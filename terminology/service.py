"""``Terminology``: the one object the application builds (once, at start) for terminology: a
``Resolver`` over stored and built-in content, an ``Expander`` with the configured size limit,
and the two questions the search compiler asks for token ``:in`` / ``:not-in`` and ``:below`` /
``:above`` (resources.search.token.CodeSets)."""

from __future__ import annotations

from resources.errors import FhirError, Invalid
from terminology.builtin import Builtin
from terminology.errors import NotExpandable, TooCostly
from terminology.expand import Expander
from terminology.resolve import Find, Probe, Resolver

DEFAULT_MAX_EXPANSION = 10_000


class Terminology:
    def __init__(
        self,
        find: Find | None = None,
        *,
        max_expansion: int = DEFAULT_MAX_EXPANSION,
        builtin: Builtin | None = None,
        probe: Probe | None = None,
    ) -> None:
        self.resolver = Resolver(find, builtin, probe)
        self.expander = Expander(self.resolver, max_expansion)

    # -- for search (resources.search.token.CodeSets) --------------------------------------
    def value_set_codes(self, url: str) -> list[tuple[str, str]]:
        """(system, code) of every code in the value set ``url`` (``url|version``), for
        ``:in`` / ``:not-in``. Search errors are 400s: an unknown value set is a bad value."""
        try:
            vs = self.resolver.require("ValueSet", url)
            return list(self.expander.codes(vs))
        except FhirError as exc:
            raise _as_search_error(exc) from exc

    def hierarchy_codes(self, system: str, code: str, direction: str) -> list[str]:
        """``code`` and the codes below it (``direction="below"``) or above it (``"above"``)
        in the hierarchy of the code system ``system`` (``url|version`` allowed)."""
        try:
            cs = self.resolver.require_code_system(system)
            if cs.content in ("not-present", "supplement"):
                raise NotExpandable(
                    f"the code system {system} is known only by name here (content "
                    f"{cs.content}): its hierarchy is not held by this server"
                )
            concept = cs.require(code)
            if direction == "below":
                more = cs.descendants(concept.code)
            else:
                more = cs.ancestors(concept.code)
        except FhirError as exc:
            raise _as_search_error(exc) from exc
        codes = [concept.code, *more]
        if len(codes) > self.expander.max_size:
            raise _as_search_error(
                TooCostly(
                    f"{system}|{code} has {len(codes)} codes {direction} it, more than the "
                    f"server's HEARTH_MAX_EXPANSION_SIZE ({self.expander.max_size})"
                )
            )
        return codes


def _as_search_error(exc: FhirError) -> Invalid:
    """A search criterion that cannot be evaluated is a bad request (400), keeping the cause's
    issue code (not-found, too-costly, not-supported)."""
    return Invalid(exc.diagnostics, exc.issues)
