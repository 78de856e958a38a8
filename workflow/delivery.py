"""Report delivery: render the final DiagnosticReport to PDF, sign it (``workflow.signing``: the
approving admin's name and the responsible doctor in the signature), attach it
(``presentedForm``, a Binary whose ``securityContext`` is the report, and a DocumentReference —
stored before sending, so a report whose e-mail fails is still kept and readable), and e-mail it
to the patient — the case's last, automatic step.

The step moves requested|failed → in-progress (If-Match: one deliverer at a time) → completed, or
→ failed with the reason in ``statusReason`` and the case's businessStatus REPORT_FAILED. A failed
delivery is retried by ``deliver`` again (``$deliver-report``, or ``hearth worker``); it is never
marked delivered unless the SMTP server accepted the message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mappings.report import ReportInput, person_name, render_pdf
from resources.errors import Conflict, Invalid, NotFound, PreconditionFailed
from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored
from workflow import cases, mail, reports, signing
from workflow.actors import SYSTEM, roles_of
from workflow.definitions import STEP_SYSTEM
from workflow.tasks import business_status, code_of, io_values, note, now, with_status

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    case_id: str
    status: str  # delivered | failed | already-delivered
    reason: str | None = None
    document: str | None = None


def _delivery_step(u: Unit, case_id: str) -> Stored:
    for step in cases.steps_of(u, case_id):
        if "system" in roles_of(step.resource):
            return step
    raise NotFound(f"case Task/{case_id} has no delivery step")


def _read_ref(u: Unit, ref: str) -> dict | None:
    res_type, _, res_id = ref.partition("/")
    try:
        return u.read(res_type, res_id).resource
    except Exception:  # noqa: BLE001 - a missing cited resource leaves a gap, not a failure
        return None


def gather(u: Unit, case: dict, facility_name: str) -> tuple[ReportInput, dict]:
    """Read what the report shows; returns the input and the DiagnosticReport."""
    report_ref = io_values(case, "output", "report")[0]["reference"]
    report = _read_ref(u, report_ref)
    if report is None:
        raise NotFound(f"{report_ref} of case Task/{case['id']} is missing")
    return gather_for(u, case, report, facility_name), report


def gather_for(u: Unit, case: dict, report: dict, facility_name: str) -> ReportInput:
    """What the PDF of ``report`` (stored, or a draft not stored) for ``case`` shows."""
    patient = _read_ref(u, case["for"]["reference"]) or {}
    org = None
    if patient.get("managingOrganization"):
        org = _read_ref(u, patient["managingOrganization"]["reference"])
    steps = [s.resource for s in cases.steps_of(u, case["id"])]
    ai_results = [
        r
        for r in (_read_ref(u, v["reference"]) for v in io_values(case, "input", "ai-result"))
        if r
    ]
    findings, prescriptions = [], []
    for step in steps:
        if "doctor" in roles_of(step) or "pharmacist" in roles_of(step):
            findings += [
                o
                for o in (
                    _read_ref(u, v["reference"]) for v in io_values(step, "output", "Observation")
                )
                if o
            ]
        prescriptions += [
            m
            for m in (
                _read_ref(u, v["reference"]) for v in io_values(step, "output", "MedicationRequest")
            )
            if m
        ]
    media_refs = [case.get("focus", {}).get("reference", "")]
    for r in ai_results:
        media_refs += [d.get("reference", "") for d in r.get("derivedFrom") or []]
        media_refs += [d.get("reference", "") for d in r.get("basis") or []]
    # The analysis Tasks that carried out the AI step name their explanation heatmaps as outputs.
    for task in u.read_many(u.match("Task", [("part-of", f"Task/{case['id']}")])):
        media_refs += [
            o.get("valueReference", {}).get("reference", "")
            for o in (task.content or {}).get("output") or []
        ]
    media = []
    for ref in dict.fromkeys(media_refs):
        if ref.startswith("Media/"):
            m = _read_ref(u, ref)
            if m:
                media.append(m)
    binaries = {}
    for m in media:
        url = (m.get("content") or {}).get("url", "")
        if url.startswith("Binary/"):
            b = _read_ref(u, url)
            if b:
                binaries[url] = b
    devices = {}
    for r in ai_results:
        ref = (r.get("device") or {}).get("reference", "")
        if ref.startswith("Device/"):
            devices[ref] = _read_ref(u, ref) or {}
    people = {}
    owners = [(s.get("owner") or {}).get("reference", "") for s in steps]
    for ref in owners + [x.get("reference", "") for x in report.get("resultsInterpreter") or []]:
        if ref.startswith(("Practitioner/", "PractitionerRole/")) and ref not in people:
            people[ref] = _read_ref(u, ref) or {}
    return ReportInput(
        report=report,
        patient=patient,
        organization=org,
        facility_name=facility_name,
        ai_results=ai_results,
        findings=findings,
        prescriptions=prescriptions,
        media=media,
        binaries=binaries,
        devices=devices,
        people=people,
        steps=steps,
    )


def preview(
    repo: Repository,
    task_id: str,
    *,
    facility_name: str = "Hearth",
    render: Callable[[ReportInput], bytes] = render_pdf,
) -> bytes:
    """The PDF of case ``task_id``'s report (a step's id names its case) as it stands, unsigned
    and not stored: the stored final report once there is one, otherwise the report approving
    the case now would make (``preliminary``). Writes nothing; reads through ``repo``, so a
    patient-context repository sees only that patient's cases."""

    def fn(u: Unit) -> ReportInput:
        case = cases.read_task(u, task_id).resource
        parent = ((case.get("partOf") or [{}])[0]).get("reference", "")
        if parent.startswith("Task/") and code_of(case, STEP_SYSTEM):
            case = cases.read_task(u, parent.removeprefix("Task/")).resource
        case_def = cases._definition_of(case)  # Invalid for a Task that is not a case
        if not any("final-report" in s.effects for s in case_def.steps):
            raise Invalid(f"a {case_def.title} case makes no report")
        if io_values(case, "output", "report"):
            return gather(u, case, facility_name)[0]
        steps = [s.resource for s in cases.steps_of(u, case["id"])]
        draft = reports.final_report_body(case, steps, case_def, status="preliminary")
        return gather_for(u, case, draft, facility_name)

    return render(repo.read(fn))


