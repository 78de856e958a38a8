"""Build ``resources/data/base-definitions.json.gz``: the snapshots of the FHIR R4 (4.0.1) base
resource and datatype StructureDefinitions (``profiles-resources`` and ``profiles-types`` of
``../shared/fhir/r4-definitions``), which snapshot generation starts from. Kept: each
StructureDefinition's identifying elements and its snapshot, each element without its
``mapping`` (not used by Hearth; a third of the size). The redistributed copy in ``../shared``
(Medplum's) is not pure R4 everywhere: its additions are removed (elements in
:data:`NON_R4_ELEMENTS`, target profiles outside hl7.org, non-R4 resource types), and the
definitions it took from a later FHIR version (:data:`NOT_R4`) are left out, so that a profile on
them is refused rather than built on the wrong base. Deterministic (gzip mtime 0), so that
``tests/resources/validation/test_snapshot.py`` can check the file against ``../shared``.

    python scripts/build_base_definitions.py [../shared/fhir/r4-definitions]
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "data" / "base-definitions.json.gz"
KEPT: tuple[str, ...] = ("resourceType", "id", "url", "version", "name", "status", "kind")
KEPT += ("abstract", "type", "baseDefinition", "derivation")
NON_R4_ELEMENTS = frozenset(
    {
        "Meta.project",
        "Meta.author",
        "Meta.onBehalfOf",
        "Meta.account",
        "Meta.accounts",
        "Meta.compartment",
        "Binary.url",
        "DeviceDefinition.bodySite",
    }
)
NOT_R4 = frozenset({"EvidenceVariable", "ResearchStudy"})  # R5 shapes in the copy
HL7 = "http://hl7.org/fhir/"
ABSTRACT = frozenset({"Resource", "DomainResource"})


def r4_element(el: dict) -> dict | None:
    path = str(el.get("path"))
    if any(path == p or path.startswith(p + ".") for p in NON_R4_ELEMENTS):
        return None
    out = {k: v for k, v in el.items() if k != "mapping"}
    if "type" in out:
        types = []
        for t in out["type"]:
            t = dict(t)
            for key in ("profile", "targetProfile"):
                if key in t:
                    t[key] = [u for u in t[key] if u.startswith(HL7)]
                    if not t[key]:
                        del t[key]
            types.append(t)
        out["type"] = types
    return out


def build(shared: Path) -> bytes:
    entries = []
    r4 = set((ROOT / "resources/data/r4-resource-types.txt").read_text().split())
    for name in ("profiles-types.json", "profiles-resources.json.gz"):
        path = shared / name
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            bundle = json.load(fh)
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition" or not sd.get("snapshot"):
                continue
            if not str(sd.get("url")).startswith(HL7) or sd.get("id") in NOT_R4:
                continue
            if sd.get("kind") == "resource" and sd["id"] not in r4 and sd["id"] not in ABSTRACT:
                continue
            out = {k: sd[k] for k in KEPT if k in sd}
            elements = [r4_element(el) for el in sd["snapshot"]["element"]]
            out["snapshot"] = {"element": [el for el in elements if el is not None]}
            entries.append({"resource": out})
    doc = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0)


if __name__ == "__main__":
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/fhir/r4-definitions"
    OUT.write_bytes(build(shared))
    print(f"{OUT}: {OUT.stat().st_size} bytes")
