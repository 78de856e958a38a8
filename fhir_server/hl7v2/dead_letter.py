"""Inbound HL7 v2 dead letters (docs/hl7v2.md "Dead letters"): a message Hearth could not apply
through no fault of its sender — its message type or event is not supported (AR 200/201), or
mapping or storing it failed inside Hearth (AE 207, a server fault) — is kept, as sent, in a
Task an administrator can replay once the mapping exists (``$retry-delivery``).

The Task: ``status`` failed, ``intent`` unknown, ``code`` hl7v2-in (``CODE_SYSTEM``),
``statusReason`` the ACK's reason, ``identifier`` ``sender/MSH-10`` (the sender: MSH-3, else MSH-4)
(``TASK_SYSTEM``; a message without MSH-10: the SHA-256 of its bytes), ``input`` the raw message
as an Attachment (``x-application/hl7-v2+er7``, base64). It has no ``for``, ``focus`` or
``owner``: the message was not mapped, so which patient it is about is not known, and a raw
message is not put in any patient's compartment (it may name several people); it is read by care
staff and administrators with Task access, never by a patient token.

The same message sent again (same sender and MSH-10) updates the one Task (its reason, its
``lastModified``, a count of receipts), never a second one. A replay runs the stored bytes
through ``Hl7v2Service.handle_one`` as if just received: AA completes the Task; anything else
leaves it failed with the new reason."""

from __future__ import annotations

import base64
import hashlib
import logging

from mappings.hl7v2.er7 import Message
from resources.errors import Conflict, NotFound
from resources.storage.repository import Repository, Unit
from resources.storage.store import instant, utcnow

log = logging.getLogger("hearth.hl7v2")

KIND = "hl7v2-in"  # the $delivery-problems kind
CODE_SYSTEM = "http://hearth.local/fhir/CodeSystem/task-code"
CODE = "hl7v2-in"
TASK_SYSTEM = "http://hearth.local/fhir/sid/hl7v2-in"
MEDIA_TYPE = "x-application/hl7-v2+er7"


def as_bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8")


def key_of(raw: bytes | str, message: Message | None) -> str:
    """The dead letter's identifier value: ``sender/MSH-10``, else the message's SHA-256."""
    if message is not None and message.control_id:
        msh = message.msh
        sender = msh.value(3) or msh.value(4) or "-"
        return f"{sender}/{message.control_id}"
    return "sha256:" + hashlib.sha256(as_bytes(raw)).hexdigest()


def _escape(value: str) -> str:
    """A token search value escaped (FHIR R4 search.html#escaping)."""
    for ch in ("\\", ",", "$", "|"):
        value = value.replace(ch, "\\" + ch)
    return value


def _title(message: Message | None) -> str:
    if message is None:
        return "HL7 v2 message"
    code, event, _ = message.message_type
    return f"{code or '?'}^{event or '?'} MSH-10 {message.control_id or '(none)'}"


def store(repo: Repository, raw: bytes | str, message: Message | None, reason: str) -> str | None:
    """Keep ``raw`` as a failed hl7v2-in Task (or update the one kept for the same message);
    returns ``Task/id``, or None when even that could not be written (logged: the ACK is sent
    regardless)."""
    key = key_of(raw, message)
    criteria = [("identifier", f"{TASK_SYSTEM}|{_escape(key)}")]
    now = instant(utcnow())

    def run(u: Unit) -> str:
        found = u.read_many(u.match("Task", criteria, limit=1))
        if found:
            task = found[0].resource
            receipts = next(
                (x for x in task.get("input", []) if x.get("type", {}).get("text") == "receipts"),
                None,
            )
            if receipts is not None:
                receipts["valueInteger"] = int(receipts.get("valueInteger", 1)) + 1
            task.update(
                status="failed",
                statusReason={"text": reason},
                businessStatus={"text": "dead letter: received again, not applied"},
                lastModified=now,
            )
            u.update("Task", task["id"], task)
            return f"Task/{task['id']}"
        task = {
            "resourceType": "Task",
            "identifier": [{"system": TASK_SYSTEM, "value": key}],
            "status": "failed",
            "intent": "unknown",
            "code": {
                "coding": [{"system": CODE_SYSTEM, "code": CODE}],
                "text": "apply an HL7 v2 message received",
            },
            "description": _title(message),
            "statusReason": {"text": reason},
            "businessStatus": {"text": "dead letter: received, not applied"},
            "authoredOn": now,
            "lastModified": now,
            "input": [
                {
                    "type": {"text": "message"},
                    "valueAttachment": {
                        "contentType": MEDIA_TYPE,
                        "data": base64.b64encode(as_bytes(raw)).decode("ascii"),
                        "title": _title(message),
                    },
                },
                {"type": {"text": "receipts"}, "valueInteger": 1},
            ],
        }
        created = u.create(task, if_none_exist=criteria)
        return created.stored.ref

    try:
        return repo.run(run)
    except Exception:
        log.exception("HL7 v2 message %s: the dead letter could not be stored", key)
        return None


def is_dead_letter(task: dict) -> bool:
    return any(
        c.get("system") == CODE_SYSTEM and c.get("code") == CODE
        for c in (task.get("code") or {}).get("coding") or []
    )


def message_of(repo: Repository, task_id: str) -> bytes:
    """The stored bytes of failed dead letter ``Task/task_id`` (404 / 409 otherwise)."""
    task = repo.read(lambda u: u.read("Task", task_id)).resource
    if not is_dead_letter(task):
        raise NotFound(f"Task/{task_id} is not an HL7 v2 dead letter")
    if task.get("status") != "failed":
        raise Conflict(f"Task/{task_id} is {task.get('status')}: it has nothing to replay")
    for x in task.get("input", []):
        data = (x.get("valueAttachment") or {}).get("data")
        if data:
            return base64.b64decode(data)
    raise Conflict(f"Task/{task_id} holds no message to replay")


def settle(repo: Repository, task_id: str, code: str, reason: str, by: str) -> None:
    """Record a replay's outcome on the dead letter: AA completes it, anything else leaves it
    failed with ``reason``."""
    now = instant(utcnow())

    def run(u: Unit) -> None:
        task = u.read("Task", task_id).resource
        if code == "AA":
            task.pop("statusReason", None)
            task.update(status="completed", businessStatus={"text": f"replayed by {by}: AA"})
        else:
            task.update(
                status="failed",
                statusReason={"text": reason or f"replayed: {code}"},
                businessStatus={"text": f"replayed by {by}: {code}, still not applied"},
            )
        task["lastModified"] = now
        u.update("Task", task_id, task)

    repo.run(run)
