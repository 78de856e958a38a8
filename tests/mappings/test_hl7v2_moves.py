"""ADT account / visit merges, moves and identifier changes (A41-A51, ``mappings/hl7v2/moves.py``)
and the PV1 locations, mapped without a server: what each event writes, patches and requires."""

from __future__ import annotations

import pytest

from mappings.hl7v2 import Hl7Error, map_parsed, parse
from mappings.hl7v2.mapping import search_token
from resources.storage.patch.fhirpath_patch import apply_fhirpath_patch
from resources.validation import validate_resource

HOSP = "urn:hearth:hl7v2:assigner:HOSP"


def _msg(event: str, mrg: str, *, pid18: str = "", pv1: str = "") -> str:
    text = (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||ADT^{event}|c-{event}|P|2.5.1\r"
        f"EVN|{event}|20240105081500\r"
        f"PID|1||NEW^^^HOSP^MR||Doe^Jane||19700215|F" + "|" * 10 + f"{pid18}\r"
        f"MRG|{mrg}\r"
    )
    return text + (f"{pv1}\r" if pv1 else "")


def _entries(text: str) -> tuple[list[dict], list]:
    mapped = map_parsed(parse(text), server_tz="+00:00")
    return mapped.bundle["entry"], mapped.targets


def _q(value: str) -> str:
    return "identifier=" + search_token(HOSP, value)


def _of(entries: list[dict], method: str, url_start: str) -> list[dict]:
    return [
        e
        for e in entries
        if e["request"]["method"] == method and e["request"]["url"].startswith(url_start)
    ]


def test_a41_merge_account_links_and_retires_the_prior_account() -> None:
    entries, targets = _entries(_msg("A41", "OLDPAT^^^HOSP^MR||OLDACC^^^HOSP", pid18="ACC^^^HOSP"))
    survivor = _of(entries, "PUT", "Account?" + _q("ACC"))
    assert len(survivor) == 1 and survivor[0]["resource"]["status"] == "active"
    (patch,) = _of(entries, "PATCH", "Account?")
    assert patch["request"]["url"] == "Account?" + _q("OLDACC")
    before = {"resourceType": "Account", "id": "a", "status": "active", "name": "kept"}
    after = apply_fhirpath_patch(before, patch["resource"])
    assert after == {**before, "status": "inactive"}  # nothing else of the prior record changes
    (linkage,) = [e for e in entries if e["resource"]["resourceType"] == "Linkage"]
    items = linkage["resource"]["item"]
    assert items[0] == {"type": "source", "resource": {"reference": survivor[0]["fullUrl"]}}
    assert items[1] == {"type": "historical", "resource": {"reference": "Account?" + _q("OLDACC")}}
    validate_resource({**linkage["resource"], "item": [
        {"type": i["type"], "resource": {"reference": "Account/x"}} for i in items]})  # fmt: skip
    assert [(t.res_type, t.query, t.location) for t in targets] == [
        ("Account", _q("OLDACC"), "MRG^1^3")
    ]
    # the same merge again: the same Linkage (its id derives from the two accounts)
    again, _ = _entries(_msg("A41", "OLDPAT^^^HOSP^MR||OLDACC^^^HOSP", pid18="ACC^^^HOSP"))
    assert [e["request"]["url"] for e in again if e["resource"]["resourceType"] == "Linkage"] == [
        linkage["request"]["url"]
    ]


def test_a42_merge_visit_keeps_the_prior_visit_and_links_it() -> None:
    pv1 = "PV1|1|I|W1" + "|" * 16 + "V2^^^HOSP"
    entries, targets = _entries(_msg("A42", "NEW^^^HOSP||||V1^^^HOSP", pv1=pv1))
    (survivor,) = _of(entries, "PUT", "Encounter?")
    assert survivor["request"]["url"] == "Encounter?" + _q("V2")
    assert not _of(entries, "PATCH", "Encounter?")  # the prior visit's record is kept as it is
    (linkage,) = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Linkage"]
    assert [i["resource"]["reference"] for i in linkage["item"]] == [
        survivor["fullUrl"],
        "Encounter?" + _q("V1"),
    ]
    assert [(t.res_type, t.location) for t in targets] == [("Encounter", "MRG^1^5")]


