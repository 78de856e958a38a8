"""The community forum over HTTP ($forum-*, docs/community.md), on both databases, with real
users' tokens: patients and cadres post, reply and report; a moderator (admin) hides posts and
blocks accounts; nothing in the forum tells one patient who another is or lets them read anything
else of theirs — by no route, searches on Communication included; hidden posts reach moderators
only; blocked members cannot post; bad input is a 400 OperationOutcome; every write is audited;
reply notifications are e-mailed to members who opted in, and to no one else."""

from __future__ import annotations

import email
import email.policy
import mailbox
import time
import uuid

import httpx
import pytest

from fhir_server.auth.scopes import Scopes
from fhir_server.auth.tokens import issue
from fhir_server.runtime.settings import Settings
from tests.conftest import BACKENDS
from tests.fhir_server.auth.smart import bearer, make_client, make_user, store_of
from tests.servers import database_url, free_port, start_server
from tests.workflow.conftest import Fhir, person, ref

PATIENT_SCOPE = "openid fhirUser patient/*.rs patient/Communication.c"


@pytest.fixture(scope="module", params=BACKENDS)
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"forum-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    running = start_server(
        request.param, url, dev_mailbox=tmp / "mail", dev_mailbox_port=free_port()
    )
    yield running
    running.stop()
    cleanup()  # type: ignore[operator]


class Member:
    """A signed-in person: their user name, their FHIR user and their token's headers."""

    def __init__(self, hearth, role: str, fhir_user: str, scope: str, patient: str | None,  # type: ignore[no-untyped-def]
                 email: str | None = None) -> None:  # fmt: skip
        user = make_user(hearth, role, fhir_user, totp=False, email=email)
        client_id, _ = make_client(hearth, "confidential-symmetric", scope, redirect=None)
        store = store_of(hearth)
        try:
            body = issue(
                store,
                Settings(database_url=hearth.database_url, base_url=hearth.root),
                None,
                client_id=client_id,
                scope=Scopes.parse(scope),
                context={"patient": patient, "role": role, "fhir_user": fhir_user},
                username=user.username,
                with_refresh=False,
            )
        finally:
            store.engine.dispose()
        self.username = user.username
        self.fhir_user = fhir_user
        self.headers = bearer(body["access_token"])
        self.fhir = hearth.fhir

    def call(self, op: str, method: str = "POST", **params: object) -> httpx.Response:
        if method == "GET":
            return httpx.get(f"{self.fhir}/${op}", params=params, headers=self.headers)  # type: ignore[arg-type]
        parameter = []
        for name, value in params.items():
            key = {bool: "valueBoolean", int: "valueInteger"}.get(type(value), "valueString")
            if name == "action":
                key = "valueCode"
            parameter.append({"name": name, key: value})
        return httpx.post(
            f"{self.fhir}/${op}",
            json={"resourceType": "Parameters", "parameter": parameter},
            headers=self.headers,
        )

    def post(self, text: str, **params: object) -> dict:
        resp = self.call("forum-post", text=text, **params)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.fhir}/{path}", params=params, headers=self.headers)


@pytest.fixture(scope="module")
def people(hearth):  # type: ignore[no-untyped-def]
    fhir = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:8]
    ada = person(fhir, "Patient", f"Ada{tag}")
    bea = person(fhir, "Patient", f"Bea{tag}")
    carl = person(fhir, "Practitioner", f"Carl{tag}")
    # Ada's own clinical message to her care team: it must never reach Bea.
    private = fhir.create(
        {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": ref(ada)},
            "sender": {"reference": ref(ada)},
            "payload": [{"contentString": f"Private note {tag}"}],
        }
    )
    out = {
        "tag": tag,
        "ada_patient": ada,
        "bea_patient": bea,
        "private": private,
        "ada": Member(hearth, "patient", ref(ada), PATIENT_SCOPE, ada["id"], f"ada{tag}@example.org"),
        "bea": Member(hearth, "patient", ref(bea), PATIENT_SCOPE, bea["id"], f"bea{tag}@example.org"),
        "carl": Member(hearth, "cadre", ref(carl), "openid fhirUser user/*.rs", None),
        "mod": Member(hearth, "admin", ref(carl), "openid fhirUser user/*.cruds", None),
    }  # fmt: skip
    fhir.close()
    return out


