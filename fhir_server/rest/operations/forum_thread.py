"""$forum-thread — ``GET|POST [base]/$forum-thread?thread=ID``: one thread of the community forum
with its replies, oldest first (docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-thread``).

Input: ``thread`` (the thread's id, or ``Communication/<id>``; required). Output: a
``searchset`` Bundle: the thread's ``Communication`` first, then each reply (``inResponseTo`` the
thread). Hidden posts are left out — and a hidden thread is 404, as an unknown one — except for
moderators, who get them tagged ``hidden``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import (
    is_moderator,
    known_inputs,
    participant,
    post_id,
    render,
    store_of,
    visible_post,
)
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import NotFound

KNOWN = frozenset({"thread"})


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    tid = post_id(req, "thread")
    store = store_of(ctx)
    thread = visible_post(store, access, tid)
    if not thread.is_thread:
        raise NotFound(f"forum thread {tid} is not known")
    moderator = is_moderator(access)
    posts = [p for p in store.thread(tid) if moderator or not p.hidden]
    entries = [
        {
            "fullUrl": f"{ctx.base}/Communication/{p.id}",
            "resource": render(p, access),
            "search": {"mode": "match"},
        }
        for p in posts
    ]
    return Reply(
        200,
        {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries},
    )


OPERATION = Operation(
    name="forum-thread",
    definition="http://hearth.local/fhir/OperationDefinition/forum-thread",
    levels=frozenset({"system"}),
    permission=Permission(
        self_checked=True,
        reason="any signed-in person reads the forum; posts are kept outside the resource "
        "tables and name no patient (operations/forum_common.py, docs/community.md)",
    ),
    handler=run,
)