def signatory(data: ReportInput) -> tuple[str, str]:
    """(the signature's /Name, its /Reason): the admin who approved the report, and the doctor
    responsible for its findings."""
    approver, approved = "", ""
    for step in data.steps:
        owner = (step.get("owner") or {}).get("reference", "")
        if "admin" in roles_of(step) and step.get("status") == "completed" and owner:
            approver = person_name(data.people.get(owner)) or owner
            approved = ((step.get("executionPeriod") or {}).get("end") or "")[:10]
    doctors = [
        person_name(data.people.get(x.get("reference", ""))) or x.get("reference", "")
        for x in data.report.get("resultsInterpreter") or []
    ]
    name = approver or ", ".join(doctors) or "Hearth"
    reason = f"Final report {data.report.get('id', '')}"
    if approver:
        reason += f" approved by {approver}" + (f" on {approved}" if approved else "")
    if doctors:
        reason += f"; responsible doctor: {', '.join(doctors)}"
    return name, reason


def _patient_email(patient: dict) -> str | None:
    for t in patient.get("telecom") or []:
        if t.get("system") == "email" and t.get("value"):
            return t["value"]
    return None


def deliver(
    repo: Repository,
    smtp: mail.SmtpConfig | None,
    case_id: str,
    *,
    signing_material: Callable[[], signing.SigningMaterial],
    facility_name: str = "Hearth",
    render: Callable[[ReportInput], bytes] = render_pdf,
) -> Delivery:
    """Deliver the report of case ``case_id`` (render, sign, attach, e-mail); see the module doc.
    ``signing_material`` gives the key and certificate (read or created on first use: a broken
    key fails the delivery visibly, like any other render failure)."""

    def begin(u: Unit) -> tuple[ReportInput, dict] | None:
        step = _delivery_step(u, case_id)
        status = step.resource["status"]
        if status == "completed":
            return None
        if status not in ("requested", "failed"):
            raise Conflict(
                f"the report of case Task/{case_id} is {status}, not waiting for delivery"
            )
        changed = with_status(
            step.resource, "in-progress", owner={"reference": SYSTEM.reference}, statusReason=None
        )
        u.update("Task", step.res_id, changed, if_match=str(step.version))
        case = u.read("Task", case_id).resource
        return gather(u, case, facility_name)

    try:
        started = repo.run(begin)
    except PreconditionFailed as exc:
        raise Conflict(
            f"the report of case Task/{case_id} is being delivered by another worker"
        ) from exc
    if started is None:
        return Delivery(case_id, "already-delivered")
    data, report = started
    try:
        pdf, binary_ref = _existing_pdf(repo, report)
        if pdf is None:
            name, reason = signatory(data)
            pdf = signing.sign_pdf(
                render(data),
                signing_material(),
                signer_name=name,
                reason=reason,
                location=person_name(data.organization) or facility_name,
            )
            binary_ref = None
        # The signed PDF is stored (Binary + DocumentReference) before it is sent, so the report
        # exists and can be read in the app even when e-mail fails; a retry sends the same PDF.
        doc_ref: str | None
        if binary_ref is None:
            binary_ref, doc_ref = repo.run(lambda u: _attach(u, report, data, pdf))
        else:
            doc_ref = _document_of(repo, report)
        email = _patient_email(data.patient)
        if email is None:
            raise mail.MailError(
                f"{data.patient.get('resourceType')}/{data.patient.get('id')} has no e-mail address"
            )
        title = (report.get("code") or {}).get("text", "report")
        mail.send(
            smtp,
            email,
            f"Your {title} report",
            f"Dear patient,\n\nyour {title} report is attached (report {report['id']}).\n"
            "You can also download it from your patient portal.\n",
            [(f"report-{report['id']}.pdf", "application/pdf", pdf)],
        )
    except Exception as exc:  # noqa: BLE001 - any render/attach/send failure is recorded
        reason = str(exc) or type(exc).__name__
        log.warning("report delivery for case %s failed: %s", case_id, type(exc).__name__)
        repo.run(lambda u: _fail(u, case_id, reason))
        return Delivery(case_id, "failed", reason)
    repo.run(lambda u: _done(u, case_id, doc_ref, email))
    return Delivery(case_id, "delivered", document=doc_ref)


