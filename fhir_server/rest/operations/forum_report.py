"""$forum-report — ``POST [base]/$forum-report``: report a forum post to the moderators
(docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-report``).

Inputs: ``post`` (the post's id, required) and ``reason`` (valueString, required, at most 500
characters). Output: 201 and the report as a ``Communication`` (category ``report``, ``about``
the post, the reason as its payload; no reporter named). The reporter's account is kept with the
report and in the audit log, for the moderators' eyes only. A blocked member may still report.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import (
    MAX_REASON,
    SYSTEM,
    audit_ref,
    known_inputs,
    now,
    participant,
    post_id,
    store_of,
    text_input,
    visible_post,
)
from fhir_server.rest.operations.spec import Operation, Permission

KNOWN = frozenset({"post", "reason"})


def report_resource(report_id: str, post: str, reason: str, sent: str) -> dict:
    return {
        "resourceType": "Communication",
        "id": report_id,
        "meta": {"tag": [{"system": SYSTEM, "code": "forum"}]},
        "status": "completed",
        "category": [{"coding": [{"system": SYSTEM, "code": "report"}]}],
        "about": [{"reference": f"Communication/{post}"}],
        "sent": sent,
        "payload": [{"contentString": reason}],
    }


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    pid = post_id(req, "post")
    reason = text_input(req, "reason", MAX_REASON, required=True)
    assert reason is not None and access.username is not None
    store = store_of(ctx)
    store.join(access.username, now())
    post = visible_post(store, access, pid)
    when = now()
    report_id = store.add_report(post.id, access.username, reason, when)
    return Reply(
        201,
        report_resource(report_id, post.id, reason, when.isoformat()),
        audit_what=(audit_ref(post.id),),
        audit_detail=f"forum: report {report_id} on {post.id}",
    )


OPERATION = Operation(
    name="forum-report",
    definition="http://hearth.local/fhir/OperationDefinition/forum-report",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(
        self_checked=True,
        reason="any signed-in person may report a post they can see "
        "(operations/forum_common.py, docs/community.md)",
    ),
    handler=run,
)
