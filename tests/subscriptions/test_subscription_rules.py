"""What a Subscription may ask for: bad criteria, channels and endpoints are refused with an
OperationOutcome and nothing is stored."""

from __future__ import annotations

import pytest

from tests.subscriptions.test_rest_hook import subscription

OK = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        (subscription(OK, "Nonsense?x=1"), 400, "invalid", "resource type"),
        (subscription(OK, "Observation?no-such-param=1"), 400, "invalid", "no-such-param"),
        (subscription("https://example.org/hook", "Observation"), 400, "invalid",
         "HEARTH_SUBSCRIPTION_ENDPOINTS"),
        (subscription("ftp://127.0.0.1/x", "Observation"), 400, "invalid", "endpoint"),
        ({**subscription(OK, "Observation"), "channel": {"type": "email"}}, 400,
         "invalid", "mailto"),
        ({**subscription(OK, "Observation"),
          "channel": {"type": "email", "endpoint": "mailto:a@example.org,b@example.org"}}, 400,
         "invalid", "one e-mail address"),
        ({**subscription(OK, "Observation"),
          "channel": {"type": "email", "endpoint": "mailto:a@example.org"}}, 400,
         "invalid", "HEARTH_SMTP_HOST"),  # this Hearth has no SMTP server
        ({**subscription(OK, "Observation"), "channel": {"type": "sms"}}, 400,
         "not-supported", "sms"),
        (subscription(OK, "Observation", payload="text/plain"), 400, "not-supported",
         "payload"),
        (subscription(OK, "http://hearth.local/fhir/SubscriptionTopic/resource-changed"), 400,
         "invalid", "filter"),
        (subscription(OK, "http://hearth.local/fhir/SubscriptionTopic/task-assigned",
                      _criteria={"extension": [{
                          "url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                 "StructureDefinition/backport-filter-criteria",
                          "valueString": "Patient?name=x"}]}), 400, "invalid", "not Patient"),
        ({**subscription(OK, "Observation"),
          "channel": {"type": "rest-hook", "endpoint": OK, "payload": "application/fhir+json",
                      "_payload": {"extension": [{
                          "url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                 "StructureDefinition/backport-payload-content",
                          "valueCode": "everything"}]}}}, 400, "invalid", "payload-content"),
    ],
)  # fmt: skip
def test_bad_subscriptions_are_refused(fhir, body, status, code, text):
    before = fhir.get("/Subscription", params={"_summary": "count"}).json()["total"]
    answer = fhir.post("/Subscription", json=body)
    assert answer.status_code == status, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert text in outcome["issue"][0]["diagnostics"]
    assert fhir.get("/Subscription", params={"_summary": "count"}).json()["total"] == before