def _existing_pdf(repo: Repository, report: dict) -> tuple[bytes | None, str | None]:
    """A retry after a failed send reuses the PDF already attached."""
    for form in report.get("presentedForm") or []:
        url = form.get("url", "")
        if form.get("contentType") == "application/pdf" and url.startswith("Binary/"):

            def read_binary(u: Unit, bid: str = url.removeprefix("Binary/")) -> dict:
                return u.read("Binary", bid).resource

            binary = repo.read(read_binary)
            return base64.b64decode(binary["data"]), url
    return None, None


def _document_of(repo: Repository, report: dict) -> str | None:
    pks = repo.read(
        lambda u: u.match("DocumentReference", [("related", f"DiagnosticReport/{report['id']}")])
    )
    return f"DocumentReference/{repo.read(lambda u: u.read_many(pks))[0].res_id}" if pks else None


def _attach(u: Unit, report: dict, data: ReportInput, pdf: bytes) -> tuple[str, str]:
    data64 = base64.b64encode(pdf).decode()
    binary = u.create(
        {
            "resourceType": "Binary",
            "contentType": "application/pdf",
            # R4 binary.html#security: the Binary is read with the report's permissions.
            "securityContext": {"reference": f"DiagnosticReport/{report['id']}"},
            "data": data64,
        }
    ).stored
    attachment = {
        "contentType": "application/pdf",
        "url": binary.ref,
        "size": len(pdf),
        "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode(),  # noqa: S324 - FHIR Attachment.hash is SHA-1
        "title": f"{(report.get('code') or {}).get('text', 'Report')} — report {report['id']}",
        "creation": now(),
    }
    current = u.read("DiagnosticReport", report["id"])
    u.update(
        "DiagnosticReport",
        report["id"],
        {**current.resource, "presentedForm": [attachment]},
        if_match=str(current.version),
    )
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": report["code"],
        "subject": report["subject"],
        "date": now(),
        "author": report.get("resultsInterpreter", []),
        "description": attachment["title"],
        "content": [{"attachment": attachment}],
        "context": {"related": [{"reference": f"DiagnosticReport/{report['id']}"}]},
    }
    doc = {k: v for k, v in doc.items() if v != []}
    return binary.ref, u.create(doc).stored.ref