def entries(resp: httpx.Response) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def author(post: dict) -> str:
    return next(e["valueString"] for e in post["extension"] if e["url"].endswith("forum-author"))


def secrets_of(people: dict, who: str) -> list[str]:
    """What would identify ``who``: their patient id, user name, family name, e-mail."""
    patient = people[f"{who}_patient"]
    return [
        f"Patient/{patient['id']}",
        patient["id"],
        people[who].username,
        patient["name"][0]["family"],
        f"{who}{people['tag']}@example.org",
    ]


def test_post_reply_and_read_a_thread(people):
    ada, bea, carl = people["ada"], people["bea"], people["carl"]
    thread = ada.post("Does anyone else itch after the cream?", topic="Itchy after treatment")
    assert thread["resourceType"] == "Communication"
    assert thread["topic"] == {"text": "Itchy after treatment"}
    assert "sender" not in thread and "subject" not in thread and "recipient" not in thread
    assert author(thread).startswith("Member-")
    reply = bea.post("Yes, for a day or two.", thread=thread["id"])
    assert reply["inResponseTo"] == [{"reference": f"Communication/{thread['id']}"}]
    signed = carl.post("Tell your cadre if it lasts.", thread=f"Communication/{thread['id']}",
                       showName=True)  # fmt: skip
    assert author(signed) == f"Test Carl{people['tag']}"
    assert {"url": "http://hearth.local/fhir/StructureDefinition/forum-author-role",
            "valueCode": "cadre"} in signed["extension"]  # fmt: skip

    posts = entries(bea.call("forum-thread", "GET", thread=thread["id"]))
    assert [p["id"] for p in posts] == [thread["id"], reply["id"], signed["id"]]
    assert [p["payload"][0]["contentString"] for p in posts][1] == "Yes, for a day or two."
    listed = entries(carl.call("forum-threads", "GET"))
    mine = next(t for t in listed if t["id"] == thread["id"])
    assert {"url": "http://hearth.local/fhir/StructureDefinition/forum-replies",
            "valueInteger": 2} in mine["extension"]  # fmt: skip
    # The thread list is the newest activity first.
    later = bea.post("A newer question", topic="Sun cream")
    assert entries(ada.call("forum-threads", "GET"))[0]["id"] == later["id"]


def test_a_patient_shows_their_name_only_when_they_choose(people):
    ada = people["ada"]
    anonymous = ada.post("Anonymous", topic="Names")
    named = ada.post("Named", thread=anonymous["id"], showName=True)
    assert author(named) == f"Test Ada{people['tag']}"
    assert people["ada_patient"]["name"][0]["family"] not in str(anonymous)
    assert author(anonymous) != author(named)


