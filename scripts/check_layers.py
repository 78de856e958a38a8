"""Fail when a package imports one above it: fhir_server → workflow / inference / mappings →
resources / terminology. (``make lint`` runs this.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# package -> packages it must not import
FORBIDDEN = {
    "resources": {"fhir_server", "workflow", "inference", "mappings", "terminology"},
    "terminology": {"fhir_server", "workflow", "inference", "mappings"},
    "mappings": {"fhir_server", "workflow", "inference"},
    "inference": {"fhir_server", "workflow"},
    "workflow": {"fhir_server"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def main() -> int:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).exists() else []:
            for name in imports(path) & forbidden:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    for line in bad:
        print(f"layer violation: {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
