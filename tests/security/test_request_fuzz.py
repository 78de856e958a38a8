"""Property tests of the request surface (issue 14), on SQLite and PostgreSQL: arbitrary JSON
values, strings with control characters, huge numbers and deep nesting in bodies, search and
history parameters, Bundles and operation parameters. No answer is a 5xx, and every 4xx is an
OperationOutcome with an issue code. Runs are bounded (few examples, no deadline)."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FHIR_JSON = {"Content-Type": "application/fhir+json"}

# Text with control characters (NUL included), other scripts' digits, and nothing excluded but
# surrogates (which cannot be sent as UTF-8).
texts = st.text(
    st.sampled_from(list("\x00\x01\x1b\x1f\t\n a9²٣|,$:."))
    | st.characters(exclude_categories=["Cs"]),
    max_size=12,
)
huge = st.integers(-(10**40), 10**40)
numbers = st.one_of(
    huge.map(str),
    st.sampled_from(["2147483648", "9223372036854775808", "-1", "1e400", "9" * 5000, "²", "0x10"]),
)
instants = st.sampled_from(
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2024-02-30T00:00:00Z",
        "2024-01-01",
        "2024-01-01T25:00:00Z",
    ]
)
values = st.one_of(texts, numbers, instants)
scalars = st.one_of(st.none(), st.booleans(), huge, st.floats(allow_nan=False), texts)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
    max_leaves=12,
)


def nested(depth: int, leaf: str) -> list:
    """Valid extensions of extensions, ``depth`` deep (two JSON levels each)."""
    node: dict = {"url": "http://example.org/x", "valueString": leaf or "x"}
    for _ in range(depth):
        node = {"url": "http://example.org/x", "extension": [node]}
    return [node]


deep = st.builds(nested, st.integers(20, 400), texts)
fields = st.sampled_from(
    ["name", "identifier", "birthDate", "gender", "active", "extension", "id", "meta", "text"]
)
patients = st.one_of(
    st.dictionaries(fields, json_values, max_size=3),
    st.fixed_dictionaries({"extension": deep}),
    st.fixed_dictionaries({"name": st.lists(st.fixed_dictionaries({"family": texts}), min_size=1)}),
).map(lambda d: {**d, "resourceType": "Patient"})
search_names = st.sampled_from(
    [
        "name",
        "_id",
        "identifier",
        "birthdate",
        "_lastUpdated",
        "_count",
        "_page",
        "_sort",
        "_since",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "general-practitioner",
        "general-practitioner:Practitioner.name",
        "_has:Observation:subject:code",
        "value-quantity",
        "probability",
        "date",
    ]
)
params = st.lists(st.tuples(search_names | texts, values), max_size=3)


def _dump(body: object) -> bytes:
    return json.dumps(body).encode()  # the standard library writes integers of any size


def _check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, f"{resp.status_code} {resp.text[:500]}"
    if resp.status_code >= 400:
        body = resp.json()
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"] and all(i.get("code") for i in body["issue"]), body


@FUZZ
@given(
    res_type=st.sampled_from(["Patient", "Observation", "RiskAssessment", "AuditEvent"]),
    query=params,
)
def test_search_parameters(client, res_type, query):
    _check(client.get(f"/{res_type}", params=query))


@FUZZ
@given(query=params, vid=texts | numbers, level=st.sampled_from(["", "Patient/", "instance"]))
def test_history_parameters(client, query, vid, level):
    if level == "instance":
        pid = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        _check(client.get(f"/Patient/{pid}/_history", params=query))
        _check(client.get(f"/Patient/{pid}/_history/{quote(vid, safe='')}"))
    else:
        _check(client.get(f"/{level}_history", params=query))


@FUZZ
@given(body=patients)
def test_create_update_validate(client, body):
    raw = _dump(body)
    _check(client.post("/Patient", content=raw, headers=FHIR_JSON))
    _check(client.post("/Patient/$validate", content=raw, headers=FHIR_JSON))
    _check(
        client.put(
            "/Patient/fuzz-target", content=_dump({**body, "id": "fuzz-target"}), headers=FHIR_JSON
        )
    )


@FUZZ
@given(
    ops=st.lists(
        st.fixed_dictionaries(
            {"op": st.sampled_from(["add", "replace", "remove", "test", "move"]), "path": texts},
            optional={"value": json_values, "from": texts},
        ),
        max_size=3,
    )
)
def test_json_patch(client, ops):
    pid = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    _check(
        client.patch(
            f"/Patient/{pid}",
            content=_dump(ops),
            headers={"Content-Type": "application/json-patch+json"},
        )
    )


entries = st.lists(
    st.fixed_dictionaries(
        {
            "request": st.fixed_dictionaries(
                {
                    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "BREW"]),
                    "url": st.one_of(
                        texts,
                        st.sampled_from(
                            [
                                "Patient",
                                "Patient/p1",
                                "Patient?name=a%00",
                                "Patient/p1/_history/2147483648",
                            ]
                        ),
                        params.map(
                            lambda q: "Patient?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in q)
                        ),
                    ),
                },
                optional={"ifNoneExist": texts, "ifMatch": texts},
            )
        },
        optional={"resource": patients | json_values, "fullUrl": texts},
    ),
    max_size=4,
)


@FUZZ
@given(kind=st.sampled_from(["batch", "transaction"]), entry=entries)
def test_batch_and_transaction(client, kind, entry):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entry}
    _check(client.post("/", content=_dump(bundle), headers=FHIR_JSON))


@FUZZ
@given(
    op=st.sampled_from(
        [
            "/$audit-log",
            "/CodeSystem/$lookup",
            "/ValueSet/$validate-code",
            "/ValueSet/$expand",
            "/CodeSystem/$subsumes",
            "/ConceptMap/$translate",
            "/Patient/$validate",
        ]
    ),
    query=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "after",
                    "_count",
                    "system",
                    "code",
                    "url",
                    "filter",
                    "count",
                    "offset",
                    "codeA",
                    "codeB",
                    "mode",
                ]
            ),
            values,
        ),
        max_size=3,
    ),
)
def test_operation_parameters(client, op, query):
    _check(client.get(op, params=query))


# The administration operations (docs/security.md "Administering accounts") and
# Schedule/$generate-slots: any value of any of their inputs, in a Parameters body.
ADMIN_INPUTS = [
    "username",
    "role",
    "practitioner",
    "family",
    "given",
    "email",
    "password",
    "active",
    "start",
    "weeks",
    "dayOfWeek",
    "startTime",
    "endTime",
    "slotMinutes",
    "timeZone",
]
VALUE_KEYS = [
    "valueString",
    "valueCode",
    "valueInteger",
    "valueDate",
    "valueTime",
    "valueBoolean",
    "valueReference",
]


@FUZZ
@given(
    op=st.sampled_from(
        [
            "$user-create",
            "$user-deactivate",
            "$user-reactivate",
            "$user-roles",
            "$user-reset-totp",
            "Schedule/fuzz-schedule/$generate-slots",
        ]
    ),
    inputs=st.lists(
        st.tuples(st.sampled_from(ADMIN_INPUTS), st.sampled_from(VALUE_KEYS), json_values | values),
        max_size=6,
    ),
)
def test_admin_operation_inputs(client, op, inputs):
    client.put(
        "Schedule/fuzz-schedule",
        json={"resourceType": "Schedule", "id": "fuzz-schedule", "actor": [{"display": "x"}]},
    )
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": name, key: value} for name, key, value in inputs],
    }
    _check(client.post(op, content=_dump(body), headers=FHIR_JSON))
