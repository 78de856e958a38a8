"""$forum-moderate — ``POST [base]/$forum-moderate``: a moderator (an administrator) acts on a
forum post or its author (docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-moderate``).

Inputs: ``post`` (the post's id, required), ``action`` (valueCode, required): ``hide`` (the post
— a whole thread when it opens one — disappears for everyone but the moderators), ``restore``
(shown again), ``block`` (its author can no longer post or reply; they still read and report),
``unblock``, or ``dismiss`` (the post's open reports are closed and nothing else changes);
``reason`` (valueString, at most 500 characters; required to hide or block: it is kept with the
post or the account and in the audit log). ``hide`` and ``dismiss`` close the post's open
reports. Output: the post as the moderators see it. The author is acted on through their post,
so the moderator never needs — nor sees — their account name.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import (
    MAX_REASON,
    audit_ref,
    known_inputs,
    now,
    participant,
    post_id,
    render,
    store_of,
    text_input,
)
from fhir_server.rest.operations.spec import ADMIN, Operation
from resources.errors import Invalid, NotFound

KNOWN = frozenset({"post", "action", "reason"})
ACTIONS = ("hide", "restore", "block", "unblock", "dismiss")


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    pid = post_id(req, "post")
    action = req.params.text("action", fhir_type="code", required=True)
    if action not in ACTIONS:
        raise Invalid(
            f"$forum-moderate: action must be one of {', '.join(ACTIONS)}, not {action!r}",
            expression=["action"],
        )
    reason = text_input(req, "reason", MAX_REASON)
    if action in ("hide", "block") and reason is None:
        raise Invalid(
            f"$forum-moderate: {action} needs a reason", expression=["reason"]
        )  # fmt: skip
    store = store_of(ctx)
    post = store.post(pid)
    if post is None:
        raise NotFound(f"forum post {pid} is not known")
    closed = 0
    if action in ("hide", "restore"):
        store.set_hidden(pid, action == "hide", reason)
        if action == "hide":
            closed = store.resolve_reports(pid, "hidden", now())
    elif action in ("block", "unblock"):
        store.set_blocked(post.author, action == "block", reason)
    else:
        closed = store.resolve_reports(pid, "dismissed", now())
    after = store.post(pid)
    assert after is not None
    detail = f"forum: {action} post {pid}"
    if action in ("block", "unblock"):
        detail = f"forum: {action} the author of post {pid}"
    if reason:
        detail += f" ({reason})"
    if closed:
        detail += f"; {closed} report(s) closed"
    return Reply(200, render(after, access), audit_what=(audit_ref(pid),), audit_detail=detail)


OPERATION = Operation(
    name="forum-moderate",
    definition="http://hearth.local/fhir/OperationDefinition/forum-moderate",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=ADMIN,
    handler=run,
)
