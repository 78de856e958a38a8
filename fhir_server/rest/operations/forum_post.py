"""$forum-post — ``POST [base]/$forum-post``: start a thread in the community forum, or reply to
one (docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-post``).

Inputs: ``text`` (valueString, required, at most 4000 characters); either ``topic`` (valueString,
at most 200 characters: a new thread) or ``thread`` (the id of the thread replied to); and
``showName`` (valueBoolean, default false: the post shows the author's pseudonym; true: the name
of their own Patient or Practitioner resource). Output: 201 and the new post as a
``Communication``. A blocked member gets 403. The writer's account is recorded with the post and
in the audit log (the request's AuditEvent names the post), never shown to other members. Members
of the thread who opted in get an e-mail that there is a new reply.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import (
    MAX_TEXT,
    MAX_TOPIC,
    audit_ref,
    author_role,
    known_inputs,
    member_name,
    notify_replies,
    now,
    participant,
    post_id,
    render,
    store_of,
    text_input,
    visible_post,
)
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Forbidden, Invalid, NotFound

KNOWN = frozenset({"text", "topic", "thread", "showName"})


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    text = text_input(req, "text", MAX_TEXT, required=True)
    topic = text_input(req, "topic", MAX_TOPIC)
    has_thread = req.params.has("thread")
    if (topic is None) == (not has_thread):
        raise Invalid(
            "$forum-post: give either topic (a new thread) or thread (a reply), not both or none",
            expression=["topic", "thread"],
        )
    show_name = req.params.boolean("showName")
    store = store_of(ctx)
    assert access.username is not None
    member = store.join(access.username, now())
    if member.blocked:
        raise Forbidden("a moderator has blocked this account from posting in the forum")
    thread = None
    if has_thread:
        tid = post_id(req, "thread")
        thread = visible_post(store, access, tid)
        if not thread.is_thread:
            raise NotFound(f"forum thread {tid} is not known")
    shown = None
    if show_name:
        shown = member_name(ctx, access)
        if shown is None:
            raise Invalid(
                "$forum-post: showName: your account has no name to show", expression=["showName"]
            )
    assert text is not None
    new = store.add_post(
        thread_id=thread.id if thread else None,
        author=access.username,
        shown_name=shown,
        author_role=author_role(access),
        topic=topic,
        text=text,
        now=now(),
    )
    post = store.post(new)
    assert post is not None
    if thread is not None:
        notify_replies(ctx, thread, access.username)
    kind = "reply" if thread else "thread"
    return Reply(
        201,
        render(post, access),
        audit_what=(audit_ref(new),),
        audit_detail=f"forum: {kind} {new}"
        + (f" in {thread.id}" if thread else "")
        + (" signed with the author's name" if shown else ""),
    )


OPERATION = Operation(
    name="forum-post",
    definition="http://hearth.local/fhir/OperationDefinition/forum-post",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(
        self_checked=True,
        reason="any signed-in person who is not blocked may post; posts are kept outside the "
        "resource tables and name no patient (operations/forum_common.py, docs/community.md)",
    ),
    handler=run,
)
