"""Normalisation of values, per type, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resources.search import date, number, reference, string, token, ucum
from resources.search.tables import idx_reference, idx_token


def us(*args: int, tz: timedelta = timedelta(0)) -> int:
    return (datetime(*args, tzinfo=UTC) - tz - date.EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2013", us(2013, 1, 1), us(2014, 1, 1) - 1),
        ("2013-02", us(2013, 2, 1), us(2013, 3, 1) - 1),
        ("2012-12", us(2012, 12, 1), us(2013, 1, 1) - 1),
        ("2013-01-14", us(2013, 1, 14), us(2013, 1, 15) - 1),
        ("2013-01-14T10:00", us(2013, 1, 14, 10), us(2013, 1, 14, 10, 1) - 1),
        ("2013-01-14T10:00:00Z", us(2013, 1, 14, 10), us(2013, 1, 14, 10, 0, 1) - 1),
        (
            "2013-01-14T10:00:00+10:00",
            us(2013, 1, 14, 0),
            us(2013, 1, 14, 0, 0, 1) - 1,
        ),
        (
            "2013-01-14T10:00:00.5Z",
            us(2013, 1, 14, 10, 0, 0, 500000),
            us(2013, 1, 14, 10, 0, 0, 599999),
        ),
        (
            "2013-01-14T10:00:00.123456789Z",
            us(2013, 1, 14, 10, 0, 0, 123456),
            us(2013, 1, 14, 10, 0, 0, 123456),
        ),
        ("2016-12-31T23:59:60Z", us(2016, 12, 31, 23, 59, 59), us(2017, 1, 1) - 1),
        ("9999", us(9999, 1, 1), date.MAX_US),
    ],
)
def test_date_ranges(text: str, low: int, high: int) -> None:
    assert date.date_range(text) == (low, high)


@pytest.mark.parametrize(
    "bad", ["2013-13", "13-01-01", "2013-01-32", "2013-01-01T25:00", "today", ""]
)
def test_bad_dates(bad: str) -> None:
    with pytest.raises(ValueError):
        date.date_range(bad)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_date_precisions_nest(dt: datetime) -> None:
    """Each finer precision lies inside the coarser ones, and a range never inverts."""
    y = f"{dt.year:04d}"
    texts = [
        y,
        f"{y}-{dt:%m}",
        f"{y}-{dt:%m-%d}",
        f"{y}-{dt:%m-%dT%H:%M}",
        f"{y}-{dt:%m-%dT%H:%M:%S}Z",
        f"{y}-{dt:%m-%dT%H:%M:%S.%f}Z",
        f"{y}-{dt:%m-%dT%H:%M:%S.%f}"[:-3] + "Z",
    ]
    ranges = [date.date_range(t) for t in texts]
    assert ranges[-1][0] <= ranges[-2][0] <= ranges[-2][1] <= ranges[-1][1]
    ranges = ranges[:-1]
    for (lo1, hi1), (lo2, hi2) in zip(ranges, ranges[1:], strict=False):
        assert lo1 <= lo2 <= hi2 <= hi1


def test_period_and_timing_ranges() -> None:
    assert date.value_range("Period", {"start": "2013-01-01", "end": "2013-01-31"}) == (
        us(2013, 1, 1),
        us(2013, 2, 1) - 1,
    )
    assert date.value_range("Period", {"start": "2013-01-01"}) == (us(2013, 1, 1), date.MAX_US)
    assert date.value_range("Period", {"end": "2013"}) == (date.MIN_US, us(2014, 1, 1) - 1)
    timing = {
        "event": ["2013-01-05", "2013-01-02"],
        "repeat": {"boundsPeriod": {"start": "2013-01-04", "end": "2013-02"}},
    }
    assert date.value_range("Timing", timing) == (us(2013, 1, 2), us(2013, 3, 1) - 1)


@pytest.mark.parametrize(
    ("text", "value", "half"),
    [
        ("100", "100", "0.5"),
        ("100.00", "100", "0.005"),
        ("1e2", "100", "50"),
        ("1.5e-3", "0.0015", "0.00005"),
        ("-7", "-7", "0.5"),
    ],
)
def test_number_precision(text: str, value: str, half: str) -> None:
    n = number.parse_number(text)
    assert n.value == Decimal(value) and n.half == Decimal(half)


def test_string_normalisation() -> None:
    assert string.normalise("  Éve  Müller ") == "eve muller"
    assert string.normalise("ØRSTED") == "ørsted"
    assert string.normalise("Straße") == "strasse"
    assert string.normalise("x" * 400) == "x" * 255
    name = {"family": "Chalmers", "given": ["Peter", "James"], "prefix": ["Mr"], "text": "Jim"}
    assert string.strings_of("HumanName", name) == ["Chalmers", "Peter", "James", "Mr", "Jim"]
    address = {"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}
    assert string.strings_of("Address", address) == ["534 Erewhon St", "PleasantVille", "3999"]


def test_token_rows() -> None:
    out: list = []
    token.index(
        1,
        [
            (
                "CodeableConcept",
                {"coding": [{"system": "s", "code": "c", "display": "Disp"}], "text": "Txt"},
            ),
            (
                "Identifier",
                {
                    "system": "ids",
                    "value": "42",
                    "type": {"coding": [{"system": "t", "code": "MR"}]},
                },
            ),
            ("boolean", True),
            ("code", "male"),
            ("ContactPoint", {"system": "phone", "value": "555"}),
        ],
        out,
    )
    rows = [r for t, r in out if t is idx_token]
    assert [(r[4], r[5], r[6]) for r in rows] == [
        ("s", "c", "disp"),
        (None, None, "txt"),
        ("ids", "42", None),
        (None, None, None),  # the :of-type row
        (None, "true", None),
        (None, "male", None),
        (None, "555", None),
    ]


@pytest.mark.parametrize(
    ("ref", "canonical", "expected"),
    [
        ("Patient/1", False, ("Patient", "1", None, None)),
        ("Patient/1/_history/3", False, ("Patient", "1", "3", None)),
        ("http://hearth.test/fhir/Patient/1", False, ("Patient", "1", None, None)),
        (
            "http://other.org/fhir/Patient/1",
            False,
            ("Patient", None, None, "http://other.org/fhir/Patient/1"),
        ),
        ("urn:uuid:abc", False, (None, None, None, "urn:uuid:abc")),
        (
            "http://x.org/Questionnaire/q|2.0",
            True,
            ("Questionnaire", None, "2.0", "http://x.org/Questionnaire/q"),
        ),
        ("#contained", False, None),
        ("not a ref", False, None),
    ],
)
def test_reference_rows(ref: str, canonical: bool, expected: tuple | None) -> None:
    row = reference.reference_row(7, ref, ("http://hearth.test/fhir",), canonical=canonical)
    if expected is None:
        assert row is None
    else:
        assert row is not None and row[0] is idx_reference
        assert row[1][1:5] == expected


@pytest.mark.parametrize(
    ("unit", "factor", "canonical"),
    [
        ("mg", 1e-3, "g"),
        ("kg", 1e3, "g"),
        ("[lb_av]", 453.59237, "g"),
        ("mg/dL", 10.0, "g.m-3"),
        ("mmol/L", 1.0, "m-3.mol"),
        ("/min", 1 / 60, "s-1"),
        ("{beats}/min", 1 / 60, "s-1"),
        ("kg/m2", 1e3, "g.m-2"),
        ("mm[Hg]", 133322.387415, "g.m-1.s-2"),
        ("10*3/uL", 1e12, "m-3"),
        ("%", 0.01, "1"),
        ("wk", 604800.0, "s"),
    ],
)
def test_ucum(unit: str, factor: float, canonical: str) -> None:
    got = ucum.canonical(unit)
    assert got is not None
    assert got[0] == pytest.approx(factor) and got[1] == canonical


@pytest.mark.parametrize("unit", ["Cel", "[degF]", "bogus", "m(2)", ""])
def test_ucum_not_convertible(unit: str) -> None:
    assert ucum.canonical(unit) is None
