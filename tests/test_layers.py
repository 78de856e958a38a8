"""The dependency direction of the packages holds (scripts/check_layers.py)."""

import subprocess
import sys

from tests.shared import ROOT


def test_no_upward_imports():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def _checker(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check_layers", ROOT / "scripts" / "check_layers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "layers.toml").write_text(
        '[packages.low]\njob = "below"\nmay_import = []\n'
        '[packages.high]\njob = "above"\nmay_import = ["low"]\n'
    )
    for package in ("low", "high"):
        (tmp_path / package).mkdir()
    (tmp_path / "high" / "a.py").write_text("import low.x\n")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "LAYERS", tmp_path / "docs" / "layers.toml")
    monkeypatch.setattr(module, "DOC", tmp_path / "docs" / "architecture.md")
    return module


def test_an_import_the_layers_file_does_not_allow_fails(tmp_path, monkeypatch):
    check = _checker(tmp_path, monkeypatch)
    (tmp_path / "docs" / "architecture.md").write_text(f"{check.BEGIN}\n{check.END}\n")
    assert check.main(["--write-docs"]) == 0  # high -> low is allowed; the table is written
    assert "| `high/` | above | `low` |" in (tmp_path / "docs" / "architecture.md").read_text()
    (tmp_path / "low" / "b.py").write_text("from high import a\n")
    assert check.violations(check.packages()) == ["low/b.py imports high"]
    assert check.main([]) == 1


def test_the_architecture_table_must_match_the_layers_file(tmp_path, monkeypatch):
    check = _checker(tmp_path, monkeypatch)
    (tmp_path / "docs" / "architecture.md").write_text(f"{check.BEGIN}\n| stale |\n{check.END}\n")
    assert check.main([]) == 1
    assert check.main(["--write-docs"]) == 0
    assert check.main([]) == 0


def test_every_sub_package_has_its_job_in_the_layers_file(tmp_path, monkeypatch):
    check = _checker(tmp_path, monkeypatch)
    (tmp_path / "high" / "edge").mkdir()
    (tmp_path / "high" / "edge" / "__init__.py").write_text("")
    assert check.part_violations(check.packages()) == [
        "docs/layers.toml: high/edge/ has no job under [packages.high.parts]"
    ]
    layers = tmp_path / "docs" / "layers.toml"
    layers.write_text(layers.read_text() + '[packages.high.parts]\nedge = "the edge"\ngone = "x"\n')
    assert check.part_violations(check.packages()) == [
        "docs/layers.toml: [packages.high.parts] names gone, not a package"
    ]
    (tmp_path / "docs" / "architecture.md").write_text(f"{check.BEGIN}\n{check.END}\n")
    check.main(["--write-docs"])
    assert "`high/edge/` | the edge |" in (tmp_path / "docs" / "architecture.md").read_text()
