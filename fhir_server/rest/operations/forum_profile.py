"""$forum-profile — the caller's own forum profile (docs/community.md; OperationDefinition
``http://hearth.local/fhir/OperationDefinition/forum-profile``).

``GET [base]/$forum-profile`` reads it; ``POST`` changes it. Inputs (POST): ``pseudonym``
(valueString: 3–30 letters, digits, spaces, ``_ . -``, starting with a letter or digit; unique
among members, compared without case) and ``notify`` (valueBoolean: e-mail me when someone
replies in a thread I wrote in; off until the member turns it on). Output: a ``Parameters`` with
``pseudonym``, ``notify``, ``hasEmail`` (whether the account has an address to notify) and
``blocked``. A member gets a random pseudonym (``Member-3fa91c``) the first time they use the
forum.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.forum_common import (
    PSEUDONYM,
    known_inputs,
    now,
    participant,
    store_of,
)
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Conflict, Invalid
from resources.forum import Member, PseudonymTaken

KNOWN = frozenset({"pseudonym", "notify"})


def _answer(ctx: Context, member: Member) -> Reply:
    has_email = bool(store_of(ctx).email_of(member.username))
    return Reply(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "pseudonym", "valueString": member.pseudonym},
                {"name": "notify", "valueBoolean": member.notify},
                {"name": "hasEmail", "valueBoolean": has_email},
                {"name": "blocked", "valueBoolean": member.blocked},
            ],
        },
    )


def read(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, frozenset())
    assert access.username is not None
    return _answer(ctx, store_of(ctx).join(access.username, now()))


def change(ctx: Context, req: FhirRequest) -> Reply:
    access = participant(ctx)
    known_inputs(req, KNOWN)
    assert access.username is not None
    pseudonym = req.params.text("pseudonym", fhir_type="string")
    if pseudonym is not None:
        pseudonym = pseudonym.strip()
        if not PSEUDONYM.match(pseudonym):
            raise Invalid(
                "$forum-profile: a pseudonym is 3 to 30 letters, digits, spaces, '_', '.' or "
                "'-', starting with a letter or digit",
                expression=["pseudonym"],
            )
        if pseudonym.casefold() == access.username.casefold():
            raise Invalid(
                "$forum-profile: choose a pseudonym other than your user name",
                expression=["pseudonym"],
            )
    notify = req.params.boolean("notify") if req.params.has("notify") else None
    store = store_of(ctx)
    store.join(access.username, now())
    try:
        member = store.set_profile(access.username, pseudonym=pseudonym, notify=notify)
    except PseudonymTaken:
        raise Conflict(f"$forum-profile: the pseudonym {pseudonym!r} is taken") from None
    reply = _answer(ctx, member)
    reply.audit_detail = (
        "forum: profile"
        + (" pseudonym changed" if pseudonym else "")
        + (f" notify={'on' if notify else 'off'}" if notify is not None else "")
    )
    return reply


OPERATION = Operation(
    name="forum-profile",
    definition="http://hearth.local/fhir/OperationDefinition/forum-profile",
    levels=frozenset({"system"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    poll=read,
    permission=Permission(
        self_checked=True,
        reason="any signed-in person reads and changes their own forum profile "
        "(operations/forum_common.py, docs/community.md)",
    ),
    handler=change,
)
