"""$forum-threads — ``GET|POST [base]/$forum-threads``: the community forum's threads, newest
activity first (docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-threads``).

Input: ``_count`` (integer, 1–200, default 50). Output: a ``searchset`` Bundle of the threads as
``Communication`` resources (``topic``, the opening post's text, the author's pseudonym — or the
name they chose to show — in the ``forum-author`` extension), each with its number of visible
replies (``forum-replies``) and the time of its last post (``forum-last-activity``). Hidden
threads are listed for moderators only. Any signed-in person may read; nothing in the answer names
a patient or an account.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import (
    LAST_ACTIVITY,
    REPLIES,
    is_moderator,
    known_inputs,
    participant,
    render,
    store_of,
)
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Invalid

KNOWN = frozenset({"_count"})


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    count = req.params.integer("_count")
    if count is None:
        count = 50
    if not 1 <= count <= 200:
        raise Invalid("$forum-threads: _count must be between 1 and 200", expression=["_count"])
    threads = store_of(ctx).threads(with_hidden=is_moderator(access), limit=count)
    entries = []
    for t in threads:
        body = render(t.post, access)
        body["extension"] += [
            {"url": REPLIES, "valueInteger": t.replies},
            {"url": LAST_ACTIVITY, "valueDateTime": t.last_activity.isoformat()},
        ]
        entries.append({"fullUrl": f"{ctx.base}/Communication/{t.post.id}", "resource": body,
                        "search": {"mode": "match"}})  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if entries:
        bundle["entry"] = entries
    return Reply(200, bundle)


OPERATION = Operation(
    name="forum-threads",
    definition="http://hearth.local/fhir/OperationDefinition/forum-threads",
    levels=frozenset({"system"}),
    permission=Permission(
        self_checked=True,
        reason="any signed-in person reads the forum; posts are kept outside the resource "
        "tables and name no patient (operations/forum_common.py, docs/community.md)",
    ),
    handler=run,
)