def _fail(u: Unit, case_id: str, reason: str) -> None:
    step = _delivery_step(u, case_id)
    u.update(
        "Task", step.res_id, with_status(step.resource, "failed", statusReason={"text": reason})
    )
    case = u.read("Task", case_id).resource
    changed = note(
        {**case, "businessStatus": business_status("REPORT_FAILED"), "lastModified": now()},
        f"report delivery failed: {reason}",
    )
    u.update("Task", case_id, changed)


def _done(u: Unit, case_id: str, doc_ref: str | None, email: str) -> None:
    step = _delivery_step(u, case_id)
    comm = {
        "resourceType": "Communication",
        "status": "completed",
        "partOf": [{"reference": step.ref}],
        "subject": step.resource["for"],
        "recipient": [step.resource["for"]],
        "medium": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                        "code": "EMAILWRIT",
                        "display": "email",
                    }
                ]
            }
        ],
        "sent": now(),
        "payload": [{"contentString": f"Report e-mailed to {email}"}],
    }
    if doc_ref:
        comm["payload"].append({"contentReference": {"reference": doc_ref}})
    comm_ref = u.create(comm).stored.ref
    changed = step.resource
    for label, ref in (("DocumentReference", doc_ref), ("Communication", comm_ref)):
        if ref:
            changed = {
                **changed,
                "output": [
                    *(changed.get("output") or []),
                    {"type": {"text": label}, "valueReference": {"reference": ref}},
                ],
            }
    period = {**(changed.get("executionPeriod") or {}), "end": now()}
    done = with_status(changed, "completed", executionPeriod=period)
    u.update("Task", step.res_id, done, if_match=str(step.version))
    case = u.read("Task", case_id)
    case_def = cases._definition_of(case.resource)
    cases._advance(u, case, case_def, case_def.step(code_of(done, STEP_SYSTEM) or ""), SYSTEM)


def reset_stale(repo: Repository, older_than: timedelta = timedelta(minutes=10)) -> list[str]:
    """Deliveries left ``in-progress`` by a process that died mid-way become ``failed``
    (retryable) once they made no progress for ``older_than``; returns their case ids."""
    cutoff = (datetime.now(UTC) - older_than).isoformat().replace("+00:00", "Z")
    query = [
        ("code", f"{STEP_SYSTEM}|report-delivery"),
        ("status", "in-progress"),
        ("modified", f"lt{cutoff}"),
    ]
    stale = repo.read(lambda u: u.read_many(u.match("Task", query)))
    out = []
    for step in stale:
        case_id = step.resource["partOf"][0]["reference"].removeprefix("Task/")

        def fn(u: Unit, step: Stored = step, case_id: str = case_id) -> bool:
            if u.read("Task", step.res_id).version != step.version:
                return False  # it moved on meanwhile
            _fail(
                u,
                case_id,
                f"delivery interrupted: no progress since {step.resource.get('lastModified')}",
            )
            return True

        if repo.run(fn):
            out.append(case_id)
    return out


def pending(repo: Repository) -> list[str]:
    """Cases whose report waits for delivery (requested) — failed ones wait for a retry call."""

    def fn(u: Unit) -> list[str]:
        pks = u.match("Task", [("code", f"{STEP_SYSTEM}|report-delivery"), ("status", "requested")])
        return [
            t.resource["partOf"][0]["reference"].removeprefix("Task/") for t in u.read_many(pks)
        ]

    return repo.read(fn)
