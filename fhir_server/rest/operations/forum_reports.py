"""$forum-reports — ``GET [base]/$forum-reports``: the moderators' queue, the open reports on
forum posts, oldest first (docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-reports``). Administrators only.

Input: ``_count`` (integer, 1–200, default 100). Output: a ``searchset`` Bundle of the reports as
``Communication`` resources (category ``report``, ``about`` the post, the reason as payload;
search mode ``match``) and each reported post once (search mode ``include``, tagged ``hidden``
when it is). Reporters are not named: a report is judged by its post.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import known_inputs, participant, render, store_of
from fhir_server.rest.operations.forum_report import report_resource
from fhir_server.rest.operations.spec import ADMIN, Operation
from resources.errors import Invalid

KNOWN = frozenset({"_count"})


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    count = req.params.integer("_count")
    count = 100 if count is None else count
    if not 1 <= count <= 200:
        raise Invalid("$forum-reports: _count must be between 1 and 200", expression=["_count"])
    store = store_of(ctx)
    reports = store.open_reports(count)
    entries = []
    posts: dict[str, dict] = {}
    for r in reports:
        entries.append(
            {
                "fullUrl": f"{ctx.base}/Communication/{r.id}",
                "resource": report_resource(r.id, r.post_id, r.reason, r.created.isoformat()),
                "search": {"mode": "match"},
            }
        )
        if r.post_id not in posts:
            post = store.post(r.post_id)
            if post is not None:
                posts[r.post_id] = render(post, access)
    for pid, body in posts.items():
        entries.append(
            {
                "fullUrl": f"{ctx.base}/Communication/{pid}",
                "resource": body,
                "search": {"mode": "include"},
            }
        )
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(reports)}
    if entries:
        bundle["entry"] = entries
    return Reply(200, bundle)


OPERATION = Operation(
    name="forum-reports",
    definition="http://hearth.local/fhir/OperationDefinition/forum-reports",
    levels=frozenset({"system"}),
    methods=frozenset({"GET"}),
    permission=ADMIN,
    handler=run,
)