def test_no_forum_route_tells_a_patient_anything_of_another(people):
    ada, bea = people["ada"], people["bea"]
    thread = ada.post(f"My question {people['tag']}", topic="Waiting times")
    ada.post("And more", thread=thread["id"])
    ada.call("forum-report", post=thread["id"], reason="testing")
    answers = [
        bea.call("forum-threads", "GET"),
        bea.call("forum-thread", "GET", thread=thread["id"]),
        bea.call("forum-profile", "GET"),
    ]
    for resp in answers:
        assert resp.status_code == 200, resp.text
        for secret in secrets_of(people, "ada"):
            assert secret not in resp.text, (secret, resp.text)

    # Forum posts are not FHIR resources of the store: no REST route reaches them.
    assert bea.get(f"Communication/{thread['id']}").status_code == 404
    assert people["carl"].get(f"Communication/{thread['id']}").status_code == 404
    searched = bea.get("Communication", _tag="http://hearth.local/fhir/CodeSystem/forum|forum")
    assert entries(searched) == []
    # Nor does the forum open another patient's clinical messages, by search or by id.
    everything = entries(bea.get("Communication"))
    assert ref(people["private"]) not in {ref(c) for c in everything}
    assert f"Private note {people['tag']}" not in bea.get("Communication").text
    assert bea.get(ref(people["private"])).status_code == 404
    for op in ("forum-thread",):
        resp = bea.call(op, "GET", thread=people["private"]["id"])
        assert resp.status_code in (400, 404)
        assert "Private note" not in resp.text
    for name, value in (("thread", people["private"]["id"]), ("thread", ref(people["private"]))):
        resp = bea.call("forum-post", text="x", **{name: value})
        assert resp.status_code in (400, 404), resp.text
    resp = bea.call("forum-report", post=ref(people["private"]), reason="x")
    assert resp.status_code in (400, 404), resp.text
    # The moderators' queue is for administrators only.
    assert bea.call("forum-reports", "GET").status_code == 403
    assert people["carl"].call("forum-reports", "GET").status_code == 403


def test_hidden_posts_reach_moderators_only(people):
    ada, bea, mod = people["ada"], people["bea"], people["mod"]
    thread = ada.post("Opening post", topic=f"Hidden later {people['tag']}")
    rude = bea.post("A rude reply", thread=thread["id"])
    kept = bea.post("A kind reply", thread=thread["id"])
    report = ada.call("forum-report", post=rude["id"], reason="Rude")
    assert report.status_code == 201, report.text
    assert report.json()["about"] == [{"reference": f"Communication/{rude['id']}"}]

    queue = mod.call("forum-reports", "GET")
    matched = [e["resource"] for e in queue.json()["entry"] if e["search"]["mode"] == "match"]
    assert any(r["about"][0]["reference"] == f"Communication/{rude['id']}" for r in matched)
    assert people["ada"].username not in queue.text

    hidden = mod.call("forum-moderate", post=rude["id"], action="hide", reason="Insulting")
    assert hidden.status_code == 200, hidden.text
    assert {
        "system": "http://hearth.local/fhir/CodeSystem/forum",
        "code": "hidden",
    } in hidden.json()["meta"]["tag"]
    queue = mod.call("forum-reports", "GET")
    assert f"Communication/{rude['id']}" not in queue.text  # its report is closed

    seen = [p["id"] for p in entries(ada.call("forum-thread", "GET", thread=thread["id"]))]
    assert seen == [thread["id"], kept["id"]]
    assert "A rude reply" not in ada.call("forum-thread", "GET", thread=thread["id"]).text
    assert bea.call("forum-report", post=rude["id"], reason="again").status_code == 404
    moderated = entries(mod.call("forum-thread", "GET", thread=thread["id"]))
    assert [p["id"] for p in moderated] == [thread["id"], rude["id"], kept["id"]]
    assert moderated[1]["statusReason"] == {"text": "Insulting"}

    # A hidden thread: gone from the list and from every route, for all but moderators.
    assert (
        mod.call("forum-moderate", post=thread["id"], action="hide", reason="Spam").status_code
        == 200
    )
    assert thread["id"] not in {t["id"] for t in entries(bea.call("forum-threads", "GET"))}
    assert thread["id"] in {t["id"] for t in entries(mod.call("forum-threads", "GET"))}
    assert bea.call("forum-thread", "GET", thread=thread["id"]).status_code == 404
    assert people["carl"].call("forum-thread", "GET", thread=thread["id"]).status_code == 404
    assert bea.call("forum-post", text="hi", thread=thread["id"]).status_code == 404
    assert bea.call("forum-report", post=kept["id"], reason="x").status_code == 404
    restored = mod.call("forum-moderate", post=thread["id"], action="restore")
    assert restored.status_code == 200
    assert bea.call("forum-thread", "GET", thread=thread["id"]).status_code == 200
    # Patients and cadres do not moderate.
    for who in (ada, people["carl"]):
        assert (
            who.call("forum-moderate", post=kept["id"], action="hide", reason="x").status_code
            == 403
        )


