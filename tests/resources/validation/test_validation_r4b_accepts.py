"""resources.validation.r4b_accepts: the quick proof that the R4B model accepts a resource.

What the fast path may never do is answer "accepted" where the model objects: then a resource
would pass validation that is refused today. These tests check that on every official example,
on Synthea resources, and on generated bad input aimed at what only the R4B model catches; and
that ``validate_resource`` reports exactly the same issues with and without the fast path.
"""

from __future__ import annotations

import copy
import json
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resources.validation import r4b as validation_r4b
from resources.validation import validate_resource
from resources.validation.r4b_accepts import accepts
from tests.shared import json_places, shared_path

EXAMPLE_FILES = sorted(shared_path("fhir", "r4-examples").glob("*.json"))
SYNTHEA = shared_path("synthea", "r4_transaction_bundles_all617.tar.gz")


def _synthea(bundles: int) -> list[dict]:
    out: list[dict] = []
    with tarfile.open(SYNTHEA) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                f = tar.extractfile(member)
                assert f is not None
                out += [e["resource"] for e in orjson.loads(f.read())["entry"]]
                bundles -= 1
                if bundles == 0:
                    break
    return out


EXAMPLES = [json.loads(Path(p).read_text(encoding="utf-8")) for p in EXAMPLE_FILES]
SYNTHEA_SAMPLE = _synthea(3)


def model_accepts(resource: Any) -> bool:
    """Whether the model, run on the resource as it is, finds nothing but properties it does not
    have (``extra_forbidden``, which validation_r4b always drops)."""
    cls = validation_r4b.model(resource["resourceType"])
    try:
        cls.model_validate(resource)
    except pydantic.ValidationError as failed:
        return all(e["type"] == "extra_forbidden" for e in failed.errors())
    except (KeyError, TypeError, ValueError, AttributeError):
        return False  # the model's crash, reported by validation_r4b
    return True


def fast_accepts(resource: Any) -> bool:
    return accepts(validation_r4b.model(resource["resourceType"]), resource)


def with_model(resource: dict) -> bool:
    return validation_r4b.model(resource.get("resourceType")) is not None


# -- agreement on real data --------------------------------------------------------------------


def test_agrees_with_the_model_on_every_official_example() -> None:
    judged = [r for r in EXAMPLES if with_model(r)]
    assert len(judged) > 550
    differ = [r.get("id") for r in judged if fast_accepts(r) != model_accepts(r)]
    assert differ == []


def test_agrees_with_the_model_on_synthea() -> None:
    assert len(SYNTHEA_SAMPLE) > 300
    differ = [(r["resourceType"], r["id"]) for r in SYNTHEA_SAMPLE if not fast_accepts(r)]
    assert differ == []  # every one is valid, and the model accepts every one
    assert all(model_accepts(r) for r in SYNTHEA_SAMPLE[:50])


# -- what only the R4B model catches: the fast path must not accept it --------------------------

OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe", "given": ["Ann"]}]}
REFUSED = [
    ("impossible date", {**PATIENT, "birthDate": "1990-02-30"}),
    ("impossible dateTime", {**OBSERVATION, "effectiveDateTime": "2021-04-31T10:00:00Z"}),
    ("month 13", {**PATIENT, "birthDate": "1990-13"}),
    ("missing required primitive", {"resourceType": "Observation", "code": {"text": "x"}}),
    ("required primitive with empty _", {**OBSERVATION, "status": None, "_status": {"id": "a"}}),
    ("two choice values", {**PATIENT, "deceasedBoolean": True, "deceasedDateTime": "2020"}),
    (
        "missing required choice",
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/1"},
        },
    ),
    ("unicode space only string", {**PATIENT, "name": [{"family": "\u00a0"}]}),
    ("vertical tab only string", {**PATIENT, "name": [{"family": "\x0b"}]}),
    ("code with two unicode spaces", {**PATIENT, "gender": "a\u00a0\u00a0b"}),
    ("null in a complex list", {**PATIENT, "name": [None]}),
    ("null in a list of extensions", {**PATIENT, "extension": [None]}),
    ("primitive extension without content", {**PATIENT, "_birthDate": {}}),
    ("resourceType on an element", {**PATIENT, "name": [{"resourceType": "Patient"}]}),
    ("wrong nested resourceType", {**PATIENT, "contained": [{"resourceType": "Foo"}]}),
    ("integer out of range", {**PATIENT, "multipleBirthInteger": 2**31}),
    ("bad base64", {"resourceType": "Binary", "contentType": "text/plain", "data": "a=bc"}),
    ("id too long for R4B", {**PATIENT, "id": "x" * 256}),
]


@pytest.mark.parametrize("resource", [r for _, r in REFUSED], ids=[n for n, _ in REFUSED])
def test_not_accepted_where_the_model_objects(resource: dict) -> None:
    if model_accepts(resource):
        pytest.fail("the model accepts this case; it proves nothing here")
    assert not fast_accepts(resource)


