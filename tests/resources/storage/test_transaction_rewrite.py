"""fullUrl references in narrative XHTML are rewritten by a transaction: ``_rewrite_div`` looks
up only the quoted pieces of the div; it gives what replacing every fullUrl in turn gives."""

from __future__ import annotations

from resources.storage.transaction import _rewrite_div


def _every_fullurl_in_turn(div: str, refs: dict[str, str]) -> str:
    for old, new in refs.items():
        if old in div:
            div = div.replace(f'"{old}"', f'"{new}"')
    return div


REFS = {
    "urn:uuid:1111": "Patient/p1",
    "urn:uuid:2222": "Observation/o2",
    "http://other.example/fhir/Patient/9": "Patient/p9",
    'urn:odd:"quoted"': "Patient/q",
}

DIVS = [
    '<div xmlns="http://www.w3.org/1999/xhtml">no links</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><a href="urn:uuid:1111">me</a></div>',
    '<div><a href="urn:uuid:1111">a</a><a href="urn:uuid:2222">b</a>'
    '<a href="urn:uuid:1111">again</a></div>',
    '<div><a href="http://other.example/fhir/Patient/9">x</a> urn:uuid:2222 unquoted</div>',
    '<div><a href="urn:uuid:11112">longer</a><a href="urn:uuid:111">shorter</a></div>',
    '<div><a href="urn:odd:"quoted"">odd</a></div>',
    '<div>"urn:uuid:1111""urn:uuid:2222"</div>',
    "<div>no quotes urn:uuid:1111</div>",
    "",
]


def test_same_as_replacing_every_fullurl_in_turn():
    for div in DIVS:
        assert _rewrite_div(div, REFS) == _every_fullurl_in_turn(div, REFS), div


def test_rewrites_quoted_fullurls():
    div = '<div><a href="urn:uuid:1111">a</a> "urn:uuid:2222" urn:uuid:2222</div>'
    assert _rewrite_div(div, REFS) == (
        '<div><a href="Patient/p1">a</a> "Observation/o2" urn:uuid:2222</div>'
    )
