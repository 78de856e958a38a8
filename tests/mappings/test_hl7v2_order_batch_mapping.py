"""Pure parts of order of arrival (``mappings/hl7v2/ordering.py``), batches
(``mappings/hl7v2/batch.py``) and PV1-54 → EpisodeOfCare."""

from __future__ import annotations

from datetime import UTC, datetime

from mappings.hl7v2 import batch, map_parsed, ordering, parse
from tests.shared import shared_path

HEAD = "MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240301120000+0100||ADT^A08^ADT_A01|{cid}|P|2.5.1\r"


def a08(cid: str = "1", evn: str = "EVN|A08|20240301110000+0100\r", pv1: str = "PV1|1|I\r") -> str:
    return HEAD.format(cid=cid) + evn + "PID|1||123^^^HOSP^MR||Doe^Jane\r" + pv1


def test_the_message_time_is_evn2_else_msh7() -> None:
    assert map_parsed(parse(a08())).time == "2024-03-01T11:00:00+01:00"
    assert map_parsed(parse(a08(evn=""))).time == "2024-03-01T12:00:00+01:00"
    # EVN-6 (event occurred) is not the record's order
    late = a08(evn="EVN|A08|20240301110000+0100||||20230101\r")
    assert map_parsed(parse(late)).time == "2024-03-01T11:00:00+01:00"


def test_the_patient_update_is_stamped_and_results_are_not() -> None:
    bundle = map_parsed(parse(a08())).bundle
    index, query = ordering.patient_update(bundle)
    patient = bundle["entry"][index]["resource"]
    assert ordering.last_event(patient) == "2024-03-01T11:00:00+01:00"
    assert query.startswith("identifier=")
    oru = HEAD.format(cid="2").replace("ADT^A08^ADT_A01", "ORU^R01") + (
        "PID|1||123^^^HOSP^MR\rOBR|1||F1|1-1^X^LN\rOBX|1|NM|2-2^Y^LN||1\r"
    )
    assert ordering.patient_update(map_parsed(parse(oru)).bundle) is None


def test_older_is_compared_as_instants() -> None:
    assert ordering.is_older("2024-03-01T11:00:00+01:00", "2024-03-01T10:30:00Z")
    assert not ordering.is_older("2024-03-01T11:00:00+01:00", "2024-03-01T10:00:00Z")
    assert not ordering.is_older("2024-03-01T11:00:00+01:00", "2024-03-01T11:00:00+01:00")
    assert not ordering.is_older("2024-03-01", None)
    assert ordering.is_older("2024-02", "2024-03-01")
    assert ordering.instant("2024-03-01T11:00:00.25-05:00") == datetime(
        2024, 3, 1, 16, 0, 0, 250000, tzinfo=UTC
    )


def test_a_stale_bundle_only_adds_and_is_tagged() -> None:
    mapped = map_parsed(parse(a08(pv1="PV1|1|I|||||||||||||||||V1^^^HOSP\r")))
    stale = ordering.stale(mapped.bundle)
    for before, after in zip(mapped.bundle["entry"], stale["entry"], strict=True):
        kind = after["resource"]["resourceType"]
        url = before["request"]["url"]
        if kind in ordering.RECORD:
            assert ordering.OUT_OF_ORDER in after["resource"]["meta"]["tag"]
            assert after["request"] == before["request"]
        elif before["request"]["method"] == "PUT" and "?" in url:
            assert after["request"] == {
                "method": "POST",
                "url": url.split("?")[0],
                "ifNoneExist": url.split("?")[1],
            }
    assert "PUT" not in {e["request"]["method"] for e in stale["entry"]} - {
        e["request"]["method"]
        for e in stale["entry"]
        if e["resource"]["resourceType"] in ordering.RECORD
    }
    assert ordering.last_event(stale["entry"][0]["resource"]) is None
    index, _ = ordering.patient_update(mapped.bundle)
    assert (
        ordering.guarded(mapped.bundle, index, "3")["entry"][index]["request"]["ifMatch"] == 'W/"3"'
    )
    assert (
        ordering.guarded(mapped.bundle, index, None)["entry"][index]["request"]["ifNoneMatch"]
        == "*"
    )
    assert "ifMatch" not in mapped.bundle["entry"][index]["request"]  # not changed in place