def test_a_blocked_member_cannot_post(hearth, people):
    mod = people["mod"]
    troll = Member(hearth, "patient", ref(people["bea_patient"]), PATIENT_SCOPE,
                   people["bea_patient"]["id"])  # fmt: skip
    thread = troll.post("Buy my pills", topic="Offer")
    blocked = mod.call("forum-moderate", post=thread["id"], action="block", reason="Spam")
    assert blocked.status_code == 200, blocked.text
    assert {"url": "http://hearth.local/fhir/StructureDefinition/forum-author-blocked",
            "valueBoolean": True} in blocked.json()["extension"]  # fmt: skip
    for attempt in (
        troll.call("forum-post", text="again", topic="Offer 2"),
        troll.call("forum-post", text="again", thread=thread["id"]),
    ):
        assert attempt.status_code == 403, attempt.text
        assert attempt.json()["resourceType"] == "OperationOutcome"
    profile = entries_params(troll.call("forum-profile", "GET"))
    assert profile["blocked"] is True
    # They still read; others still post.
    assert troll.call("forum-thread", "GET", thread=thread["id"]).status_code == 200
    people["ada"].post("Not me", thread=thread["id"])
    assert mod.call("forum-moderate", post=thread["id"], action="unblock").status_code == 200
    troll.post("Sorry", thread=thread["id"])


def entries_params(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in resp.json()["parameter"]
    }


def test_profile_pseudonym(people, hearth):
    ada = people["ada"]
    chosen = f"Sunflower {people['tag']}"
    assert entries_params(ada.call("forum-profile", pseudonym=chosen))["pseudonym"] == chosen
    post = ada.post("Hello", topic="Greetings")
    assert author(post) == chosen
    other = Member(hearth, "patient", ref(people["bea_patient"]), PATIENT_SCOPE,
                   people["bea_patient"]["id"])  # fmt: skip
    taken = other.call("forum-profile", pseudonym=chosen.upper())
    assert taken.status_code == 409, taken.text
    assert taken.json()["resourceType"] == "OperationOutcome"


BAD = [
    ("forum-post", {"topic": "No text"}, "text"),
    ("forum-post", {"text": "neither"}, None),
    ("forum-post", {"text": "both", "topic": "t", "thread": "0" * 32}, None),
    ("forum-post", {"text": "   ", "topic": "blank"}, "text"),
    ("forum-post", {"text": "x" * 4001, "topic": "long"}, "text"),
    ("forum-post", {"text": "x", "topic": "y" * 201}, "topic"),
    ("forum-post", {"text": "x", "thread": "../Patient/1"}, "thread"),
    ("forum-post", {"text": "x", "topic": "t", "sender": "Patient/1"}, None),
    ("forum-post", {"text": "bell\x07", "topic": "t"}, "text"),
    ("forum-report", {"post": "0" * 32}, "reason"),
    ("forum-report", {"reason": "x"}, "post"),
    ("forum-profile", {"pseudonym": "x"}, "pseudonym"),
    ("forum-profile", {"pseudonym": "<script>alert(1)</script>"}, "pseudonym"),
]


@pytest.mark.parametrize(("op", "params", "names"), BAD)
def test_bad_input_is_a_400_operation_outcome(people, op, params, names):
    resp = people["ada"].call(op, **params)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    if names:
        assert names in resp.text


