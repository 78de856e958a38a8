"""Write ``mappings/data/fhir-xml-r4.json.gz``: the element order and types of every R4 resource
and datatype, read from the R4 (4.0.1) StructureDefinitions, for ``mappings/fhir_xml.py``.

    python scripts/gen_fhir_xml_model.py [../shared/fhir/r4-definitions]

For each type (resource, complex datatype, and each backbone element by its path, such as
``Patient.contact``) the snapshot's elements in their order: ``[name, [type, ...], choice, list,
attribute]``. ``choice`` marks a ``[x]`` element (its JSON/XML names are ``name`` + Type);
``list`` an element whose max is not 1; ``attribute`` an element written as an XML attribute
(``representation: xmlAttr``: ``Element.id``, ``Extension.url``). A backbone element's type is
its path; a ``contentReference`` (``#Questionnaire.item``) is the path it refers to. The
FHIRPath system types of ``id``/``url``/``value`` elements become the FHIR primitive their
``structuredefinition-fhir-type`` extension names. Primitive types map to their JSON kind.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "mappings" / "data" / "fhir-xml-r4.json.gz"
# The 146 concrete R4 resource types (the copy of the definitions also carries a few non-R4
# StructureDefinitions, such as SubscriptionStatus, which are left out).
R4_TYPES = ROOT / "resources" / "data" / "r4-resource-types.txt"

JSON_KIND = {
    "boolean": "boolean",
    "integer": "integer",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "decimal": "decimal",
}


def _load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        bundle = json.load(fh)
    return [e["resource"] for e in bundle["entry"]]


def _type_code(t: dict) -> str:
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE:
                return ext.get("valueUrl") or ext["valueUri"]
        return "string"
    return code


def build(definitions: Path) -> dict:
    sds = [
        r
        for name in ("profiles-types.json", "profiles-resources.json.gz")
        for r in _load(definitions / name)
        if r["resourceType"] == "StructureDefinition"
    ]
    r4 = {
        line.strip()
        for line in R4_TYPES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    primitives: dict[str, str] = {}
    resources: list[str] = []
    types: dict[str, list] = {}
    for sd in sds:
        kind = sd["kind"]
        if sd.get("derivation") == "constraint" or kind == "logical":
            continue  # profiles (SimpleQuantity, MoneyQuantity) are written as their base type
        if kind == "primitive-type":
            primitives[sd["type"]] = JSON_KIND.get(sd["type"], "string")
            continue
        if kind == "resource" and not sd.get("abstract"):
            if sd["type"] not in r4:
                continue
            resources.append(sd["type"])
        elements = [e for e in sd["snapshot"]["element"] if "sliceName" not in e]
        paths = {e["path"] for e in elements}
        parents = {p.rsplit(".", 1)[0] for p in paths if "." in p}
        for e in elements[1:]:
            path = e["path"]
            parent, name = path.rsplit(".", 1)
            choice = name.endswith("[x]")
            if "contentReference" in e:
                codes = [e["contentReference"].lstrip("#")]
            elif path in parents:
                codes = [path]
            else:
                codes = [_type_code(t) for t in e.get("type", [])]
            attribute = "xmlAttr" in e.get("representation", [])
            types.setdefault(parent, []).append(
                [name.removesuffix("[x]"), codes, int(choice), int(e["max"] != "1"), int(attribute)]
            )
    return {
        "fhirVersion": "4.0.1",
        "primitives": dict(sorted(primitives.items())),
        "resources": sorted(resources),
        "types": dict(sorted(types.items())),
    }


def main() -> None:
    default = Path(__file__).resolve().parent.parent.parent / "shared/fhir/r4-definitions"
    definitions = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    model = build(definitions)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(model, separators=(",", ":"), sort_keys=False).encode()
    with open(OUT, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)
    print(f"{OUT}: {len(model['resources'])} resources, {len(model['types'])} types")


if __name__ == "__main__":
    main()
