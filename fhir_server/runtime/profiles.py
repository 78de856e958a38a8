"""Wiring of profile validation into a running Hearth: the registry of StructureDefinitions by
canonical URL (those stored on this server, found through the repository's search, before the R4
core profiles and extension definitions shipped in ``resources/data``), value-set membership for
required and extensible bindings through the terminology service, the profile checks of
``$validate`` and, with ``HEARTH_ENFORCE_PROFILES``, the write hook that refuses a resource
breaking a profile its ``meta.profile`` declares; and the storing of the core profiles as
``StructureDefinition`` resources (``hearth db upgrade``), so that they are read and searched
like any other."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from fhir_server.rest.context import Context
from fhir_server.runtime import terminology
from resources.errors import FhirError, Gone, Issue, NotFound, Unprocessable
from resources.storage.repository import Unit, WriteResult
from resources.validation import (
    CORE_FILES,
    Sources,
    base_definition_type,
    core_profiles,
    nested_resources,
    resource_types,
    validate_profile,
)
from terminology import Terminology
from terminology.builtin import Builtin
from terminology.resolve import Resolver

EXPANSIONS_KEPT = 128


class Profiles:
    """StructureDefinitions by canonical URL and the validation of a resource against them."""

    def __init__(self, resolver: Resolver, terms: Terminology) -> None:
        self.resolver = resolver
        self.terms = terms
        self._codes: OrderedDict[tuple, frozenset[tuple[str, str]]] = OrderedDict()
        self._lock = Lock()

    def structure(self, canonical: str) -> dict | None:
        """The StructureDefinition with this url (``url|version`` allowed): the newest stored
        one, else the shipped core one."""
        return self.resolver.resource("StructureDefinition", canonical)

    def code_in(self, value_set: str, system: str | None, code: str) -> bool | None:
        """Whether (system, code) is in the value set; None when the value set is not known here
        or cannot be expanded (a code system this server does not hold, too large)."""
        try:
            vs = self.terms.resolver.resource("ValueSet", value_set)
            if vs is None:
                return None
            codes = self._expansion(vs)
        except FhirError:
            return None
        if system is None:
            return any(c == code for _, c in codes)
        return (system, code) in codes

    def _expansion(self, vs: dict) -> frozenset[tuple[str, str]]:
        meta = vs.get("meta") or {}
        key = (vs.get("url"), vs.get("version"), meta.get("versionId"), meta.get("lastUpdated"))
        with self._lock:
            found = self._codes.get(key)
            if found is not None:
                self._codes.move_to_end(key)
                return found
        codes = frozenset(self.terms.expander.codes(vs))
        with self._lock:
            self._codes[key] = codes
            while len(self._codes) > EXPANSIONS_KEPT:
                self._codes.popitem(last=False)
        return codes

    def sources(self) -> Sources:
        """Callbacks for one validation, remembering each answer for its length."""
        structures: dict[str, dict | None] = {}
        answers: dict[tuple[str, str | None, str], bool | None] = {}

        def structure(canonical: str) -> dict | None:
            if canonical not in structures:
                structures[canonical] = self.structure(canonical)
            return structures[canonical]

        def code_in(value_set: str, system: str | None, code: str) -> bool | None:
            key = (value_set, system, code)
            if key not in answers:
                answers[key] = self.code_in(value_set, system, code)
            return answers[key]

        return Sources(structure, code_in)

    def validate(self, resource: dict, profiles: list[str]) -> list[Issue]:
        """The issues of ``resource`` against ``profiles`` (canonical URLs) and those its
        ``meta.profile`` declares, and of each resource inside it (contained, Bundle entries)
        against those it declares; an unknown profile is an error issue. A base resource
        definition adds nothing to the base validation."""
        sources = self.sources()
        kind = str(resource.get("resourceType"))
        issues = self._against(resource, profiles + declared(resource), sources, kind)
        for where, inner in nested_resources(resource):
            issues += self._against(inner, declared(inner), sources, where)
        return issues

    def _against(
        self, resource: dict, profiles: list[str], sources: Sources, where: str
    ) -> list[Issue]:
        issues: list[Issue] = []
        kind = resource.get("resourceType")
        for canonical in dict.fromkeys(profiles):
            base = base_definition_type(canonical, resource_types())
            if base is not None:
                if base != kind:
                    issues.append(
                        Issue(
                            "invalid",
                            f"{where}: the profile {canonical} is for {base}, not {kind}",
                            expression=(where,),
                        )
                    )
                continue
            sd = sources.structure(canonical)
            if sd is None:
                issues.append(
                    Issue(
                        "not-found",
                        f"Profile reference '{canonical}' has not been checked because it is "
                        "unknown: no StructureDefinition with this url is stored on this server "
                        "or shipped with it",
                        expression=(where,),
                    )
                )
                continue
            issues += validate_profile(resource, sd, sources, where)
        return issues


def declared(resource: dict) -> list[str]:
    """The canonical URLs of ``meta.profile``."""
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("profile"), list):
        return []
    return [p for p in meta["profile"] if isinstance(p, str)]


def install(ctx: Context) -> Profiles:
    repo = ctx.repo
    resolver = Resolver(
        terminology.finder(repo), Builtin(list(CORE_FILES)), probe=terminology.prober(repo)
    )
    service = Profiles(resolver, terminology.of(ctx))
    ctx.services["profiles"] = service
    if ctx.settings.enforce_profiles:
        ctx.repo.write_hooks.append(enforcer(service))
    return service


def enforcer(service: Profiles) -> Callable[[Unit, WriteResult], None]:
    """The write hook of ``HEARTH_ENFORCE_PROFILES``: a resource written with ``meta.profile``
    (itself, a contained resource or a Bundle entry's) must conform to each profile named, and
    each must be known; else the write is refused."""

    def enforce(u: Unit, result: WriteResult) -> None:
        content = result.stored.content
        if content is None:
            return
        if not declared(content) and not any(declared(r) for _, r in nested_resources(content)):
            return
        errors = [i for i in service.validate(content, []) if i.severity in ("error", "fatal")]
        if errors:
            raise Unprocessable(
                f"{result.stored.res_type} does not conform to the profiles it declares in "
                f"meta.profile: {errors[0].diagnostics}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                errors,
            )

    return enforce


def of(ctx: Context) -> Profiles:
    """The process's profile service (built at start by ``install``)."""
    service = ctx.services.get("profiles")
    if service is None:
        service = install(ctx)
    return service


def store_core_profiles(ctx: Context) -> int:
    """Store each R4 core profile (``resources/data/profiles-others.json.gz``) under its own id
    (``StructureDefinition/vitalsigns``) unless a resource with that id exists or existed (one
    deleted on purpose stays deleted; one changed here is not overwritten). Returns how many were
    stored; running it again stores none."""
    stored = 0
    for sd in core_profiles():
        res_id = str(sd["id"])

        def store(u: Unit, sd: dict = sd, res_id: str = res_id) -> bool:
            try:
                u.read("StructureDefinition", res_id)
            except Gone:
                return False
            except NotFound:
                u.update("StructureDefinition", res_id, sd)
                return True
            return False

        if ctx.repo.run(store):
            stored += 1
    return stored
