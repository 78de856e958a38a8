"""Snapshot generation measured against published snapshots: each StructureDefinition's
snapshot is removed, generated again from its differential (``resources/validation/
snapshot.py``) and compared with the published one element by element (by id): path, min, max,
types (codes, profiles, target profiles), fixed[x] / pattern[x], binding strength.

    python scripts/snapshot_agreement.py            # R4 core profiles and extensions
    python scripts/snapshot_agreement.py -v         # and each disagreement

US Core 5.0.1 (``../shared/fhir/ig/uscore-v5.0.1-structuredefinitions.json.gz``) is published
there with snapshots only; its differentials are derived first (:func:`derived_differential`:
each snapshot element's constraining properties that differ from what the base, or the base's
datatype, says), so that figure measures the generator on US Core's shapes (slices of
extensions, type slices, nested datatypes) rather than on the authors' own differentials.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resources.validation.core import EXTENSIONS_FILE, PROFILES_FILE  # noqa: E402
from resources.validation.snapshot import (  # noqa: E402
    CORE,
    SnapshotError,
    resolve,
    snapshot_elements,
)

US_CORE = ROOT.parent / "shared/fhir/ig/uscore-v5.0.1-structuredefinitions.json.gz"
CONSTRAINING = ("min", "max", "type", "binding", "slicing", "mustSupport")

FIELDS = ("path", "min", "max", "type", "fixed/pattern", "binding")


def facets(el: dict) -> dict[str, object]:
    types = sorted(
        (
            str(t.get("code")),
            tuple(sorted(t.get("profile") or ())),
            tuple(sorted(t.get("targetProfile") or ())),
        )
        for t in el.get("type") or ()
    )
    fp = {k: v for k, v in el.items() if k.startswith(("fixed", "pattern"))}
    return {
        "path": el.get("path"),
        "min": el.get("min"),
        "max": el.get("max"),
        "type": types,
        "fixed/pattern": json.dumps(fp, sort_keys=True),
        "binding": (el.get("binding") or {}).get("strength"),
    }


@dataclass
class Tally:
    profiles: int = 0
    failed: list[str] = field(default_factory=list)
    elements: int = 0  # published elements
    equal: int = 0  # published elements generated with every facet equal
    missing: int = 0  # published elements not generated
    extra: int = 0  # generated elements not published
    facets: int = 0
    facets_equal: int = 0
    diffs: list[str] = field(default_factory=list)

    def line(self, label: str) -> str:
        pct = 100 * self.equal / self.elements if self.elements else 0.0
        fpct = 100 * self.facets_equal / self.facets if self.facets else 0.0
        return (
            f"{label}: {self.profiles} profiles ({len(self.failed)} not generated), "
            f"{self.elements} published elements: {self.equal} equal ({pct:.2f} %), "
            f"{self.missing} missing, {self.extra} extra; facets {self.facets_equal}/"
            f"{self.facets} ({fpct:.2f} %)"
        )


def measure(
    sds: Iterable[dict],
    structure: Callable[[str], dict | None],
    strip: Callable[[dict], dict] | None = None,
) -> Tally:
    tally = Tally()
    for sd in sds:
        published = sd["snapshot"]["element"]
        tally.profiles += 1
        try:
            bare = strip(sd) if strip else {k: v for k, v in sd.items() if k != "snapshot"}
            generated = snapshot_elements(bare, structure)
        except SnapshotError as exc:
            tally.failed.append(f"{sd.get('url')}: {exc}")
            tally.elements += len(published)
            tally.missing += len(published)
            tally.facets += len(published) * len(FIELDS)
            continue
        by_id = {g.get("id"): g for g in generated}
        ids = {p.get("id") for p in published}
        tally.extra += sum(1 for g in generated if g.get("id") not in ids)
        for p in published:
            tally.elements += 1
            tally.facets += len(FIELDS)
            g = by_id.get(p.get("id"))
            if g is None:
                tally.missing += 1
                tally.diffs.append(f"{sd['url']} {p.get('id')}: missing")
                continue
            want, got = facets(p), facets(g)
            same = [f for f in FIELDS if want[f] == got[f]]
            tally.facets_equal += len(same)
            if len(same) == len(FIELDS):
                tally.equal += 1
            for f in FIELDS:
                if want[f] != got[f]:
                    tally.diffs.append(
                        f"{sd['url']} {p.get('id')} {f}: published {want[f]} generated {got[f]}"
                    )
    return tally


def derived_differential(sd: dict, structure: Callable[[str], dict | None]) -> dict:
    """``sd`` without its snapshot, with a differential derived from it: for each snapshot
    element, the constraining properties (cardinality, types, fixed / pattern, binding,
    slicing, must-support, constraints with new keys) whose value differs from the element the
    base (or the datatype of the base's element) defines at the same place; slices always."""
    base = resolve(sd["baseDefinition"], structure)
    if base is None:
        raise SnapshotError(f"the base definition {sd['baseDefinition']} is not known here")
    base_by_id = {e.get("id"): e for e in snapshot_elements(base, structure)}

    def reference(el_id: str) -> dict | None:
        unsliced = ".".join(seg.split(":", 1)[0] for seg in el_id.split("."))
        if unsliced in base_by_id:
            return base_by_id[unsliced]
        parent, _, last = unsliced.rpartition(".")
        if not parent:
            return None
        above = reference(parent)
        codes = {str(t.get("code")) for t in (above or {}).get("type") or ()}
        if len(codes) != 1:
            return None
        datatype = resolve(CORE + codes.pop(), structure)
        for e in (datatype or {}).get("snapshot", {}).get("element") or ():
            if str(e.get("id")).split(".", 1)[-1] == last and e.get("id", "").count(".") == 1:
                return e
        return None

    diff = []
    for el in sd["snapshot"]["element"]:
        ref = reference(el["id"]) or {}
        out = {"id": el["id"], "path": el["path"]}
        if el.get("sliceName"):
            out["sliceName"] = el["sliceName"]
        for key, value in el.items():
            fixed = key.startswith(("fixed", "pattern"))
            if (key in CONSTRAINING or fixed) and ref.get(key) != value:
                out[key] = value
        keys = {c.get("key") for c in ref.get("constraint") or ()}
        new = [c for c in el.get("constraint") or () if c.get("key") not in keys]
        if new:
            out["constraint"] = new
        if len(out) > 2 or el is sd["snapshot"]["element"][0]:
            diff.append(out)
    bare = {k: v for k, v in sd.items() if k != "snapshot"}
    bare["differential"] = {"element": diff}
    return bare


def bundle(path: Path) -> list[dict]:
    with gzip.open(path, "rb") as fh:
        data = json.load(fh)
    items = data if isinstance(data, list) else [e["resource"] for e in data["entry"]]
    return [r for r in items if r.get("resourceType") == "StructureDefinition"]


def core_structure() -> Callable[[str], dict | None]:
    """Resolution among the published core profiles and extensions (with their snapshots), as
    the server's registry would find them."""
    known = {sd["url"]: sd for sd in bundle(PROFILES_FILE) + bundle(EXTENSIONS_FILE)}
    return lambda canonical: known.get(canonical.split("|", 1)[0])


def main(argv: list[str]) -> int:
    structure = core_structure()
    for label, path in (("R4 core profiles", PROFILES_FILE), ("R4 extensions", EXTENSIONS_FILE)):
        tally = measure(bundle(path), structure)
        print(tally.line(label))
        if "-v" in argv:
            for line in tally.failed + tally.diffs:
                print("  ", line)
    if US_CORE.exists():
        us_core = bundle(US_CORE)
        known = {sd["url"]: sd for sd in us_core}

        def with_us_core(canonical: str) -> dict | None:
            return known.get(canonical.split("|", 1)[0]) or structure(canonical)

        tally = measure(us_core, with_us_core, lambda sd: derived_differential(sd, with_us_core))
        print(tally.line("US Core 5.0.1 (derived differentials)"))
        if "-v" in argv:
            for line in tally.failed + tally.diffs:
                print("  ", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
