"""docs/conformance.md is what scripts/conformance.py generates from the code (issue 16)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.shared import ROOT, shared_path


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "conformance", ROOT / "scripts" / "conformance.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_is_the_generated_one():
    shared_path("fhir", "r4-definitions", "profiles-resources.json.gz")  # loudly, if missing
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "conformance.py")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_page_follows_the_code(monkeypatch):
    """Not a copy: what the search engine applies and what the registry holds decide it."""
    from resources.search import special

    script = _script()
    page = script.render()
    assert "| `_contained=true` | `Patient?name=a&_contained=true` | supported |" in page
    assert (
        "| `_containedType=contained` | `Patient?name=a&_contained=true&_containedType=contained` | supported |"
        in page
    )
    assert "| `_filter` | `Patient?_filter=name eq a` | **not supported**" in page
    assert (
        "| `_has` (reverse chaining) | `Patient?_has:Observation:patient:code=a` | supported |"
        in page
    )
    assert "| `$everything` | Patient | supported |" in page
    assert "| `$lastn` | Observation | **not supported** |" in page
    assert "| `transaction` | system | supported |" in page
    monkeypatch.setattr(
        special,
        "UNSUPPORTED_RESULT_VALUES",
        {"_containedType": (frozenset({"contained"}), "switched off here")},
    )
    monkeypatch.delitem(special.UNSUPPORTED, "_filter")
    changed = script.render()
    assert (
        "`Patient?name=a&_contained=true&_containedType=contained` | **not supported** "
        "(switched off here)" in changed
    )
    assert "`Patient?_filter=name eq a` | supported" not in changed  # an unknown parameter now
    assert "`Patient?_filter=name eq a` | **not supported** (unknown search parameter" in changed
