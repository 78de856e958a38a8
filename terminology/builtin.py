"""The FHIR R4 (4.0.1) CodeSystems and ValueSets shipped with Hearth (``data/valuesets.json.gz``)
and Hearth's formulary (``data/formulary.json``), see ``data/README.md``: read-only, resolvable by canonical URL, loaded on first use and kept for
the life of the process. The same class serves other shipped Bundles of canonical resources (the
core StructureDefinitions, ``fhir_server/runtime/profiles.py``)."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Sequence
from pathlib import Path

DATA = Path(__file__).parent / "data" / "valuesets.json.gz"
# Hearth's own formulary (an RxNorm fragment, its drug classes and the formulary ValueSet), plain
# JSON so that a change to it reads as a diff (data/README.md).
FORMULARY = Path(__file__).parent / "data" / "formulary.json"


class Builtin:
    """Canonical URL -> resource, per resource type, of FHIR Bundle files (JSON, gzipped or not)."""

    def __init__(self, path: Path | Sequence[Path] = (DATA, FORMULARY)) -> None:
        self.paths = [path] if isinstance(path, Path) else list(path)
        self._lock = threading.Lock()
        self._by_type: dict[str, dict[str, dict]] | None = None

    def _load(self) -> dict[str, dict[str, dict]]:
        with self._lock:
            if self._by_type is None:
                by_type: dict[str, dict[str, dict]] = {}
                for path in self.paths:
                    if path.suffix == ".gz":
                        with gzip.open(path, "rb") as fh:
                            bundle = json.load(fh)
                    else:
                        bundle = json.loads(path.read_bytes())
                    for entry in bundle.get("entry") or ():
                        res = entry.get("resource") or {}
                        url, kind = res.get("url"), res.get("resourceType")
                        if isinstance(url, str) and isinstance(kind, str):
                            by_type.setdefault(kind, {})[url] = res
                self._by_type = by_type
            return self._by_type

    def get(self, res_type: str, url: str, version: str | None = None) -> dict | None:
        res = self._load().get(res_type, {}).get(url)
        if res is None or (version is not None and res.get("version") != version):
            return None
        return res

    def all(self, res_type: str) -> list[dict]:
        return list(self._load().get(res_type, {}).values())


_DEFAULT: Builtin | None = None


def default() -> Builtin:
    """The process-wide instance over the shipped file."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Builtin()
    return _DEFAULT
