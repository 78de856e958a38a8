"""What the forum operations share (docs/community.md): who may take part, reading their inputs,
rendering stored posts (``resources/forum``) as FHIR ``Communication`` resources for one caller,
and the opt-in notification e-mails. No ``OPERATION`` here: a helper of the ``forum_*`` modules.

A post renders as a ``Communication`` that names no person: no ``sender``, ``recipient`` or
``subject`` (so it is in no patient's compartment and tells nothing of who wrote it); the author
is an extension holding the member's pseudonym, or the name they chose to show on that post; a
member of the care team also shows their care role. A thread is a Communication with ``topic``;
a reply names its thread in ``inResponseTo``. Hidden posts reach moderators only, tagged
``hidden`` with the moderator's reason in ``statusReason``.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime

from fhir_server.auth.enforce import CARE_ROLES
from fhir_server.rest.context import Access, Context, FhirRequest
from resources.errors import Forbidden, Gone, Invalid, Issue, NotFound
from resources.forum import ForumStore, Member, Post
from workflow import mail

log = logging.getLogger("hearth.forum")

SYSTEM = "http://hearth.local/fhir/CodeSystem/forum"
AUTHOR = "http://hearth.local/fhir/StructureDefinition/forum-author"
AUTHOR_ROLE = "http://hearth.local/fhir/StructureDefinition/forum-author-role"
AUTHOR_BLOCKED = "http://hearth.local/fhir/StructureDefinition/forum-author-blocked"
REPLIES = "http://hearth.local/fhir/StructureDefinition/forum-replies"
LAST_ACTIVITY = "http://hearth.local/fhir/StructureDefinition/forum-last-activity"
ID = re.compile(r"^[0-9a-f]{32}$")
MAX_TOPIC = 200
MAX_TEXT = 4000
MAX_REASON = 500
PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{2,29}$")


def now() -> datetime:
    return datetime.now(UTC)


def store_of(ctx: Context) -> ForumStore:
    return ForumStore(ctx.repo.engine)


def participant(ctx: Context) -> Access:
    """The caller, who must be a signed-in person (a user's token): the forum is for patients and
    staff, not for backend clients."""
    access = ctx.access
    if access is None or not access.username:
        raise Forbidden("the forum is for signed-in people: this token has no user")
    return access


def is_moderator(access: Access) -> bool:
    return access.role == "admin"


def known_inputs(req: FhirRequest, known: frozenset[str]) -> None:
    unknown = sorted({i.name for i in req.params.inputs} - known)
    if unknown:
        raise Invalid(
            f"${req.params.operation}: unknown parameters {unknown}",
            [Issue("not-supported", f"parameter {n!r} is not supported") for n in unknown],
        )


def text_input(req: FhirRequest, name: str, limit: int, *, required: bool = False) -> str | None:
    """A string input, stripped, not empty and at most ``limit`` characters."""
    value = req.params.text(name, fhir_type="string", required=required)
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise Invalid(f"${req.params.operation}: {name} is empty", expression=[name])
    if len(value) > limit:
        raise Invalid(
            f"${req.params.operation}: {name} is longer than {limit} characters",
            expression=[name],
        )
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise Invalid(
            f"${req.params.operation}: {name} holds control characters", expression=[name]
        )
    return value


def post_id(req: FhirRequest, name: str) -> str:
    """A post's id (``Communication/<id>`` or the bare id)."""
    value = req.params.text(name, required=True)
    assert value is not None
    bare = value.removeprefix("Communication/")
    if not ID.match(bare):
        raise Invalid(
            f"${req.params.operation}: {name} must be a forum post's id, not {value!r}",
            expression=[name],
        )
    return bare


def visible_post(store: ForumStore, access: Access, pid: str) -> Post:
    """The post, if the caller may see it: a hidden post, or a post in a hidden thread, reads
    as one that never existed to everyone but the moderators."""
    post = store.post(pid)
    missing = NotFound(f"forum post {pid} is not known")
    if post is None:
        raise missing
    if not is_moderator(access):
        if post.hidden:
            raise missing
        if not post.is_thread:
            thread = store.post(post.thread_id)
            if thread is None or thread.hidden:
                raise missing
    return post


def author_display(post: Post) -> str:
    return post.shown_name or post.pseudonym


def render(post: Post, access: Access) -> dict:
    """The post as a Communication for ``access`` (moderators also see hidden state)."""
    extension: list[dict] = [{"url": AUTHOR, "valueString": author_display(post)}]
    if post.author_role:
        extension.append({"url": AUTHOR_ROLE, "valueCode": post.author_role})
    moderator = is_moderator(access)
    if moderator and post.author_blocked:
        extension.append({"url": AUTHOR_BLOCKED, "valueBoolean": True})
    kind = "thread" if post.is_thread else "reply"
    body: dict = {
        "resourceType": "Communication",
        "id": post.id,
        "meta": {"tag": [{"system": SYSTEM, "code": "forum"}]},
        "extension": extension,
        "status": "completed",
        "category": [{"coding": [{"system": SYSTEM, "code": kind}]}],
        "sent": post.created.astimezone(UTC).isoformat(),
        "payload": [{"contentString": post.text}],
    }
    if post.is_thread:
        body["topic"] = {"text": post.topic}
    else:
        body["inResponseTo"] = [{"reference": f"Communication/{post.thread_id}"}]
    if moderator and post.hidden:
        body["meta"]["tag"].append({"system": SYSTEM, "code": "hidden"})
        body["statusReason"] = {"text": post.hidden_reason or "hidden by a moderator"}
    return body


def audit_ref(pid: str) -> str:
    """How the audit log names a post (the forum's Communications are not in the resource
    table: this reference is the post's id in ``forum_post``)."""
    return f"Communication/{pid}"


def member_name(ctx: Context, access: Access) -> str | None:
    """The caller's own name, read from their fhirUser (``Patient`` or ``Practitioner``) with the
    caller's own access, for a post they chose to sign with it."""
    if not access.fhir_user or "/" not in access.fhir_user:
        return None
    res_type, _, res_id = access.fhir_user.partition("/")
    try:
        stored = ctx.repo.read(lambda unit: unit.read(res_type, res_id))
    except (NotFound, Gone):  # no readable resource: no name to show
        return None
    names = (stored.content or {}).get("name") or []
    for n in names if isinstance(names, list) else []:
        if not isinstance(n, dict):
            continue
        if n.get("text"):
            return str(n["text"])[:200]
        words = [*(n.get("given") or []), n.get("family") or ""]
        joined = " ".join(str(w) for w in words if w).strip()
        if joined:
            return joined[:200]
    return None


def author_role(access: Access) -> str | None:
    """The care role shown beside a staff member's posts (patients show none)."""
    if access.role in CARE_ROLES and access.role != "admin":
        return access.role
    if access.role == "admin":
        return "moderator"
    return None


def notify_replies(ctx: Context, thread: Post, replier: str) -> None:
    """E-mail every member who wrote in the thread and opted in (``notify``), but the one who
    replied and any blocked member, that the thread has a new reply. The message holds the
    thread's topic and a link, never a post's text or anyone's name. Sent in the background:
    a slow or failing mail server never holds up or fails the reply (failures are logged)."""
    store = store_of(ctx)
    recipients: list[tuple[Member, str]] = []
    for member in store.participants(thread.thread_id):
        if member.username == replier or not member.notify or member.blocked:
            continue
        address = store.email_of(member.username)
        if address:
            recipients.append((member, address))
    if not recipients:
        return
    smtp = ctx.settings.smtp()
    link = f"{ctx.settings.base_url}/app/portal/#/forum"
    subject = "New reply in the Hearth community"
    body = (
        f"Someone replied in the community thread “{thread.topic}”.\n\n"
        f"Sign in to read it: {link}\n\n"
        "You get this e-mail because you asked for reply notifications. "
        "You can turn them off on the Community screen."
    )

    def send() -> None:
        for member, address in recipients:
            try:
                mail.send(smtp, address, subject, body)
            except mail.MailError as exc:
                log.warning("forum notification to %s failed: %s", member.pseudonym, exc)

    threading.Thread(target=send, name="forum-notify", daemon=True).start()
