"""The FHIR R4 (4.0.1) core profiles and extension definitions shipped with Hearth
(``resources/data/profiles-others.json.gz``: vital signs, blood pressure, body weight and the
other profiles of the specification, 44 StructureDefinitions; ``extension-definitions.json.gz``:
the 393 core extensions; both with snapshots, see ``resources/data/README.md``), and which
canonical URLs name a base definition (``http://hl7.org/fhir/StructureDefinition/Patient``),
which the base R4 validation already stands for."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
PROFILES_FILE = DATA / "profiles-others.json.gz"
EXTENSIONS_FILE = DATA / "extension-definitions.json.gz"
BASE_FILE = DATA / "base-definitions.json.gz"
FILES = (PROFILES_FILE, EXTENSIONS_FILE)
CORE = "http://hl7.org/fhir/StructureDefinition/"

_LOCK = threading.Lock()
_PROFILES: list[dict] | None = None
_BASES: dict[str, dict] | None = None


def core_profiles() -> list[dict]:
    """The 44 StructureDefinitions of ``profiles-others`` (each with its snapshot), in file order."""
    global _PROFILES
    with _LOCK:
        if _PROFILES is None:
            with gzip.open(PROFILES_FILE, "rb") as fh:
                bundle = json.load(fh)
            _PROFILES = [
                e["resource"]
                for e in bundle.get("entry") or ()
                if (e.get("resource") or {}).get("resourceType") == "StructureDefinition"
            ]
        return _PROFILES


def base_definitions() -> dict[str, dict]:
    """The R4 base resource and datatype StructureDefinitions (snapshots only, see
    ``scripts/build_base_definitions.py``) by url: where snapshot generation starts."""
    global _BASES
    with _LOCK:
        if _BASES is None:
            with gzip.open(BASE_FILE, "rb") as fh:
                bundle = json.load(fh)
            _BASES = {e["resource"]["url"]: e["resource"] for e in bundle.get("entry") or ()}
        return _BASES


def base_definition_type(canonical: str, resource_types: frozenset[str]) -> str | None:
    """The resource type whose base definition ``canonical`` is (``.../StructureDefinition/
    Patient``, ``|4.0.1`` allowed), or None."""
    url, _, version = canonical.partition("|")
    if not url.startswith(CORE) or version not in ("", "4.0.1", "4.0"):
        return None
    name = url[len(CORE) :]
    return name if name in resource_types else None
