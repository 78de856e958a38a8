"""Relative ``Attachment.url`` values made absolute for export, found through the R4 type model
(the HTTP path: tests/fhir_server/test_bulk_conformance.py)."""

from __future__ import annotations

import orjson

from resources.jobs.attachments import absolute_url, with_absolute_attachments

BASE = "https://h.test/fhir"


def test_absolute_url_resolves_only_relative_ones():
    assert absolute_url("Binary/1", BASE) == f"{BASE}/Binary/1"
    assert absolute_url("Binary/1", BASE + "/") == f"{BASE}/Binary/1"
    assert absolute_url("/files/x.pdf", BASE) == "https://h.test/files/x.pdf"
    for url in ("https://o.test/x", "urn:uuid:5b1c1f0e-0000-4000-8000-000000000000", ""):
        assert absolute_url(url, BASE) == url


def test_text_without_a_relative_url_is_returned_as_it_is():
    text = '{"resourceType":"Media","status":"completed","content":{"url":"https://o.test/x"}}'
    assert with_absolute_attachments(text, BASE) is text
    # a relative url that is not an Attachment's (an extension's url) is left too
    other = '{"resourceType":"Patient","extension":[{"url":"local-ext","valueString":"x"}]}'
    assert with_absolute_attachments(other, BASE) is other


def test_every_attachment_the_type_model_names_is_reached():
    """Through a Bundle entry's resource and nested backbone elements (R4
    QuestionnaireResponse.item.answer.value[x] and item.item)."""
    answer = {"valueAttachment": {"url": "Binary/a"}}
    nested = {"linkId": "2", "answer": [{"valueAttachment": {"url": "Binary/n"}}]}
    resource = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "QuestionnaireResponse",
                    "status": "completed",
                    "item": [{"linkId": "1", "answer": [answer], "item": [nested]}],
                }
            }
        ],
    }
    out = with_absolute_attachments(orjson.dumps(resource).decode(), BASE)
    assert isinstance(out, dict)
    item = out["entry"][0]["resource"]["item"][0]
    assert item["answer"][0]["valueAttachment"]["url"] == f"{BASE}/Binary/a"
    assert item["item"][0]["answer"][0]["valueAttachment"]["url"] == f"{BASE}/Binary/n"
