"""Snapshot generation: the ``snapshot`` of a constraint StructureDefinition that has only a
``differential`` (FHIR R4 profiling.html "Snapshot generation", elementdefinition.html), from
its base definition's snapshot and its differential. Pure; the base definitions come from
``structure`` (stored or shipped profiles) and, for the R4 base resources and datatypes, from
``resources/data/base-definitions.json.gz``.

The rules applied, differential element by differential element, in order:

- an element is found in the snapshot by its ``id`` (``Observation.code.coding:loinc.system``;
  a differential without ids gets them from its paths and slice names);
- a path into a datatype (``Observation.code.coding``) expands the element's type: the children
  of the datatype's snapshot (or of the type's profile where it names one that is known, or of
  the element a ``contentReference`` points at) are inserted under it, ids and paths prefixed;
- a slice (``name:slice``, a re-slice ``name:slice/reslice``) is a copy of the sliced element
  as the base defines it (with the base's children, without its slicing), inserted after the
  sliced element's last slice; slicing an ``extension`` with no ``slicing`` declared gets the
  standard one (by ``url``, open);
- a renamed choice (``Observation.valueQuantity``) is the type slice ``value[x]:valueQuantity``
  of the choice element, whose slicing is by type (closed) and whose types are narrowed to the
  renamed ones, as the R4 publisher does;
- the differential's properties then override the base's: cardinality, types (narrowing),
  ``fixed[x]``, ``pattern[x]``, binding (merged, the differential's parts winning), slicing,
  texts; constraints, conditions, aliases and mappings are added to the base's (a constraint
  with the key of a base one replaces it).

What the differential says is not checked against the base (a max wider than the base's is
taken as written); a differential element that names no element of the base raises
:class:`SnapshotError`, as does a base that cannot be found.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from resources.validation.core import base_definitions

CORE = "http://hl7.org/fhir/StructureDefinition/"
MAX_DEPTH = 8  # bases that are themselves differential-only
EXTENSION_SLICING = {
    "discriminator": [{"type": "value", "path": "url"}],
    "description": "Extensions are always sliced by (at least) url",
    "rules": "open",
}
_ADDED = frozenset({"constraint", "condition", "alias", "mapping"})
_NOT_MERGED = frozenset({"id", "path"})


class SnapshotError(ValueError):
    """The snapshot cannot be generated (unknown base, a differential element the base does not
    have, a type that cannot be expanded)."""


def resolve(canonical: str, structure: Callable[[str], dict | None]) -> dict | None:
    """A StructureDefinition by canonical URL: the R4 base definitions first (they are the
    specification's), then ``structure``."""
    url = canonical.split("|", 1)[0]
    return base_definitions().get(url) or structure(canonical)


def snapshot_elements(
    sd: dict, structure: Callable[[str], dict | None], depth: int = 0
) -> list[dict]:
    """The snapshot of ``sd``: its own when it has one, else generated from its base's (itself
    generated when the base has none) and its differential."""
    own = (sd.get("snapshot") or {}).get("element")
    if own:
        return own
    if depth > MAX_DEPTH:
        raise SnapshotError(f"{sd.get('url')}: base definitions nested too deep")
    if sd.get("derivation") not in (None, "constraint"):
        raise SnapshotError(
            f"{sd.get('url')}: only a constraint's snapshot can be generated "
            f"(derivation {sd.get('derivation')})"
        )
    diff = (sd.get("differential") or {}).get("element")
    if not isinstance(diff, list) or not diff:
        raise SnapshotError(f"{sd.get('url')}: neither a snapshot nor a differential")
    base_url = sd.get("baseDefinition")
    if not isinstance(base_url, str):
        raise SnapshotError(f"{sd.get('url')}: no baseDefinition")
    base = resolve(base_url, structure)
    if base is None:
        raise SnapshotError(f"{sd.get('url')}: the base definition {base_url} is not known here")
    base_elements = snapshot_elements(base, structure, depth + 1)
    return _Generator(base_elements, structure, depth).run(diff)


def with_snapshot(sd: dict, structure: Callable[[str], dict | None]) -> dict:
    """``sd`` itself when it has a snapshot, else a copy with the generated one."""
    if (sd.get("snapshot") or {}).get("element"):
        return sd
    out = dict(sd)
    out["snapshot"] = {"element": snapshot_elements(sd, structure)}
    return out


def generate_snapshot(sd: dict, structure: Callable[[str], dict | None]) -> dict:
    """A copy of ``sd`` whose snapshot is generated from its base and its differential (its
    own snapshot, if any, replaced): what ``StructureDefinition/$snapshot`` answers."""
    if not (sd.get("differential") or {}).get("element"):
        raise SnapshotError(f"{sd.get('url')}: no differential to generate the snapshot from")
    bare = {k: v for k, v in sd.items() if k != "snapshot"}
    out = dict(bare)
    out["snapshot"] = {"element": snapshot_elements(bare, structure)}
    return out


def _ids(elements: list[dict]) -> None:
    """Give every element an id (from path and slice names) where it has none."""
    for el in elements:
        if not el.get("id"):
            el["id"] = _id_from_path(el, elements)


def _id_from_path(el: dict, elements: list[dict]) -> str:
    path = str(el.get("path", ""))
    return f"{path}:{el['sliceName']}" if el.get("sliceName") else path


def _under(el_id: str, prefix: str) -> bool:
    """Whether ``el_id`` is ``prefix`` or inside it (a child, or a slice of it)."""
    return el_id == prefix or (
        el_id.startswith(prefix) and el_id[len(prefix)] in ".:/" and not prefix.endswith(".")
    )


def _split_last(el_id: str) -> tuple[str, str]:
    """``a.b:s.c`` -> (``a.b:s``, ``c``); dots inside brackets or a slice's url do not split."""
    depth = 0
    for i in range(len(el_id) - 1, -1, -1):
        ch = el_id[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            depth -= 1
        elif ch == "." and depth == 0:
            return el_id[:i], el_id[i + 1 :]
    return "", el_id


def _type_name(suffix: str) -> str:
    return suffix[:1].lower() + suffix[1:] if suffix[:1].isupper() else suffix


class _Generator:
    def __init__(
        self, base: list[dict], structure: Callable[[str], dict | None], depth: int
    ) -> None:
        self.structure = structure
        self.depth = depth
        self.out = [copy.deepcopy(el) for el in base]
        _ids(self.out)
        # the elements as the base defines them, by id: where slices are copied from
        self.origin: dict[str, dict] = {el["id"]: copy.deepcopy(el) for el in self.out}
        self.expanded: set[str] = set()  # ids in origin from a type expanded here

    # -- lookups --------------------------------------------------------------------------
    def index(self, el_id: str) -> int | None:
        for i, el in enumerate(self.out):
            if el.get("id") == el_id:
                return i
        return None

    def subtree_end(self, i: int) -> int:
        """The index just after element ``i``, its children and its slices."""
        el_id = self.out[i]["id"]
        j = i + 1
        while j < len(self.out) and _under(self.out[j]["id"], el_id):
            j += 1
        return j

    # -- the differential -----------------------------------------------------------------
    def run(self, diff: list[dict]) -> list[dict]:
        root = str(self.out[0].get("path", ""))
        context: list[tuple[str, str]] = []  # (path, id) of the slices seen, for id-less diffs
        for raw in diff:
            if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
                raise SnapshotError("a differential element without a path")
            d = raw
            el_id = d.get("id") or self.implied_id(d, context)
            if d.get("sliceName"):
                context.append((d["path"], el_id))
            head = el_id.split(".", 1)[0].split(":", 1)[0]
            if head != root:
                raise SnapshotError(f"differential element {el_id} is not under {root}")
            el_id = self.renamed(el_id)
            i = self.find(el_id)
            self.merge(self.out[i], d)
        return self.out

    @staticmethod
    def implied_id(d: dict, context: list[tuple[str, str]]) -> str:
        path = d["path"]
        for slice_path, slice_id in reversed(context):
            if path.startswith(slice_path + "."):
                path = slice_id + path[len(slice_path) :]
                break
        return f"{path}:{d['sliceName']}" if d.get("sliceName") else path

    def renamed(self, el_id: str) -> str:
        """Rewrite renamed choice elements (``value Quantity``) into type slices of the choice
        element (``value[x]:valueQuantity``), creating the slice where needed."""
        parts: list[str] = []
        rest = el_id
        segments = []
        while rest:
            rest, last = _split_last(rest)
            segments.append(last)
        segments.reverse()
        for seg in segments:
            name, colon, slice_name = seg.partition(":")
            prefix = ".".join(parts)
            here = f"{prefix}.{name}" if prefix else name
            if prefix and self.index(here) is None and not name.endswith("[x]"):
                choice = self.choice_for(prefix, name)
                if choice is not None and ":" in prefix:
                    # inside a slice the R4 publisher narrows the choice element itself
                    self.narrow(f"{prefix}.{choice}", name[len(choice) - 3 :])
                    seg = choice + (f":{slice_name}" if colon else "")
                elif choice is not None:
                    self.type_slice(prefix, choice, name)
                    seg = f"{choice}:{name}" + (f"/{slice_name}" if colon else "")
            parts.append(seg)
        return ".".join(parts)

    def choice_for(self, prefix: str, name: str) -> str | None:
        """The choice element ``stem[x]`` under ``prefix`` that ``name`` (``valueQuantity``)
        renames, or None."""
        try:
            self.expand_to(f"{prefix}.{name}")
        except SnapshotError:
            pass
        for el in self.out:
            el_id = el["id"]
            parent, last = _split_last(el_id)
            if parent != prefix or not last.endswith("[x]") or ":" in last:
                continue
            stem = last[:-3]
            if name.startswith(stem) and name[len(stem) :][:1].isupper():
                kind = _type_name(name[len(stem) :])
                codes = {str(t.get("code")) for t in el.get("type") or ()}
                if kind in codes or name[len(stem) :] in codes:
                    return last
        return None

    def narrow(self, choice_id: str, suffix: str) -> None:
        i = self.index(choice_id)
        assert i is not None
        el = self.out[i]
        el["type"] = [
            t for t in el.get("type") or () if str(t.get("code")) in (suffix, _type_name(suffix))
        ]

    def type_slice(self, prefix: str, choice: str, name: str) -> None:
        choice_id = f"{prefix}.{choice}"
        slice_id = f"{choice_id}:{name}"
        if self.index(slice_id) is not None:
            return
        i = self.index(choice_id)
        assert i is not None
        el = self.out[i]
        suffix = name[len(choice) - 3 :]
        wanted = [
            t for t in el.get("type") or () if str(t.get("code")) in (suffix, _type_name(suffix))
        ]
        if not el.get("slicing"):
            el["slicing"] = {
                "discriminator": [{"type": "type", "path": "$this"}],
                "ordered": False,
                "rules": "closed",
            }
            el["type"] = []
        if el["slicing"].get("rules") == "closed":
            known = {t.get("code") for t in el["type"]}
            el["type"] = el["type"] + [t for t in wanted if t.get("code") not in known]
        template = copy.deepcopy(self.origin.get(choice_id) or el)
        template.pop("slicing", None)
        template["id"] = slice_id
        template["sliceName"] = name
        template["type"] = copy.deepcopy(wanted)
        end = self.subtree_end(i)
        self.out.insert(end, template)

    def find(self, el_id: str) -> int:
        """The index of element ``el_id``, creating it (a slice, an expanded type's child)."""
        i = self.index(el_id)
        if i is not None:
            return i
        parent, last = _split_last(el_id)
        if "/" in last or ":" in last:
            sliced = last.rsplit("/", 1)[0] if "/" in last else last.split(":", 1)[0]
            sliced_id = f"{parent}.{sliced}" if parent else sliced
            return self.new_slice(sliced_id, el_id, last[len(sliced) + 1 :])
        self.expand_to(el_id)
        i = self.index(el_id)
        if i is None:
            raise SnapshotError(f"differential element {el_id} is not in the base definition")
        return i

    def new_slice(self, sliced_id: str, el_id: str, slice_name: str) -> int:
        s = self.find(sliced_id)
        sliced = self.out[s]
        if not sliced.get("slicing") and "/" not in slice_name:
            name = _split_last(sliced_id)[1].split(":", 1)[0]
            if name in ("extension", "modifierExtension"):
                sliced["slicing"] = copy.deepcopy(EXTENSION_SLICING)
        if sliced_id in self.origin:  # as the base defines it, with the base's children
            template = [copy.deepcopy(self.origin[sliced_id])]
            template += [
                copy.deepcopy(el)
                for key, el in self.origin.items()
                if key.startswith(sliced_id + ".") and key not in self.expanded
            ]
        else:  # a re-slice of a slice made here: the slice as this profile defines it
            template = [copy.deepcopy(sliced)]
            j = s + 1
            while j < len(self.out) and self.out[j]["id"].startswith(sliced_id + "."):
                template.append(copy.deepcopy(self.out[j]))
                j += 1
        if "/" not in slice_name:
            template[0].pop("slicing", None)
        n = len(sliced_id)
        for el in template:
            el["id"] = el_id + el["id"][n:]
        full_name = slice_name
        if "/" in _split_last(el_id)[1]:  # a re-slice a:s/r is named s/r
            full_name = _split_last(el_id)[1].split(":", 1)[1]
        template[0]["sliceName"] = full_name
        end = self.subtree_end(s)
        self.out[end:end] = template
        return end

    def expand_to(self, el_id: str) -> None:
        """Expand the types on the way to ``el_id`` until it is in the snapshot (or cannot be)."""
        chain = []
        cur = el_id
        while cur and self.index(cur) is None:
            chain.append(cur)
            cur = _split_last(cur)[0]
        if not cur:
            raise SnapshotError(f"differential element {el_id} is not in the base definition")
        for missing in reversed(chain):
            parent, last = _split_last(missing)
            if ":" in last:
                self.find(missing)
                continue
            p = self.index(parent)
            assert p is not None
            if not any(
                _split_last(e["id"])[0] == parent for e in self.out[p + 1 : self.subtree_end(p)]
            ):
                self.expand(p)
            if self.index(missing) is None:
                raise SnapshotError(f"differential element {el_id} is not in the base definition")

    def expand(self, p: int) -> None:
        """Insert the children of element ``p`` from its type's (or content reference's)
        definition."""
        el = self.out[p]
        children = self.children_of(el)
        prefix_id, prefix_path = el["id"], str(el["path"])
        new = []
        for child in children:
            c = copy.deepcopy(child)
            root_id, _, rest_id = str(c.get("id") or c["path"]).partition(".")
            _, _, rest_path = str(c["path"]).partition(".")
            c["id"] = f"{prefix_id}.{rest_id}"
            c["path"] = f"{prefix_path}.{rest_path}"
            new.append(c)
        self.out[p + 1 : p + 1] = new  # right after the element, before its slices
        for c in new:
            if c["id"] not in self.origin:
                self.origin[c["id"]] = copy.deepcopy(c)
                self.expanded.add(c["id"])

    def children_of(self, el: dict) -> list[dict]:
        ref = el.get("contentReference")
        if isinstance(ref, str) and ref.startswith("#"):
            target = ref[1:]
            root = target.split(".", 1)[0]
            source = self.out if self.out[0]["id"] == root else None
            if source is None:
                sd = resolve(CORE + root, self.structure)
                source = (sd or {}).get("snapshot", {}).get("element") or []
            out = []
            for c in source:
                cid = str(c.get("id") or c["path"])
                if cid.startswith(target + ".") and ":" not in cid[len(target) :]:
                    r = copy.deepcopy(c)
                    r["id"] = "X." + cid[len(target) + 1 :]
                    r["path"] = "X." + str(c["path"])[len(str(target)) + 1 :]
                    out.append(r)
            return out
        types = el.get("type") or []
        codes = {str(t.get("code")) for t in types}
        if len(codes) != 1:
            raise SnapshotError(
                f"{el['id']}: cannot go into an element of {len(codes)} types "
                f"({', '.join(sorted(codes))}) without naming one"
            )
        (code,) = codes
        profiles = [p for t in types for p in t.get("profile") or ()]
        sd = None
        if len(profiles) == 1 and self.depth < MAX_DEPTH:
            sd = resolve(profiles[0], self.structure)
        if sd is None:
            sd = base_definitions().get(code if "/" in code else CORE + code)
        if sd is None:
            raise SnapshotError(f"{el['id']}: the type {code} is not known here")
        elements = snapshot_elements(sd, self.structure, self.depth + 1)
        return [copy.deepcopy(c) for c in elements[1:]]

    # -- merging --------------------------------------------------------------------------
    @staticmethod
    def merge(el: dict, d: dict) -> None:
        for key, value in d.items():
            if key in _NOT_MERGED:
                continue
            if key in _ADDED and isinstance(value, list):
                have = list(el.get(key) or [])
                if key == "constraint":
                    keys = {c.get("key") for c in value if isinstance(c, dict)}
                    have = [c for c in have if c.get("key") not in keys]
                    have += [c for c in value]
                else:
                    have += [v for v in value if v not in have]
                el[key] = copy.deepcopy(have)
            elif key in ("binding", "slicing") and isinstance(value, dict):
                merged = dict(el.get(key) or {})
                if key == "binding" and "valueSet" in value and "description" not in value:
                    merged.pop("description", None)
                merged.update(copy.deepcopy(value))
                el[key] = merged
            elif key.startswith(("fixed", "pattern")):
                for other in [k for k in el if k.startswith(("fixed", "pattern"))]:
                    del el[other]
                el[key] = copy.deepcopy(value)
            else:
                el[key] = copy.deepcopy(value)