def test_bad_moderation_and_counts(people):
    mod = people["mod"]
    post = people["ada"].post("For moderation", topic="Mod")
    for params in (
        {"post": post["id"], "action": "delete"},
        {"post": post["id"], "action": "hide"},  # a reason is required
        {"post": post["id"], "action": "block"},
        {"post": "nope", "action": "hide", "reason": "x"},
    ):
        resp = mod.call("forum-moderate", **params)
        assert resp.status_code == 400, resp.text
        assert resp.json()["resourceType"] == "OperationOutcome"
    missing = mod.call("forum-moderate", post="f" * 32, action="hide", reason="x")
    assert missing.status_code == 404
    assert people["ada"].call("forum-threads", "GET", _count="0").status_code == 400
    assert people["ada"].call("forum-threads", "GET", _count="x").status_code == 400
    assert people["ada"].call("forum-thread", "GET").status_code == 400
    assert people["ada"].call("forum-thread", "GET", thread="0" * 32).status_code == 404


def test_backend_clients_and_anonymous_callers_are_refused(hearth):
    anonymous = httpx.get(f"{hearth.fhir}/$forum-threads")
    assert anonymous.status_code == 401
    backend = httpx.get(f"{hearth.fhir}/$forum-threads", headers=hearth.headers)
    assert backend.status_code == 403
    assert backend.json()["resourceType"] == "OperationOutcome"


def audit_detail(hearth, reference: str, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """The AuditEvents naming ``reference``, once there are ``count`` of them (recorded after
    each answer)."""
    found: list[dict] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bundle = httpx.get(
            f"{hearth.fhir}/AuditEvent", params={"entity": reference}, headers=hearth.headers
        ).json()
        found = [e["resource"] for e in bundle.get("entry", [])]
        if len(found) >= count:
            break
        time.sleep(0.2)
    return found


def test_every_write_is_audited_with_its_author(hearth, people):
    ada, mod = people["ada"], people["mod"]
    post = ada.post("Audited", topic="Audit")
    mod.call("forum-moderate", post=post["id"], action="hide", reason="Audit test")
    events = audit_detail(hearth, f"Communication/{post['id']}", 2)
    details = {e.get("outcomeDesc", ""): e for e in events}
    wrote = next(e for d, e in details.items() if d.startswith("forum: thread"))
    assert ada.username in str(wrote["agent"]) or people["ada_patient"]["id"] in str(wrote["agent"])
    assert any("forum: hide" in d and "Audit test" in d for d in details)


def mails(hearth) -> list:  # type: ignore[no-untyped-def]
    box = mailbox.Maildir(hearth.settings.dev_mailbox / "Maildir", create=False)
    return [
        email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in box.keys()
    ]


def test_reply_notifications_are_opt_in(hearth, people):
    ada, bea, carl = people["ada"], people["bea"], people["carl"]
    tag = people["tag"]
    assert entries_params(ada.call("forum-profile", notify=True))["notify"] is True
    assert entries_params(ada.call("forum-profile", "GET"))["hasEmail"] is True
    topic = f"Notify me {tag}"
    thread = ada.post("Anyone?", topic=topic)
    quiet = bea.post("Bea writes too", topic=f"Quiet {tag}")  # Bea has not opted in
    bea.post(f"Reply text {tag}", thread=thread["id"])
    carl.post("A reply to Bea", thread=quiet["id"])
    ada.post("Ada replies in her own thread", thread=thread["id"])  # no mail to herself

    deadline = time.monotonic() + 30
    got: list = []
    while time.monotonic() < deadline:
        got = [m for m in mails(hearth) if topic in m.get_content()]
        if got:
            break
        time.sleep(0.2)
    assert len(got) >= 1
    time.sleep(1)  # let any wrong message arrive too
    for_ada = [m for m in mails(hearth) if m["To"] == f"ada{tag}@example.org"]
    assert len(for_ada) == 1, [m["Subject"] for m in for_ada]
    text = for_ada[0].get_content()
    assert topic in text
    assert f"Reply text {tag}" not in text  # no post's words in an e-mail
    for secret in secrets_of(people, "bea"):
        assert secret not in text
    assert not [m for m in mails(hearth) if m["To"] == f"bea{tag}@example.org"]
    # Turned off: no more mail.
    assert entries_params(ada.call("forum-profile", notify=False))["notify"] is False