@pytest.mark.parametrize(
    ("event", "mrg", "pid18", "pv1", "moved"),
    [
        ("A44", "OLD^^^HOSP^MR||ACC^^^HOSP", "ACC^^^HOSP", "", {"Account": "ACC"}),
        (
            "A45",
            "OLD^^^HOSP^MR||||V1^^^HOSP",
            "ACC2^^^HOSP",
            "PV1|1|I" + "|" * 17 + "V1^^^HOSP",
            {"Encounter": "V1"},
        ),  # fmt: skip
        (
            "A43",
            "OLD^^^HOSP^MR||ACC^^^HOSP||V1^^^HOSP",
            "",
            "",
            {"Account": "ACC", "Encounter": "V1"},
        ),  # fmt: skip
    ],
)
def test_moves_repoint_the_record_to_the_pid_patient(event, mrg, pid18, pv1, moved) -> None:  # type: ignore[no-untyped-def]
    entries, targets = _entries(_msg(event, mrg, pid18=pid18, pv1=pv1))
    patient = entries[0]
    assert patient["request"]["url"] == "Patient?" + _q("NEW")
    patches = {e["request"]["url"].split("?")[0]: e for e in _of(entries, "PATCH", "")}
    assert {k: p["request"]["url"] for k, p in patches.items()} == {
        k: f"{k}?{_q(v)}" for k, v in moved.items()
    }
    # no conditional PUT of a moved record besides its patch (a transaction touches it once)
    for kind, value in moved.items():
        assert not _of(entries, "PUT", f"{kind}?{_q(value)}")
        stored = {"resourceType": kind, "id": "x", "status": "in-progress", "class": {"code": "IMP"},
                  "subject": {"reference": "Patient/old"}}  # fmt: skip
        if kind == "Account":
            stored = {**stored, "status": "active", "subject": [{"reference": "Patient/old"}]}
            del stored["class"]
        after = apply_fhirpath_patch(stored, patches[kind]["resource"])
        subject = after["subject"][0] if kind == "Account" else after["subject"]
        assert subject == {"reference": patient["fullUrl"]}
    if event == "A45":  # the visit goes to the PID-18 account, written in the message
        (account,) = _of(entries, "PUT", "Account?" + _q("ACC2"))
        after = apply_fhirpath_patch({"resourceType": "Encounter", "id": "x"},
                                     patches["Encounter"]["resource"])  # fmt: skip
        assert after["account"] == [{"reference": account["fullUrl"]}]
    assert {(t.res_type, t.location) for t in targets} == {
        (kind, "MRG^1^3" if kind == "Account" else "MRG^1^5") for kind in moved
    }


@pytest.mark.parametrize(
    ("event", "mrg", "pid18", "pv1", "kind", "old", "new"),
    [
        ("A49", "NEW^^^HOSP||A1^^^HOSP", "A2^^^HOSP", "", "Account", "A1", "A2"),
        (
            "A50",
            "NEW^^^HOSP||||V1^^^HOSP",
            "",
            "PV1|1|I" + "|" * 17 + "V2^^^HOSP",
            "Encounter",
            "V1",
            "V2",
        ),  # fmt: skip
    ],
)
def test_identifier_changes_keep_the_old_identifier(event, mrg, pid18, pv1, kind, old, new) -> None:  # type: ignore[no-untyped-def]
    entries, targets = _entries(_msg(event, mrg, pid18=pid18, pv1=pv1))
    (patch,) = _of(entries, "PATCH", f"{kind}?")
    assert patch["request"]["url"] == f"{kind}?identifier=" + ",".join(
        search_token(HOSP, v) for v in (old, new)
    )
    stored = {"resourceType": kind, "id": "x",
              "identifier": [{"system": HOSP, "value": old}, {"system": "other", "value": "o"}]}  # fmt: skip
    once = apply_fhirpath_patch(stored, patch["resource"])
    values = [(i.get("use"), i["value"]) for i in once["identifier"]]
    assert values == [(None, "o"), ("old", old), (None, new)]
    assert apply_fhirpath_patch(once, patch["resource"]) == once  # sent again: no change
    assert [t.res_type for t in targets] == [kind]
    assert not _of(entries, "PUT", f"{kind}?")


@pytest.mark.parametrize(
    ("text", "location"),
    [
        (_msg("A41", "P^^^HOSP", pid18="ACC^^^HOSP"), "MRG^1^3"),  # no prior account
        (_msg("A41", "P^^^HOSP||ACC^^^HOSP", pid18="ACC^^^HOSP"), "MRG^1^3"),  # itself
        (_msg("A43", "P^^^HOSP"), "MRG^1^3"),  # nothing to move
        (_msg("A50", "P^^^HOSP||||V1^^^HOSP"), "PV1^1^19"),  # no new visit number
        (_msg("A44", "P^^^HOSP").replace("\rMRG|P^^^HOSP", ""), "MRG"),  # no MRG
    ],
)
def test_a_move_without_its_record_is_ae(text: str, location: str) -> None:
    with pytest.raises(Hl7Error) as err:
        map_parsed(parse(text))
    assert err.value.ack == "AE" and err.value.location == location


def test_each_pl_field_maps_to_its_own_location() -> None:
    """PV1-6 (prior location) without PV1-3: its Location is PV1-6's, not PV1-3's position."""
    base = (
        "MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500||ADT^A02|c|P|2.5.1\rPID|1||M^^^HOSP^MR\r"
    )
    for pv1, want in (
        ("PV1|1|I|||||", []),
        ("PV1|1|I||||PRIOR^R9^B9|", [("PRIOR, R9, B9", "completed")]),
        ("PV1|1|I|NOW^R1^B1|||PRIOR^R9^B9|", [("NOW, R1, B1", "active"), ("PRIOR, R9, B9", "completed")]),
    ):  # fmt: skip
        entries = map_parsed(parse(base + pv1 + "\r")).bundle["entry"]
        places = {e["fullUrl"]: e["resource"] for e in entries if e["resource"]["resourceType"] == "Location"}  # fmt: skip
        (enc,) = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Encounter"]
        got = [(places[loc["location"]["reference"]]["name"], loc["status"])
               for loc in enc.get("location", [])]  # fmt: skip
        assert got == want
        assert all(set(loc) == {"location", "status"} for loc in enc.get("location", []))
