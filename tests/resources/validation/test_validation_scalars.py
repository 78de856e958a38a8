"""A JSON scalar where FHIR has a complex element is a structure error (found by the fuzz test:
``"meta": 1.5`` passed validation and crashed the write with a 500)."""

from __future__ import annotations

import pytest

from resources.validation import validate_resource


@pytest.mark.parametrize(
    "element",
    [{"meta": 1.5}, {"meta": True}, {"text": False}, {"maritalStatus": 3}, {"name": [2]}],
)
def test_scalar_for_complex_element(element):
    issues = validate_resource({"resourceType": "Patient", **element})
    assert [i.code for i in issues] == ["structure"]
    assert "expected a JSON object" in issues[0].diagnostics
