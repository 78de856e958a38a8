"""C-FIND narrowed in the repository search (Study Date through ImagingStudy ``started``, widened
by a day; Patient ID, Accession Number, modality, one Study Instance UID) answers exactly what
reading every ImagingStudy answers, for ranges open and closed, wildcards and empty keys, at
every level, on SQLite and PostgreSQL; the cache of decoded ImagingStudies and headers follows
a re-sent instance and a grown study. The engine is called directly (no network)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fhir_server.dicom.qr import PATIENT_ROOT, STUDY_ROOT, QueryRetrieve
from fhir_server.runtime.app import build_context
from fhir_server.runtime.settings import Settings
from tests.dicom import BACKENDS
from tests.servers import database_url
from tests.shared import shared_path

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR DA")

# (Patient ID, Patient Name, Study Date, Study Time, Timezone Offset, Modality, Accession)
STUDIES = [
    ("P1", "Smith^John", "20210305", "101500", None, "CT", "A1"),
    ("P1", "SMITH^JOHN^Q", "20210331", "235959", "-1100", "MR", "A2"),  # UTC next day
    ("P1", "Smith^Jon", "20210401", "000100", "+1400", "CT", "A3"),  # UTC previous day
    ("P2", "smithers^ann", "20201231", None, None, "CR", "A4"),
    ("P2", "Smithers^Ann", "20210101", "120000", "+0530", "US", "A5"),
    ("P3", "Jones^Mary", "20191115", "080000", None, "CT", None),
    ("P3", "Jones^Mary", "2021-03-10", None, None, "CT", "A7"),  # not a DA: no ``started``
    ("P3", "Jones^Mary", "202103101", None, None, "CT", "A11"),  # neither, but in range as text
    ("P4", "O'Brien^Seán", "20210315", "090000", "+0100", "MR", "A8"),
    ("P5", "Smith^John", None, None, None, "CT", "A9"),  # no Study Date
    ("P6", "Zeta", "20240229", "120000", None, "US", "A10"),
]

QUERIES = [
    {},
    {"StudyDate": "20210305"},
    {"StudyDate": "20210301-20210331"},
    {"StudyDate": "20210331-20210401"},
    {"StudyDate": "20210301-"},
    {"StudyDate": "-20210101"},
    {"StudyDate": "20201231-20210101"},
    {"StudyDate": "20240229"},
    {"StudyDate": "20210230-20210305"},  # not a date: matched as text, not narrowed
    {"StudyDate": "2021*"},
    {"StudyDate": "-"},
    {"StudyDate": "20210305\\20201231"},
    {"PatientName": "smith*"},
    {"PatientName": "SMITH^J*"},
    {"PatientName": "sm?th*"},
    {"PatientName": "smith"},
    {"PatientName": "*^ann"},
    {"PatientName": "*"},
    {"PatientName": "smith*", "StudyDate": "20210301-20210331"},
    {"PatientID": "P1", "StudyDate": "-20210331"},
    {"PatientID": "P*", "StudyDate": "20191115"},
    {"AccessionNumber": "A2", "StudyDate": "20210301-"},
    {"ModalitiesInStudy": "CT", "StudyDate": "20210301-20211231"},
    {"Modality": "MR\\US", "StudyDate": "-20211231"},
    {"StudyTime": "100000-110000", "StudyDate": "20210305"},
]


def _write(folder: Path) -> list[Path]:
    template = pydicom.dcmread(shared_path("data", "dicom", "693_UNCR.dcm"))
    template.Rows = template.Columns = 4
    template.PixelData = bytes(4 * 4 * 2)
    template.BitsAllocated, template.BitsStored, template.HighBit = 16, 12, 11
    template.SamplesPerPixel, template.PixelRepresentation = 1, 0
    paths = []
    for k, (pid, name, day, time, tz, modality, acc) in enumerate(STUDIES):
        ds = template
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName, ds.Modality = pid, name, modality
        ds.SpecificCharacterSet = "ISO_IR 192"
        for kw, value in (
            ("StudyDate", day),
            ("StudyTime", time),
            ("TimezoneOffsetFromUTC", tz),
            ("AccessionNumber", acc),
        ):
            if value is None:
                if kw in ds:
                    delattr(ds, kw)
            else:
                setattr(ds, kw, value)
        path = folder / f"{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module", params=BACKENDS)
def engines(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    from fhir_server.dicom import service

    tmp = tmp_path_factory.mktemp(f"narrow-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    settings = Settings(database_url=url, data_dir=tmp / "data", dicom_quiet_seconds=3600)
    ctx = build_context(settings)
    dicom = service.start(ctx.repo, settings, listen=False, replay=False)
    paths = _write(tmp)
    for path in paths:
        dicom.ingest.receive(path.read_bytes())
    # a second series for the first study (SERIES and IMAGE levels)
    extra = pydicom.dcmread(paths[0])
    extra.SeriesInstanceUID, extra.SOPInstanceUID = generate_uid(), generate_uid()
    extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
    extra.Modality, extra.SeriesNumber = "SR", 9
    buf = io.BytesIO()
    extra.save_as(buf, enforce_file_format=True)
    dicom.ingest.receive(buf.getvalue())
    assert dicom.ingest.flush(timeout=60)
    narrow = QueryRetrieve(ctx.repo, dicom.store)
    full = QueryRetrieve(ctx.repo, dicom.store, narrow=False)
    yield narrow, full, dicom, paths
    dicom.stop()
    ctx.repo.engine.dispose()
    cleanup()


def _identifier(level: str, keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for kw in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate"):
        setattr(ds, kw, "")
    if level in ("SERIES", "IMAGE"):
        ds.SeriesInstanceUID = ""
        ds.Modality = ""
    if level == "IMAGE":
        ds.SOPInstanceUID = ""
    for kw, value in keys.items():
        setattr(ds, kw, value)
    return ds


def _answers(qr: QueryRetrieve, identifier: Dataset, model: str) -> list[dict]:
    return [d.to_json_dict() for d in qr.find(identifier, model)]


def test_narrowed_find_answers_what_the_full_scan_answers(engines):
    narrow, full, _, _ = engines
    seen = set()
    for keys in QUERIES:
        for level, model in (
            ("STUDY", STUDY_ROOT),
            ("SERIES", STUDY_ROOT),
            ("IMAGE", STUDY_ROOT),
            ("PATIENT", PATIENT_ROOT),
        ):
            identifier = _identifier(level, keys)
            want = _answers(full, identifier, model)
            assert _answers(narrow, identifier, model) == want, (level, keys)
            if level == "STUDY":
                seen.add(len(want))
    # the queries are not all empty or all-matching: they test something
    assert len(seen) > 4
    study = _identifier("STUDY", {"StudyDate": "20210301-20210331"})
    dates = sorted(a["00080020"]["Value"][0] for a in _answers(narrow, study, STUDY_ROOT))
    # the UTC-next-day and UTC-previous-day studies are found by their DICOM date; those whose
    # Study Date is no DA (no ``started``) are matched as text: one is in the range as text
    assert dates == ["20210305", "202103101", "20210315", "20210331"]


def test_a_resent_instance_and_a_grown_study_are_answered_fresh(engines):
    narrow, full, dicom, paths = engines
    query = _identifier("STUDY", {"PatientName": "Zeta*"})
    assert len(_answers(narrow, query, STUDY_ROOT)) == 1
    ds = pydicom.dcmread(paths[-1])
    ds.PatientName = "Eta^Renamed"  # corrected at the modality and sent again
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    dicom.ingest.receive(buf.getvalue())
    assert dicom.ingest.flush(timeout=60)
    assert _answers(narrow, query, STUDY_ROOT) == []
    renamed = _identifier("STUDY", {"PatientName": "eta*", "StudyDate": "20240228-"})
    got = _answers(narrow, renamed, STUDY_ROOT)
    assert got == _answers(full, renamed, STUDY_ROOT) and len(got) == 1
    # a new series: the ImagingStudy's new version is read, not the cached one
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    dicom.ingest.receive(buf.getvalue())
    assert dicom.ingest.flush(timeout=60)
    renamed.NumberOfStudyRelatedInstances = ""
    (answer,) = narrow.find(renamed, STUDY_ROOT)
    assert answer.NumberOfStudyRelatedInstances == 2
