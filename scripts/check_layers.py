"""Fail when a package imports a first-party package that docs/layers.toml does not allow it to
(dependencies point down: fhir_server -> workflow / inference -> mappings / terminology ->
resources), or when the package table in docs/architecture.md differs from that file.
(``make lint`` and tests/test_layers.py run this; ``--write-docs`` rewrites the table.)"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ROOT / "docs" / "layers.toml"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- layers:begin (generated from docs/layers.toml) -->", "<!-- layers:end -->"


def packages() -> dict[str, dict]:
    return tomllib.loads(LAYERS.read_text())["packages"]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def violations(layers: dict[str, dict]) -> list[str]:
    first_party = set(layers)
    bad = []
    for package, spec in layers.items():
        allowed = set(spec["may_import"]) | {package}
        unknown = set(spec["may_import"]) - first_party
        if unknown:
            bad.append(f"docs/layers.toml: {package} may_import unknown {sorted(unknown)}")
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted((imports(path) & first_party) - allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def subpackages(package: str) -> set[str]:
    """The sub-packages (folders with an ``__init__.py``) directly under a package."""
    return {p.parent.name for p in (ROOT / package).glob("*/__init__.py")}


def part_violations(layers: dict[str, dict]) -> list[str]:
    """Every sub-package has its one-sentence job in docs/layers.toml, and every part listed
    there exists."""
    bad = []
    for package, spec in layers.items():
        parts = set(spec.get("parts", {}))
        found = subpackages(package)
        for name in sorted(found - parts):
            bad.append(
                f"docs/layers.toml: {package}/{name}/ has no job under [packages.{package}.parts]"
            )
        for name in sorted(parts - found):
            bad.append(f"docs/layers.toml: [packages.{package}.parts] names {name}, not a package")
    return bad


def table(layers: dict[str, dict]) -> str:
    rows = ["| Package | Its job | May import |", "|---|---|---|"]
    for package, spec in layers.items():
        may = ", ".join(f"`{p}`" for p in spec["may_import"]) or "—"
        rows.append(f"| `{package}/` | {spec['job']} | {may} |")
        for part, job in spec.get("parts", {}).items():
            rows.append(f"| &nbsp;&nbsp;`{package}/{part}/` | {job} | |")
    return "\n".join([BEGIN, *rows, END])


def doc_with(layers: dict[str, dict], text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + table(layers) + text[end:]


def main(argv: list[str]) -> int:
    layers = packages()
    bad = [f"layer violation: {line}" for line in violations(layers)] + part_violations(layers)
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        bad.append(f"{DOC.relative_to(ROOT)} lacks the generated package table ({BEGIN})")
    elif doc_with(layers, text) != text:
        if "--write-docs" in argv:
            DOC.write_text(doc_with(layers, text))
        else:
            bad.append(
                f"{DOC.relative_to(ROOT)}: the package table differs from docs/layers.toml "
                "(python scripts/check_layers.py --write-docs)"
            )
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
