"""`hearth load` of FHIR XML files (docs/fhir-xml.md), run as a subprocess the way an operator
runs it: an XML resource and an XML transaction Bundle are stored, a broken file is reported."""

from __future__ import annotations

from pathlib import Path

from mappings.fhir_xml import to_xml
from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from tests.fhir_server.test_cli import hearth


def test_load_xml_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'xml.db'}"
    env = {"HEARTH_DATABASE_URL": url}
    assert hearth("db", "upgrade", env=env).returncode == 0
    folder = tmp_path / "in"
    folder.mkdir()
    patient = {
        "resourceType": "Patient",
        "id": "xml-1",
        "name": [{"family": "Dlamini", "given": ["Sipho"]}],
        "birthDate": "1980-05-01",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueBoolean": True}]},
    }
    (folder / "patient.xml").write_bytes(to_xml(patient))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Organization", "id": "xml-org", "name": "Clinic"},
                "request": {"method": "PUT", "url": "Organization/xml-org"},
            }
        ],
    }
    (folder / "bundle.xml").write_bytes(to_xml(bundle))
    (folder / "broken.xml").write_bytes(b"<Patient xmlns='http://hl7.org/fhir'><colour/></Patient>")
    out = hearth("load", "--quiet", str(folder), env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED" in out.stdout and "not FHIR XML" in out.stdout and "colour" in out.stdout
    repo = Repository(create_engine(url), SearchEngine(base_urls=("http://x/fhir",)))
    try:
        stored = repo.read(lambda u: u.read("Patient", "xml-1")).content
        org = repo.read(lambda u: u.read("Organization", "xml-org")).content
    finally:
        repo.engine.dispose()
    assert stored is not None and stored["_birthDate"] == patient["_birthDate"]
    assert org is not None and org["name"] == "Clinic"
