"""Storage of the community forum (docs/community.md): its members (pseudonym, e-mail opt-in,
blocked), its posts and the reports on them, in tables of their own (migration 0014).

Forum posts are kept out of the ``resource`` table on purpose: a FHIR resource there is read,
searched, included, exported and written by every route the caller's scopes allow, so staff
tokens would read hidden posts and rewrite posts past the moderators, and any Patient reference
would put a post in that patient's compartment. Here only the forum operations
(``fhir_server/rest/operations/forum_*.py``) reach them, and they render each post as a FHIR
``Communication`` for the one caller. The real author of a post (a username) is never rendered.
Every statement is SQLAlchemy Core with bound parameters; each method is one short transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from resources.auth.store import auth_user
from resources.storage.schema import UtcDateTime, metadata

forum_member = sa.Table(
    "forum_member",
    metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("pseudonym", sa.String(40), nullable=False),
    sa.Column("pseudonym_key", sa.String(40), nullable=False, unique=True),  # casefolded
    sa.Column("notify", sa.Boolean, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
    sa.Column("blocked_reason", sa.Text),
    sa.Column("created", UtcDateTime(), nullable=False),
)

forum_post = sa.Table(
    "forum_post",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("thread_id", sa.String(64), nullable=False, index=True),  # its own id for a thread
    sa.Column("author", sa.String(128), nullable=False),  # username: never rendered
    sa.Column("shown_name", sa.String(200)),  # the name the author chose to show, else null
    sa.Column("author_role", sa.String(32)),  # a care role (cadre, doctor ...), null for patients
    sa.Column("topic", sa.String(200)),  # threads only
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("hidden", sa.Boolean, nullable=False),
    sa.Column("hidden_reason", sa.Text),
)

forum_report = sa.Table(
    "forum_report",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("post_id", sa.String(64), nullable=False, index=True),
    sa.Column("reporter", sa.String(128), nullable=False),  # username: never rendered
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("resolved", UtcDateTime()),
    sa.Column("resolution", sa.String(32)),  # hidden | dismissed
)


class PseudonymTaken(Exception):
    """Another member uses that pseudonym already (compared casefolded)."""


@dataclass(frozen=True)
class Member:
    username: str
    pseudonym: str
    notify: bool
    blocked: bool


@dataclass(frozen=True)
class Post:
    id: str
    thread_id: str
    author: str
    pseudonym: str  # the author's current pseudonym
    shown_name: str | None
    author_role: str | None
    author_blocked: bool
    topic: str | None
    text: str
    created: datetime
    hidden: bool
    hidden_reason: str | None

    @property
    def is_thread(self) -> bool:
        return self.id == self.thread_id


@dataclass(frozen=True)
class Thread:
    post: Post
    replies: int  # visible replies
    last_activity: datetime


@dataclass(frozen=True)
class Report:
    id: str
    post_id: str
    reason: str
    created: datetime


def new_id() -> str:
    return secrets.token_hex(16)


class ForumStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- members -------------------------------------------------------------------------------

    def member(self, username: str) -> Member | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(forum_member).where(forum_member.c.username == username)
            ).first()
        return _member(row) if row else None

    def join(self, username: str, now: datetime) -> Member:
        """The member ``username``, created with a random pseudonym ("Member-3fa91c") on first
        use."""
        found = self.member(username)
        while found is None:
            pseudonym = f"Member-{secrets.token_hex(3)}"
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.insert(forum_member).values(
                            username=username,
                            pseudonym=pseudonym,
                            pseudonym_key=pseudonym.casefold(),
                            notify=False,
                            blocked=False,
                            created=now,
                        )
                    )
            except IntegrityError:
                pass  # a concurrent join of the same user, or (rarely) a pseudonym taken
            found = self.member(username)
        return found

    def set_profile(
        self, username: str, *, pseudonym: str | None = None, notify: bool | None = None
    ) -> Member:
        values: dict[str, object] = {}
        if pseudonym is not None:
            values.update(pseudonym=pseudonym, pseudonym_key=pseudonym.casefold())
        if notify is not None:
            values["notify"] = notify
        if values:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.update(forum_member)
                        .where(forum_member.c.username == username)
                        .values(**values)
                    )
            except IntegrityError as exc:
                raise PseudonymTaken(pseudonym) from exc
        found = self.member(username)
        assert found is not None
        return found

    def set_blocked(self, username: str, blocked: bool, reason: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(forum_member)
                .where(forum_member.c.username == username)
                .values(blocked=blocked, blocked_reason=reason if blocked else None)
            )

    def email_of(self, username: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(auth_user.c.email).where(auth_user.c.username == username)
            ).scalar()

    # -- posts ---------------------------------------------------------------------------------

    def add_post(
        self,
        *,
        thread_id: str | None,
        author: str,
        shown_name: str | None,
        author_role: str | None,
        topic: str | None,
        text: str,
        now: datetime,
    ) -> str:
        post_id = new_id()
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(forum_post).values(
                    id=post_id,
                    thread_id=thread_id or post_id,
                    author=author,
                    shown_name=shown_name,
                    author_role=author_role,
                    topic=topic,
                    text=text,
                    created=now,
                    hidden=False,
                )
            )
        return post_id

    def _posts(self, *where: sa.ColumnElement[bool]) -> sa.Select:
        return (
            sa.select(
                forum_post,
                forum_member.c.pseudonym,
                forum_member.c.blocked.label("author_blocked"),
            )
            .join(forum_member, forum_member.c.username == forum_post.c.author)
            .where(*where)
        )

    def post(self, post_id: str) -> Post | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._posts(forum_post.c.id == post_id)).first()
        return _post(row) if row else None

    def thread(self, thread_id: str) -> list[Post]:
        """The thread's posts, the thread first, then its replies oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._posts(forum_post.c.thread_id == thread_id).order_by(
                    (forum_post.c.id != forum_post.c.thread_id),
                    forum_post.c.created,
                    forum_post.c.id,
                )
            ).all()
        return [_post(r) for r in rows]

    def threads(self, *, with_hidden: bool, limit: int) -> list[Thread]:
        """Threads by latest activity (their newest visible post), newest first."""
        reply = forum_post.alias("reply")
        counted = sa.and_(reply.c.thread_id == forum_post.c.id, reply.c.id != forum_post.c.id)
        if not with_hidden:
            counted = sa.and_(counted, sa.not_(reply.c.hidden))
        replies = sa.select(sa.func.count()).where(counted).scalar_subquery()
        last = sa.select(sa.func.max(reply.c.created)).where(counted).scalar_subquery()
        activity = sa.func.coalesce(last, forum_post.c.created)
        where = [forum_post.c.id == forum_post.c.thread_id]
        if not with_hidden:
            where.append(sa.not_(forum_post.c.hidden))
        query = (
            self._posts(*where)
            .add_columns(replies.label("replies"), activity.label("activity"))
            .order_by(activity.desc(), forum_post.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for r in rows:
            post = _post(r)
            activity_at = r.activity
            if isinstance(activity_at, str):  # SQLite: coalesce() loses the column's type
                activity_at = datetime.fromisoformat(activity_at)
            if activity_at.tzinfo is None:
                activity_at = activity_at.replace(tzinfo=UTC)
            out.append(Thread(post, int(r.replies), max(activity_at, post.created)))
        return out

    def set_hidden(self, post_id: str, hidden: bool, reason: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(forum_post)
                .where(forum_post.c.id == post_id)
                .values(hidden=hidden, hidden_reason=reason if hidden else None)
            )

    def participants(self, thread_id: str) -> list[Member]:
        """The members who wrote in the thread (visible posts), each once."""
        query = (
            sa.select(forum_member)
            .where(
                forum_member.c.username.in_(
                    sa.select(forum_post.c.author).where(
                        forum_post.c.thread_id == thread_id, sa.not_(forum_post.c.hidden)
                    )
                )
            )
            .order_by(forum_member.c.username)
        )
        with self.engine.connect() as conn:
            return [_member(r) for r in conn.execute(query).all()]

    # -- reports -------------------------------------------------------------------------------

    def add_report(self, post_id: str, reporter: str, reason: str, now: datetime) -> str:
        report_id = new_id()
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(forum_report).values(
                    id=report_id, post_id=post_id, reporter=reporter, reason=reason, created=now
                )
            )
        return report_id

    def open_reports(self, limit: int) -> list[Report]:
        query = (
            sa.select(forum_report)
            .where(forum_report.c.resolved.is_(None))
            .order_by(forum_report.c.created, forum_report.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Report(r.id, r.post_id, r.reason, r.created) for r in rows]

    def resolve_reports(self, post_id: str, resolution: str, now: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(forum_report)
                .where(forum_report.c.post_id == post_id, forum_report.c.resolved.is_(None))
                .values(resolved=now, resolution=resolution)
            ).rowcount


def _member(row: sa.Row) -> Member:
    return Member(row.username, row.pseudonym, bool(row.notify), bool(row.blocked))


def _post(row: sa.Row) -> Post:
    return Post(
        id=row.id,
        thread_id=row.thread_id,
        author=row.author,
        pseudonym=row.pseudonym,
        shown_name=row.shown_name,
        author_role=row.author_role,
        author_blocked=bool(row.author_blocked),
        topic=row.topic,
        text=row.text,
        created=row.created,
        hidden=bool(row.hidden),
        hidden_reason=row.hidden_reason,
    )
