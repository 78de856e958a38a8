"""The caller's security filter on matches and included resources (``searching.Security``),
decided per row or, where the type of the rows is known (a typed search, an include naming its
source or target type), from the type alone: either way only readable types, and for a
patient-context caller only its compartment, outside the types it may read freely."""

from __future__ import annotations

import pytest

from resources.search import SearchEngine
from resources.search.engine import SearchRequest, Security, run_search
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from tests.servers import database_url

BASE = "http://sec.test/fhir"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def repo(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    repo = Repository(create_engine(url), SearchEngine(base_urls=(BASE,)))
    items = [("sec-org", {"resourceType": "Organization", "name": "Clinic"})]
    for p in ("a", "b"):
        items.append(
            (
                f"sec-{p}",
                {
                    "resourceType": "Patient",
                    "gender": "female",
                    "managingOrganization": {"reference": "Organization/sec-org"},
                },
            )
        )
        items.append(
            (
                f"sec-obs-{p}",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": f"Patient/sec-{p}"},
                },
            )
        )
    repo.run(lambda u: u.create_many(items))
    yield repo
    repo.engine.dispose()
    cleanup()


def _search(repo, res_type, query, security):  # type: ignore[no-untyped-def]
    req = SearchRequest(res_type=res_type, query=query, path=res_type, security=security)
    bundle = repo.read(lambda u: run_search(u, req, base=BASE))
    return {
        (e["search"]["mode"], f"{e['resource']['resourceType']}/{e['resource']['id']}")
        for e in bundle.get("entry", [])
        if e["search"]["mode"] != "outcome"
    }


PATS = [("_id", "sec-a,sec-b")]
REV = [*PATS, ("_revinclude", "Observation:subject")]
REV_ANY = [*PATS, ("_revinclude", "*")]
INC = [("_id", "sec-obs-a,sec-obs-b"), ("_include", "Observation:subject:Patient")]
INC_ITER = [*INC, ("_include:iterate", "Patient:organization:Organization")]


def test_readable_types(repo):  # type: ignore[no-untyped-def]
    both = Security(types=frozenset({"Patient", "Observation"}))
    assert _search(repo, "Patient", REV, both) == {
        ("match", "Patient/sec-a"),
        ("match", "Patient/sec-b"),
        ("include", "Observation/sec-obs-a"),
        ("include", "Observation/sec-obs-b"),
    }
    patients = Security(types=frozenset({"Patient"}))
    assert _search(repo, "Patient", REV, patients) == {
        ("match", "Patient/sec-a"),
        ("match", "Patient/sec-b"),
    }
    assert _search(repo, "Patient", REV_ANY, patients) == {
        ("match", "Patient/sec-a"),
        ("match", "Patient/sec-b"),
    }
    assert _search(repo, "Observation", INC, patients) == set()
    observations = Security(types=frozenset({"Observation"}))
    assert _search(repo, "Observation", INC, observations) == {
        ("match", "Observation/sec-obs-a"),
        ("match", "Observation/sec-obs-b"),
    }
    assert _search(repo, "Observation", INC_ITER, both) == {
        ("match", "Observation/sec-obs-a"),
        ("match", "Observation/sec-obs-b"),
        ("include", "Patient/sec-a"),
        ("include", "Patient/sec-b"),
    }
    every = Security(types=frozenset({"Patient", "Observation", "Organization"}))
    assert ("include", "Organization/sec-org") in _search(repo, "Observation", INC_ITER, every)


def test_patient_context(repo):  # type: ignore[no-untyped-def]
    types = frozenset({"Patient", "Observation", "Organization"})
    own = Security(types=types, compartment=("Patient", "sec-a"), free_types=frozenset())
    assert _search(repo, "Patient", REV, own) == {
        ("match", "Patient/sec-a"),
        ("include", "Observation/sec-obs-a"),
    }
    assert _search(repo, "Patient", REV_ANY, own) == {
        ("match", "Patient/sec-a"),
        ("include", "Observation/sec-obs-a"),
    }
    assert _search(repo, "Observation", INC_ITER, own) == {
        ("match", "Observation/sec-obs-a"),
        ("include", "Patient/sec-a"),
    }
    # Observations readable freely (a user-level grant): every Observation, but only its own
    # Patient.
    free = Security(
        types=types, compartment=("Patient", "sec-a"), free_types=frozenset({"Observation"})
    )
    assert _search(repo, "Observation", INC, free) == {
        ("match", "Observation/sec-obs-a"),
        ("match", "Observation/sec-obs-b"),
        ("include", "Patient/sec-a"),
    }
    assert _search(repo, "Patient", REV, free) == {
        ("match", "Patient/sec-a"),
        ("include", "Observation/sec-obs-a"),  # the page holds only Patient/sec-a
    }