@pytest.mark.parametrize(
    "resource",
    [
        {**PATIENT, "contained": [{"id": "x"}]},
        {**PATIENT, "birthDate__ext": {"id": "x"}},
        {**PATIENT, "resource_type": "Patient"},
        {**PATIENT, "maritalStatus": '{"text": "x"}'},
    ],
    ids=["nested resource without type", "python field name", "resource_type", "JSON text"],
)
def test_left_to_the_model_where_it_is_lenient(resource: dict) -> None:
    """Odd input the model lets through in ways the fast path does not reproduce: it says "not
    shown", and the model decides (as before)."""
    assert model_accepts(resource)
    assert not fast_accepts(resource)


@pytest.mark.parametrize(
    "resource",
    [
        {**PATIENT, "name": [{"given": ["Ann", None], "_given": [None, {"id": "g"}]}]},
        {**OBSERVATION, "status": None, "_status": {"extension": [{"url": "http://x"}]}},
        {**PATIENT, "contained": [{"resourceType": "Organization", "id": "o"}]},
        {**PATIENT, "unknownToR4B": 1},  # extra_forbidden: always dropped, never a finding
    ],
)
def test_accepted_where_the_model_accepts(resource: dict) -> None:
    assert model_accepts(resource)
    assert fast_accepts(resource)


# -- generated bad input --------------------------------------------------------------------------

STRINGS = st.sampled_from(
    [
        "2020-02-30",
        "2019-02-29",
        "2020-02-29",
        "2021-13",
        "2016-12-31T23:59:60Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T10:00:00",
        "2020-01-01T10:00:00+14:00",
        "23:59:60",
        "\u00a0",
        "\x0b",
        "a\u00a0\u00a0b",
        " x",
        "urn:uuid:c757873d-ec9a-1326-a141-556f43239520",
        "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
        "urn:oid:1.2.3",
        "QUJD",
        "QUJ=D",
        "x" * 300,
        "-0",
        "1e5",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | STRINGS
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "resourceType",
        "resource_type",
        "fhir_comments",
        "extension",
        "id",
        "valueString",
        "valueDateTime",
        "valueBoolean",
        "_status",
        "class_fhir",
        "status__ext",
        "deceasedDateTime",
        "effectivePeriod",
    ]
)
SEEDS = [
    r
    for r in EXAMPLES
    if r.get("resourceType")
    in ("Patient", "Observation", "Bundle", "CarePlan", "QuestionnaireResponse", "Encounter")
    and with_model(r)
][:40] + SYNTHEA_SAMPLE[:40]


@st.composite
def mutated(draw: st.DrawFn) -> dict:
    resource = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        places = json_places(resource)
        container, key = places[draw(st.integers(0, len(places) - 1))]
        action = draw(
            st.sampled_from(
                ["string", "value", "delete", "null", "add", "sibling", "wrap", "unwrap"]
            )
        )
        if action == "string":
            container[key] = draw(STRINGS)
        elif action == "value":
            container[key] = draw(VALUES)
        elif action == "delete":
            del container[key]
        elif action == "null":
            container[key] = None
        elif action == "add" and isinstance(container, dict):
            container[draw(KEYS)] = draw(VALUES)
        elif action == "sibling" and isinstance(container, dict) and isinstance(key, str):
            # a second value for a choice element: valueQuantity next to valueString...
            container[key + "X"] = container[key]
            container[draw(KEYS)] = container[key]
        elif action == "wrap":
            container[key] = [container[key]]
        elif action == "unwrap" and isinstance(container[key], list) and container[key]:
            container[key] = container[key][0]
    resource["resourceType"] = resource.get("resourceType") or "Patient"
    if not isinstance(resource["resourceType"], str) or not with_model(resource):
        resource["resourceType"] = "Patient"
    return resource


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_never_accepts_what_the_model_refuses(resource: dict) -> None:
    if fast_accepts(resource):
        assert model_accepts(resource)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_validation_issues_are_the_same_without_the_fast_path(resource: dict) -> None:
    fast = validate_resource(resource)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation_r4b, "accepts", lambda cls, data: False)
        slow = validate_resource(resource)
    assert fast == slow


def test_examples_issues_are_the_same_without_the_fast_path() -> None:
    fast = [validate_resource(r) for r in EXAMPLES]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation_r4b, "accepts", lambda cls, data: False)
        slow = [validate_resource(r) for r in EXAMPLES]
    assert fast == slow


def test_prepare_builds_the_tables_of_every_model_a_type_reaches():
    """What the preforking server builds before it forks: Patient's own table and those of the
    models it nests (HumanName …), each once, so that later use finds them built."""
    from fhir.resources.R4B.humanname import HumanName

    from resources.validation.r4b import model
    from resources.validation.r4b_accepts import _model, prepare

    reached = prepare(model("Patient"))
    before = _model.cache_info()
    _model(HumanName)
    after = _model.cache_info()
    assert reached > 10
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
