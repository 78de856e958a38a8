"""Validation of one resource against one StructureDefinition's snapshot (FHIR R4 profiling.html,
elementdefinition.html): a pure walk, no storage; what it needs from elsewhere (other
StructureDefinitions, value-set membership) comes through :class:`Sources`.

Checked, element by element of the snapshot: cardinality (``min`` / ``max``, choice elements
``[x]`` and nested backbone elements, ``contentReference``), the types allowed for a choice
element, a Reference's target type against ``targetProfile``, ``fixed[x]`` (exact) and
``pattern[x]`` (the value holds the pattern), slicing (discriminators ``value``, ``pattern``,
``type``, ``profile``, ``exists``; ``closed`` slicing; each slice's cardinality and content),
bindings of strength ``required`` (error) and ``extensible`` (warning) through
``Sources.code_in``, the type profile of an extension (validated against its definition when
that is known), and the FHIRPath invariants (``constraint``) with fhirpathpy; an invariant that
fhirpathpy cannot evaluate is reported as information, not as a failure. ``ele-1`` (no empty
elements) is left to the base validation, which checks it structurally.

Every issue names its location as FHIRPath (``Observation.component[0].code``, choice elements
by their JSON name, ``Observation.valueQuantity``) and the profile it comes from. Issue codes:
``required`` (too few), ``structure`` (too many, a type or target not allowed, no slice in a
closed slicing), ``value`` (fixed / pattern), ``code-invalid`` (binding), ``invariant``,
``not-supported`` (a StructureDefinition without a snapshot whose snapshot cannot be generated
from its differential),
``informational`` (something that could not be checked).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhirpathpy import apply_parsed_path, parse
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from resources.errors import Issue
from resources.validation.snapshot import SnapshotError, snapshot_elements

CORE = "http://hl7.org/fhir/StructureDefinition/"
MAX_DEPTH = 6  # profiles within profiles (extensions, profile discriminators)
_SKIPPED_CONSTRAINTS = frozenset({"ele-1"})  # checked structurally by the base validation


@dataclass(frozen=True)
class Sources:
    """What the walk asks the outside: ``structure(canonical)`` -> the StructureDefinition with
    that url (``url|version`` allowed) or None; ``code_in(value_set, system, code)`` -> whether
    the code is in the value set, or None when that cannot be told (unknown or unexpandable value
    set). Without ``code_in`` bindings are not checked."""

    structure: Callable[[str], dict | None]
    code_in: Callable[[str, str | None, str], bool | None] | None = None


@dataclass(eq=False)
class Node:
    """One ElementDefinition of a snapshot with its child elements (by name) and, when it is
    sliced, its slices (each a Node with its own children)."""

    el: dict
    children: dict[str, Node] = field(default_factory=dict)
    slices: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.el.get("path", "")).rsplit(".", 1)[-1]

    @property
    def slice_name(self) -> str:
        return str(self.el.get("sliceName", ""))

    def types(self) -> list[str]:
        return [str(t.get("code")) for t in self.el.get("type") or () if t.get("code")]


@dataclass(frozen=True)
class Profile:
    """A StructureDefinition compiled for the walk: its root Node and every Node by id (for
    ``contentReference``)."""

    url: str
    type: str
    root: Node
    by_id: dict[str, Node]


@dataclass(frozen=True)
class Item:
    """One value found in the resource: the JSON value (None for a primitive with only an
    extension), its FHIR type where known, and its FHIRPath location."""

    value: Any
    type: str | None
    loc: str


class NoSnapshot(Exception):
    """No snapshot, and none could be generated (the reason is the message)."""


# -- compiling a snapshot -------------------------------------------------------------------
_COMPILED: OrderedDict[tuple, Profile] = OrderedDict()
_LOCK = threading.Lock()


def compile_profile(sd: dict, structure: Callable[[str], dict | None] | None = None) -> Profile:
    """The StructureDefinition's snapshot as a tree (kept for the 64 most recent ones, keyed by
    url, version and stored version). A StructureDefinition with only a differential gets its
    snapshot generated (:mod:`resources.validation.snapshot`) when ``structure`` finds its
    bases. Raises :class:`NoSnapshot` when it has none and none can be generated."""
    meta = sd.get("meta") or {}
    key = (sd.get("url"), sd.get("version"), meta.get("versionId"), meta.get("lastUpdated"))
    with _LOCK:
        found = _COMPILED.get(key)
        if found is not None and key[3] is not None:
            _COMPILED.move_to_end(key)
            return found
    elements = (sd.get("snapshot") or {}).get("element") or []
    if not elements:
        if structure is None:
            raise NoSnapshot(f"the StructureDefinition {sd.get('url')} has no snapshot")
        try:
            elements = snapshot_elements(sd, structure)
        except SnapshotError as exc:
            raise NoSnapshot(
                f"the StructureDefinition {sd.get('url')} has no snapshot and none could be "
                f"generated from its differential: {exc}"
            ) from exc
    by_id: dict[str, Node] = {}
    root: Node | None = None
    for el in elements:
        if not isinstance(el, dict) or not isinstance(el.get("path"), str):
            continue
        el_id = el.get("id") or _id_of(el)
        node = Node(el)
        by_id[el_id] = node
        parent_id, sep, last = _split_id(el_id)
        if not sep:
            root = root or node
            continue
        name, colon, slice_name = last.partition(":")
        if colon:  # a slice of parent_id.name; a re-slice "a:s/r" is a slice of the slice a:s
            sliced = f"{name}:{slice_name.rsplit('/', 1)[0]}" if "/" in slice_name else name
            base = by_id.get(f"{parent_id}.{sliced}")
            if base is not None:
                base.slices.append(node)
            continue
        parent = by_id.get(parent_id)
        if parent is not None:
            parent.children[name] = node
    if root is None:
        raise NoSnapshot(f"the snapshot of {sd.get('url')} has no root element")
    profile = Profile(str(sd.get("url")), str(sd.get("type") or root.el["path"]), root, by_id)
    with _LOCK:
        _COMPILED[key] = profile
        while len(_COMPILED) > 64:
            _COMPILED.popitem(last=False)
    return profile


def _id_of(el: dict) -> str:
    path = str(el["path"])
    return f"{path}:{el['sliceName']}" if el.get("sliceName") else path


def _split_id(el_id: str) -> tuple[str, str, str]:
    """``a.b:s.c`` -> (``a.b:s``, ``.``, ``c``); a dot inside a slice name's url is not a split."""
    depth = 0
    for i in range(len(el_id) - 1, -1, -1):
        ch = el_id[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
        elif ch == "." and depth == 0:
            return el_id[:i], ".", el_id[i + 1 :]
    return "", "", el_id


# -- the walk -------------------------------------------------------------------------------
def validate_profile(
    resource: dict, sd: dict, sources: Sources, at: str | None = None
) -> list[Issue]:
    """The issues of ``resource`` against the StructureDefinition ``sd`` (errors, warnings and
    information); no error means it conforms. ``at``: the resource's own location when it sits
    inside another (``Bundle.entry[2].resource``); its type otherwise. Never raises for bad
    content."""
    url = str(sd.get("url"))
    try:
        profile = compile_profile(sd, sources.structure)
    except NoSnapshot as exc:
        return [Issue("not-supported", f"{exc}; the profile {url} was not checked")]
    kind = resource.get("resourceType")
    where = at or str(kind)
    if profile.type != kind:
        return [
            Issue(
                "invalid",
                f"{where}: the profile {url} is for {profile.type}, not {kind}",
                expression=(where,),
            )
        ]
    walk = _Walk(resource, sources)
    try:
        walk.conform(profile, Item(resource, str(kind), where))
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        # a StructureDefinition that is R4 but not usable (a max of "many", a type without a
        # code, ...): say so instead of failing the request
        walk.issues.append(
            Issue(
                "processing",
                f"the profile {url} could not be applied: its snapshot has an element this "
                f"validator cannot use ({type(exc).__name__})",
            )
        )
    return walk.result()


class _Walk:
    def __init__(self, resource: dict, sources: Sources, depth: int = 0) -> None:
        self.resource = resource
        self.sources = sources
        self.depth = depth
        self.issues: list[Issue] = []

    def result(self) -> list[Issue]:
        seen: set[tuple] = set()
        out = []
        for i in self.issues:
            key = (i.severity, i.code, i.expression, i.diagnostics)
            if key not in seen:
                seen.add(key)
                out.append(i)
        return out

    def add(self, code: str, loc: str, text: str, url: str, severity: str = "error") -> None:
        self.issues.append(Issue(code, f"{loc}: {text} (profile {url})", severity, (loc,)))

    # -- one value against one profile (root) ---------------------------------------------
    def conform(self, profile: Profile, item: Item) -> None:
        self.item(profile, profile.root, item)

    def item(self, profile: Profile, node: Node, item: Item) -> None:
        """``item`` against ``node``: fixed, pattern, binding, invariants, type profiles, then
        the node's children."""
        el, value, url = node.el, item.value, profile.url
        for key, want in el.items():
            if key.startswith("fixed") and value is not None and not _equal(value, want):
                self.add("value", item.loc, f"the value must be exactly {_show(want)}", url)
            elif key.startswith("pattern") and value is not None and not _matches(value, want):
                self.add("value", item.loc, f"the value must match the pattern {_show(want)}", url)
        binding = el.get("binding")
        if binding and value is not None:
            self.binding(binding, item, url)
        for constraint in el.get("constraint") or ():
            self.invariant(constraint, node, item, url)
        self.type_profiles(profile, node, item)
        children = node.children
        ref = el.get("contentReference")
        if not children and isinstance(ref, str) and ref.startswith("#"):
            target = profile.by_id.get(ref[1:])
            children = target.children if target is not None else {}
        if children and isinstance(value, dict):
            for child in children.values():
                self.element(profile, child, value, item.loc)

    def element(self, profile: Profile, node: Node, obj: dict, parent_loc: str) -> None:
        """The values of child element ``node`` in the JSON object ``obj``."""
        name = node.name
        items = self.values(profile, node, obj, parent_loc)
        loc = f"{parent_loc}.{name[:-3] if name.endswith('[x]') else name}"
        self.cardinality(node, len(items), loc, profile.url, "")
        for item in items:
            self.item(profile, node, item)
        if node.slices or node.el.get("slicing"):
            self.slicing(profile, node, items, loc)

    def values(self, profile: Profile, node: Node, obj: dict, parent_loc: str) -> list[Item]:
        name = node.name
        found: list[tuple[str, Any, str | None]] = []
        if name.endswith("[x]"):
            stem, allowed = name[:-3], node.types()
            for key in obj:
                if key.startswith(stem) and len(key) > len(stem) and key[len(stem)].isupper():
                    suffix = key[len(stem) :]
                    kind = next((t for t in allowed if _type_suffix(t) == suffix), None)
                    if kind is None:
                        low = suffix[:1].lower() + suffix[1:]
                        suffix = low if low in _PRIMITIVES else suffix
                        self.add(
                            "structure",
                            f"{parent_loc}.{key}",
                            f"the type {suffix} is not allowed here (allowed: "
                            f"{', '.join(allowed)})",
                            profile.url,
                        )
                        kind = suffix
                    found.append((key, obj[key], kind))
            for key in obj:  # a primitive choice with only its extension (_valueString)
                if key.startswith("_" + stem) and key[1:] not in obj:
                    found.append((key[1:], None, None))
        else:
            kind = node.types()[0] if len(node.types()) == 1 else None
            if name in obj:
                found.append((name, obj[name], kind))
            elif "_" + name in obj:
                found.append((name, None, kind))
        items: list[Item] = []
        for key, value, kind in found:
            if isinstance(value, list):
                items += [Item(v, kind, f"{parent_loc}.{key}[{i}]") for i, v in enumerate(value)]
            elif value is None and isinstance(obj.get("_" + key), list):
                n = len(obj["_" + key])
                items += [Item(None, kind, f"{parent_loc}.{key}[{i}]") for i in range(n)]
            else:
                items.append(Item(value, kind, f"{parent_loc}.{key}"))
        return items

    def cardinality(self, node: Node, n: int, loc: str, url: str, what: str) -> None:
        low, high = node.el.get("min", 0), str(node.el.get("max", "*"))
        if isinstance(low, int) and n < low:
            self.add("required", loc, f"{what}minimum required = {low}, but only found {n}", url)
        if high != "*" and high.isdigit() and n > int(high):
            self.add("structure", loc, f"{what}maximum allowed = {high}, but found {n}", url)

    # -- slicing --------------------------------------------------------------------------
    def slicing(self, profile: Profile, node: Node, items: list[Item], loc: str) -> None:
        slicing = node.el.get("slicing") or {}
        discriminators = [d for d in slicing.get("discriminator") or () if isinstance(d, dict)]
        rules, ordered = slicing.get("rules"), slicing.get("ordered") is True
        assigned: dict[int, list[Item]] = {i: [] for i in range(len(node.slices))}
        last: int | None = None  # the slice of the previous matched value (ordered slicing)
        unmatched: Item | None = None  # the first value matching no slice (openAtEnd)
        for item in items:
            index = next(
                (
                    i
                    for i, s in enumerate(node.slices)
                    if self.in_slice(profile, s, item, discriminators)
                ),
                None,
            )
            if index is not None:
                assigned[index].append(item)
                if ordered and last is not None and index < last:
                    self.add(
                        "structure",
                        item.loc,
                        f"this element (slice '{node.slices[index].slice_name}') is out of order:"
                        f" the slicing is ordered and it comes after slice "
                        f"'{node.slices[last].slice_name}'",
                        profile.url,
                    )
                if rules == "openAtEnd" and unmatched is not None:
                    self.add(
                        "structure",
                        item.loc,
                        f"this element (slice '{node.slices[index].slice_name}') comes after "
                        f"{unmatched.loc}, which matches no slice: the slicing is open at the "
                        "end only",
                        profile.url,
                    )
                last = index if last is None else max(last, index)
                self.item(profile, node.slices[index], item)
            elif rules == "openAtEnd":
                unmatched = unmatched or item
            elif rules == "closed":
                self.add(
                    "structure",
                    item.loc,
                    "this element does not match any of the slices of a closed slicing "
                    f"({', '.join(s.slice_name for s in node.slices)})",
                    profile.url,
                )
        for i, s in enumerate(node.slices):
            what = f"slice '{s.slice_name}': "
            self.cardinality(s, len(assigned[i]), loc, profile.url, what)
            if s.slices:  # re-slices (s/r): the values of slice s among its own slices
                self.slicing(profile, s, assigned[i], loc)

    def in_slice(self, profile: Profile, s: Node, item: Item, discriminators: list[dict]) -> bool:
        if not discriminators:
            return self.conforms(lambda w: w.item(profile, s, item))
        for d in discriminators:
            kind, path = d.get("type"), str(d.get("path") or "$this")
            steps = _steps(path)
            if steps is None or any(step[0] == "resolve" for step in steps):
                return False
            targets = _navigate([item], steps)
            at = _node_at(profile, s, steps)
            if kind in ("value", "pattern"):
                expected = _expected(profile, s, steps)
                if expected is None:
                    return self.conforms(lambda w: w.item(profile, s, item))
                exact, want = expected
                test = _equal if exact else _matches
                if not any(t.value is not None and test(t.value, want) for t in targets):
                    return False
            elif kind == "exists":
                if at is None:
                    return False
                if bool(targets) != (int(at.el.get("min", 0)) > 0):
                    return False
            elif kind == "type":
                allowed = at.types() if at is not None else []
                if not any(_type_of(t) in allowed for t in targets):
                    return False
            elif kind == "profile":
                urls = [
                    p
                    for t in (at.el.get("type") or () if at is not None else ())
                    for p in t.get("profile") or ()
                ]
                if not targets or not urls:
                    return False
                if not any(self.conforms_to(u, t) for u in urls for t in targets):
                    return False
            else:
                return False
        return True

    def conforms(self, run: Callable[[_Walk], None]) -> bool:
        probe = _Walk(self.resource, self.sources, self.depth + 1)
        if probe.depth > MAX_DEPTH:
            return False
        run(probe)
        return not any(i.severity in ("error", "fatal") for i in probe.issues)

    def conforms_to(self, url: str, item: Item) -> bool:
        sd = self.sources.structure(url)
        if sd is None:
            return False
        try:
            profile = compile_profile(sd, self.sources.structure)
        except NoSnapshot:
            return False
        return self.conforms(lambda w: w.conform(profile, Item(item.value, profile.type, item.loc)))

    # -- bindings -------------------------------------------------------------------------
    def binding(self, binding: dict, item: Item, url: str) -> None:
        strength, vs = binding.get("strength"), binding.get("valueSet")
        code_in = self.sources.code_in
        if strength not in ("required", "extensible") or not isinstance(vs, str) or not code_in:
            return
        codes = _codes(item.value, item.type)
        if codes is None:
            return  # not a coded type
        severity = "error" if strength == "required" else "warning"
        if not codes:
            if strength == "required":
                self.add(
                    "code-invalid",
                    item.loc,
                    f"no code given, and a code from the value set {vs} is required",
                    url,
                )
            return
        answers = [code_in(vs, system, code) for system, code in codes]
        if any(a is True for a in answers):
            return
        if any(a is None for a in answers):
            self.add(
                "informational",
                item.loc,
                f"the {strength} binding to {vs} was not checked: the value set is not known "
                "to this server or cannot be expanded",
                url,
                "information",
            )
            return
        shown = ", ".join(f"{s}|{c}" if s else c for s, c in codes)
        self.add(
            "code-invalid",
            item.loc,
            f"the code {shown} is not in the value set {vs} ({strength} binding)",
            url,
            severity,
        )

    # -- invariants -----------------------------------------------------------------------
    def invariant(self, constraint: dict, node: Node, item: Item, url: str) -> None:
        key, expr = constraint.get("key"), constraint.get("expression")
        if key in _SKIPPED_CONSTRAINTS or not isinstance(expr, str) or item.value is None:
            return
        if not isinstance(item.value, dict):
            return  # an invariant on a primitive's value: fhirpathpy needs the element form
        path = str(node.el.get("path"))
        kind = item.type or (node.types()[0] if len(node.types()) == 1 else None)
        if kind and kind[:1].isupper() and kind not in ("BackboneElement", "Element"):
            path = kind  # a datatype: fhirpathpy knows its elements by the type's name
        try:
            result = _evaluate(item.value, path, expr, self.resource)
        except Exception as exc:  # fhirpathpy's failures are of many kinds
            self.add(
                "informational",
                item.loc,
                f"the invariant {key} was not evaluated ({expr!r}): {type(exc).__name__}",
                url,
                "information",
            )
            return
        if result == [False]:
            severity = "warning" if constraint.get("severity") == "warning" else "error"
            human = constraint.get("human") or expr
            self.add("invariant", item.loc, f"constraint failed: {key}: {human!r}", url, severity)

    # -- type profiles and reference targets -----------------------------------------------
    def type_profiles(self, profile: Profile, node: Node, item: Item) -> None:
        types = node.el.get("type") or ()
        value = item.value
        if not isinstance(value, dict):
            return
        for t in types:
            code = t.get("code")
            if code == "Extension" and t.get("profile") and item.type in (None, "Extension"):
                urls = [u for u in t["profile"] if isinstance(u, str)]
                if value.get("url") in urls or len(urls) == 1:
                    self.extension(urls[0] if len(urls) == 1 else value["url"], item, profile.url)
            elif code == "Reference" and t.get("targetProfile") and item.type in (None, code):
                self.reference_target(t["targetProfile"], item, profile.url)

    def extension(self, ext_url: str, item: Item, url: str) -> None:
        if self.depth >= MAX_DEPTH:
            return
        sd = self.sources.structure(ext_url)
        if sd is None:
            self.add(
                "informational",
                item.loc,
                f"the extension definition {ext_url} is not known to this server; the "
                "extension was not checked against it",
                url,
                "information",
            )
            return
        try:
            ext = compile_profile(sd, self.sources.structure)
        except NoSnapshot:
            return
        walk = _Walk(self.resource, self.sources, self.depth + 1)
        walk.conform(ext, Item(item.value, "Extension", item.loc))
        self.issues += walk.issues

    def reference_target(self, targets: list, item: Item, url: str) -> None:
        ref = item.value.get("reference")
        if not isinstance(ref, str) or ref.startswith("#"):
            return
        m = _REFERENCE.search(ref)
        if m is None:
            return
        allowed: set[str] = set()
        for target in targets:
            kind = self.type_of_profile(str(target))
            if kind is None:
                return  # a target not known here: no check rather than a false one
            allowed.add(kind)
        if "Resource" not in allowed and m.group(1) not in allowed:
            self.add(
                "structure",
                f"{item.loc}.reference",
                f"the reference {ref!r} is to a {m.group(1)}, not one of the allowed targets "
                f"({', '.join(sorted(allowed))})",
                url,
            )

    def type_of_profile(self, target: str) -> str | None:
        canonical = target.split("|", 1)[0]
        if canonical.startswith(CORE) and "/" not in canonical[len(CORE) :]:
            name = canonical[len(CORE) :]
            if name[:1].isupper():
                return name
        sd = self.sources.structure(target)
        return str(sd["type"]) if sd is not None and sd.get("type") else None


def nested_resources(resource: dict) -> list[tuple[str, dict]]:
    """(location, resource) of the resources inside ``resource`` that can declare profiles of
    their own: ``contained`` ones and those of ``Bundle.entry.resource`` (Bundles in Bundles
    too), each with its FHIRPath location."""
    out: list[tuple[str, dict]] = []
    stack: list[tuple[str, dict]] = [(str(resource.get("resourceType")), resource)]
    while stack:
        where, res = stack.pop()
        inner: list[tuple[str, Any]] = []
        contained = res.get("contained")
        if isinstance(contained, list):
            inner += [(f"{where}.contained[{i}]", c) for i, c in enumerate(contained)]
        entries = res.get("entry") if res.get("resourceType") == "Bundle" else None
        if isinstance(entries, list):
            inner += [
                (f"{where}.entry[{i}].resource", e.get("resource"))
                for i, e in enumerate(entries)
                if isinstance(e, dict)
            ]
        for loc, child in inner:
            if isinstance(child, dict) and isinstance(child.get("resourceType"), str):
                out.append((loc, child))
                stack.append((loc, child))
    return out


# -- helpers --------------------------------------------------------------------------------
_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")
_PRIMITIVES = frozenset(
    "base64Binary boolean canonical code date dateTime decimal id instant integer markdown oid "
    "positiveInt string time unsignedInt uri url uuid xhtml".split()
)


def _type_suffix(code: str) -> str:
    return code[:1].upper() + code[1:]


def _type_of(item: Item) -> str | None:
    if isinstance(item.value, dict) and isinstance(item.value.get("resourceType"), str):
        return str(item.value["resourceType"])
    return item.type


def _equal(value: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return (
            isinstance(value, dict)
            and value.keys() == want.keys()
            and all(_equal(value[k], want[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(value, list)
            and len(value) == len(want)
            and all(_equal(v, w) for v, w in zip(value, want, strict=True))
        )
    if isinstance(want, bool) or isinstance(value, bool):
        return value is want
    if isinstance(want, int | float) and isinstance(value, int | float):
        return float(value) == float(want)
    return bool(value == want)


def _matches(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x]: every element of the pattern is in the value (a repeating element: each
    pattern item matched by some value item); primitives equal."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _matches(value[k], p) for k, p in pattern.items()
        )
    if isinstance(pattern, list):
        values = value if isinstance(value, list) else [value]
        return all(any(_matches(v, p) for v in values) for p in pattern)
    return _equal(value, pattern)


def _show(value: Any) -> str:
    import json

    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


_QUANTITIES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity"})


def _codes(value: Any, kind: str | None) -> list[tuple[str | None, str]] | None:
    """(system, code) pairs of a coded value of type ``kind``: a code, a Coding, a
    CodeableConcept (its codings), a Quantity with a code; None when the value is not of a coded
    type (a valueString under a binding made for the coded types of a choice), whose binding
    does not apply to it."""
    if isinstance(value, str):
        return [(None, value)] if kind == "code" else None
    if not isinstance(value, dict):
        return None
    if kind == "CodeableConcept" or (kind is None and "coding" in value):
        return [
            (c.get("system"), c["code"])
            for c in value.get("coding") or ()
            if isinstance(c, dict) and isinstance(c.get("code"), str)
        ]
    if kind == "Coding" or (kind in _QUANTITIES and "code" in value):
        code = value.get("code")
        return [(value.get("system"), code)] if isinstance(code, str) else []
    return None


# discriminator paths: name, name.name, extension('url'), ofType(X), resolve(), $this
_STEP = re.compile(
    r"\s*(?:(\$this)|extension\('([^']*)'\)|ofType\(([A-Za-z]+)\)|(resolve)\(\)|([A-Za-z]\w*))\s*"
)


def _steps(path: str) -> list[tuple[str, str]] | None:
    steps: list[tuple[str, str]] = []
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            return None
        this, ext, of_type, resolve, name = m.groups()
        if ext is not None:
            steps.append(("extension", ext))
        elif of_type:
            steps.append(("ofType", of_type))
        elif resolve:
            steps.append(("resolve", ""))
        elif name:
            steps.append(("name", name))
        elif not this:
            return None
        pos = m.end()
        if pos < len(path):
            if path[pos] != ".":
                return None
            pos += 1
    return steps


def _navigate(items: list[Item], steps: list[tuple[str, str]]) -> list[Item]:
    for kind, arg in steps:
        out: list[Item] = []
        for item in items:
            value = item.value
            if kind == "ofType":
                if _type_of(item) == arg:
                    out.append(item)
                continue
            if not isinstance(value, dict):
                continue
            if kind == "extension":
                for e in value.get("extension") or ():
                    if isinstance(e, dict) and e.get("url") == arg:
                        out.append(Item(e, "Extension", item.loc))
                continue
            keys: list[tuple[str, str | None]] = []
            if arg in value:
                keys.append((arg, None))
            else:
                keys += [
                    (k, k[len(arg) :])
                    for k in value
                    if k.startswith(arg) and len(k) > len(arg) and k[len(arg)].isupper()
                ]
            for key, suffix in keys:
                kind_of = None
                if suffix:
                    low = suffix[:1].lower() + suffix[1:]
                    kind_of = low if low in _PRIMITIVES else suffix
                got = value[key]
                for v in got if isinstance(got, list) else [got]:
                    out.append(Item(v, kind_of, item.loc))
        items = out
    return items


def _node_at(profile: Profile, node: Node, steps: list[tuple[str, str]]) -> Node | None:
    for kind, arg in steps:
        if kind == "ofType":
            continue
        children = node.children
        if not children and isinstance(node.el.get("contentReference"), str):
            target = profile.by_id.get(node.el["contentReference"][1:])
            children = target.children if target is not None else {}
        if kind == "extension":
            ext = children.get("extension")
            if ext is None:
                return None
            found = next((s for s in ext.slices if _extension_url(s) == arg), None)
            if found is None:
                return None
            node = found
            continue
        child = children.get(arg) or children.get(arg + "[x]")
        if child is None:
            return None
        node = child
    return node


def _extension_url(node: Node) -> str | None:
    url = node.children.get("url")
    if url is not None and isinstance(url.el.get("fixedUri"), str):
        return str(url.el["fixedUri"])
    for t in node.el.get("type") or ():
        for p in t.get("profile") or ():
            return str(p)
    return None


def _fixed_or_pattern(el: dict) -> tuple[bool, Any] | None:
    for key, value in el.items():
        if key.startswith("fixed"):
            return True, value
        if key.startswith("pattern"):
            return False, value
    return None


def _expected(
    profile: Profile, node: Node, steps: list[tuple[str, str]]
) -> tuple[bool, Any] | None:
    """What a value / pattern discriminator expects at ``steps`` below ``node`` (a slice): the
    fixed or pattern value on the element there, or on an element above it read down the rest of
    the path, or on a slice of an element on the way (a coding slice inside a component slice);
    for an extension slice's ``url``, its type profile."""
    found = _fixed_or_pattern(node.el)
    if found is not None:
        exact, value = found
        if not steps:
            return exact, value
        inner = _navigate([Item(value, None, "")], steps)
        return (exact, inner[0].value) if len(inner) == 1 else None
    if not steps:
        return None
    if steps == [("name", "url")]:
        url = _extension_url(node)
        if url is not None:
            return True, url
    following = _node_at(profile, node, steps[:1])
    if following is None:
        return None
    result = _expected(profile, following, steps[1:])
    if result is None:
        required_first = sorted(following.slices, key=lambda s: -int(s.el.get("min") or 0))
        for s in required_first:
            result = _expected(profile, s, steps[1:])
            if result is not None:
                break
    return result


_MODEL = models["r4"]
_OPTIONS = {"traceFn": lambda label, value: None}  # trace() writes nothing
_PARSED: dict[str, Any] = {}


def _evaluate(value: dict, path: str, expr: str, resource: dict) -> list:
    """``expr`` on ``value``, an element at ``path`` (its type information for fhirpathpy),
    with ``%resource`` the resource being validated."""
    parsed = _PARSED.get(expr)
    if parsed is None:
        parsed = parse(expr)
        if len(_PARSED) < 4096:
            _PARSED[expr] = parsed
    context = {"resource": resource, "rootResource": resource}
    node = ResourceNode.create_node(value, path)
    return list(apply_parsed_path(node, parsed, context, _MODEL, _OPTIONS))
