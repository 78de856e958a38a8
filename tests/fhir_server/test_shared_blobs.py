"""``HEARTH_BLOB_STORE=database`` (issue 24, "no node-local state"): two Hearth nodes on one
database, each with its own empty data directory. An instance stored through one node is
retrieved through the other, byte for byte; an export run by one node is downloaded from the
other; neither node keeps an instance or an export file on its own disk."""

from __future__ import annotations

import json

import pydicom
import pytest
from cryptography.fernet import Fernet
from dicomweb_client.api import DICOMwebClient

from tests.dicom import sample_files
from tests.fhir_server.test_bulk_export import kickoff, poll
from tests.servers import database_url, start_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def two_nodes(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"blobs-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    # nodes of one deployment: the same secret keys and one public address (HEARTH_BASE_URL)
    common = {"blob_store": "database", "secret_keys": Fernet.generate_key().decode()}
    a = start_server(request.param, url, data_dir=tmp / "node-a", **common)
    b = start_server(request.param, url, data_dir=tmp / "node-b", base_url=a.root, **common)
    nodes = [a, b]
    yield nodes
    for node in nodes:
        node.stop()
    cleanup()  # type: ignore[operator]


def files_under(folder) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_an_instance_stored_on_one_node_is_retrieved_whole_from_the_other(two_nodes):
    a, b = two_nodes
    stow = DICOMwebClient(url=f"{a.root}/dicomweb", headers=a.headers)
    # the same token on node b (one deployment, one audience)
    wado = DICOMwebClient(url=f"http://127.0.0.1:{b.settings.port}/dicomweb", headers=a.headers)
    originals = {}
    for path in sample_files()[:2]:
        ds = pydicom.dcmread(path)
        originals[str(ds.SOPInstanceUID)] = (path.read_bytes(), ds)
        reply = stow.store_instances([ds])
        assert "FailedSOPSequence" not in reply
    for uid, (_, ds) in originals.items():
        got = wado.retrieve_instance(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), uid,
            media_types=(("application/dicom", "*"),),
        )  # fmt: skip
        assert got.SOPInstanceUID == uid
        assert got.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert got.PixelData == ds.PixelData  # the stored bytes, as sent
    for node in two_nodes:
        assert not [f for f in files_under(node.settings.data_dir) if f.endswith(".dcm")]


def test_an_export_run_on_one_node_downloads_from_the_other(two_nodes):
    import httpx

    a, b = two_nodes
    with httpx.Client(base_url=a.fhir, headers=a.headers, timeout=60) as ca:
        for _ in range(3):
            made = ca.post("/Patient", json={"resourceType": "Patient", "gender": "female"})
            assert made.status_code == 201, made.text
        status_url = kickoff(ca, "/Patient/$export")
        manifest = poll(ca, status_url)
    assert manifest["output"], manifest
    b_root = f"http://127.0.0.1:{b.settings.port}"
    with httpx.Client(headers=a.headers, timeout=60) as cb:  # the same token, on node b
        for item in manifest["output"]:
            url = item["url"].replace(a.root, b_root)
            got = cb.get(url)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"].startswith("application/fhir+ndjson")
            lines = got.content.splitlines()
            assert len(lines) == item["count"]
            assert {json.loads(x)["resourceType"] for x in lines} == {item["type"]}
            assert int(got.headers["content-length"]) == len(got.content)
        cancel = cb.delete(status_url.replace(a.root, b_root))
        assert cancel.status_code == 202, cancel.text
        gone = cb.get(manifest["output"][0]["url"].replace(a.root, b_root))
        assert gone.status_code == 404
    for node in two_nodes:
        assert not [f for f in files_under(node.settings.data_dir) if f.startswith("exports")]