def test_batches_split_and_counted() -> None:
    folder = shared_path("hl7v2", "edge-cases")
    good = batch.split((folder / "sample_batch1.hl7").read_bytes())
    assert len(good.messages) == 2 and batch.problems(good) == []
    assert all(parse(m).control_id for m in good.messages)
    headless = batch.split((folder / "sample_bad_batch.hl7").read_bytes())
    assert len(headless.messages) == 1 and headless.messages[0].startswith("EVN")
    file = batch.split((folder / "sample_file.hl7").read_bytes())
    assert file.file_header is not None and file.file_trailer == ["FTS", "1"]
    assert batch.problems(file) == []
    assert batch.is_batch((folder / "sample_batch4.hl7").read_bytes())  # BTS without BHS
    assert not batch.is_batch((folder / "sample_hl7.hl7").read_bytes())
    text = (folder / "sample_batch1.hl7").read_text().replace("BTS|2", "BTS|3")
    assert [w for w, _ in batch.problems(batch.split(text))] == ["BTS^1^1"]
    text = (folder / "sample_file.hl7").read_text().replace("FTS|1", "FTS|2")
    assert [w for w, _ in batch.problems(batch.split(text))] == ["FTS^1^1"]


def test_the_batch_acknowledgment() -> None:
    sent = batch.split(
        "FHS|^~\\&|A|B|C|D|20240101||f||F1\rBHS|^~\\&|A|B|C|D|20240101||||B1\r"
        + a08("m1")
        + "BTS|1\rFTS|1\r"
    )
    answer = batch.acknowledge(
        sent,
        [["MSH|^~\\&|C|D|A|B|x||ACK|1|P|2.5.1\rMSA|AA|m1\r"]],
        ["1 AA"],
        control_id="H1",
        now=datetime(2024, 1, 1, tzinfo=UTC),
    ).split("\r")
    assert answer[0].startswith("FHS|^~\\&|C|D|A|B|20240101000000+0000||f||H1|F1")
    assert answer[1].endswith("|H1-1|B1") and answer[3] == "MSA|AA|m1"
    assert answer[4:6] == ["BTS|1|1 AA", "FTS|1"]


def test_pv1_54_is_an_episode_of_care_with_the_diagnoses() -> None:
    msg = (
        HEAD.format(cid="e1").replace("ADT^A08", "ADT^A01")
        + "EVN|A01|20240301110000\rPID|1||123^^^HOSP^MR||Doe^Jane\r"
        + "PV1|1|I|||||||||||||||||V9^^^HOSP"
        + "|" * 34
        + "Chemo cycle|EP7^^^HOSP\r"
        + "DG1|1||C50.9^Breast cancer^I10||20240101|A|||||||||2\r"
    )
    entries = map_parsed(parse(msg)).bundle["entry"]
    episodes = [e for e in entries if e["resource"]["resourceType"] == "EpisodeOfCare"]
    assert len(episodes) == 1
    episode = episodes[0]["resource"]
    assert episode["status"] == "active"
    assert episode["identifier"][0]["value"] == "EP7"
    condition = next(e for e in entries if e["resource"]["resourceType"] == "Condition")
    assert episode["diagnosis"][0]["condition"] == {"reference": condition["fullUrl"]}
    assert episode["diagnosis"][0]["rank"] == 2
    encounter = next(e for e in entries if e["resource"]["resourceType"] == "Encounter")
    assert encounter["resource"]["episodeOfCare"] == [{"reference": episodes[0]["fullUrl"]}]
    assert not [
        e
        for e in map_parsed(parse(a08())).bundle["entry"]
        if e["resource"]["resourceType"] == "EpisodeOfCare"
    ]
