"""The demo story `make run` tells (``hearth demo``): after ``demo/hearth-demo.json`` (people,
places, the doctor's Schedule), free Slots for the doctor's next two weeks, then six skin
screenings walked through Hearth's real edge — its FHIR API, in process, with an operator token
acting as each person (``X-Hearth-Role`` / ``X-Hearth-Actor``, fhir_server/rest/workflow_http.py)
— and the real models: two finished with the signed report in the development mailbox, one
urgent (high-risk AI result, proposed appointment) and one routine on the doctor's worklist, one
waiting for the pharmacist and one for the admin's approval.

The photos are real dermoscopy images (ISIC, CC0: demo/photos/ATTRIBUTION.txt). The story is
told once per database: a second run finds the first case and stops.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fhir_server.runtime.settings import Settings

CASE_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-case"
STEP_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-step"
SKIN_LABEL = "http://hearth.local/fhir/CodeSystem/ai-model-label/skin"
SNOMED = "http://snomed.info/sct"
STORY_CLIENT = "hearth-demo-story"
DOCTOR, PHARMACIST, CADRE, ADMIN = (
    "Practitioner/demo-doctor",
    "Practitioner/demo-pharmacist",
    "Practitioner/demo-cadre",
    "Practitioner/demo-admin",
)
SCHEDULE = "Schedule/demo-doctor-schedule"
_DOCTOR_STEP = ("doctor", DOCTOR, "doctor-review")
_PHARMACIST_STEP = ("pharmacist", PHARMACIST, "pharmacist-review")
_ADMIN_STEP = ("admin", ADMIN, "admin-approval")
# The steps people take in each story, by the last one taken (the pharmacist's is skipped by
# the case itself when nothing was prescribed).
STEPS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "ai": (),
    "doctor": (_DOCTOR_STEP,),
    "pharmacist": (_DOCTOR_STEP, _PHARMACIST_STEP),
    "delivered": (_DOCTOR_STEP, _PHARMACIST_STEP, _ADMIN_STEP),
}


@dataclass(frozen=True)
class Finding:
    """What the doctor records: a finding, its class (the skin model's label, SNOMED CT where
    Hearth's codes carry it), an optional prescription."""

    text: str
    label: str
    display: str
    snomed: tuple[str, str] | None = None
    prescription: tuple[str, str] | None = None  # (medicine, dosage instruction)


@dataclass(frozen=True)
class Case:
    patient: str
    photo: str
    site: str
    until: str  # the last step taken: ai | doctor | pharmacist | delivered
    finding: Finding | None = None
    priority: str = "routine"


NEVUS = ("nv", "Melanocytic nevus", ("400096001", "Melanocytic nevus"))
STORY: tuple[Case, ...] = (
    Case(
        "demo-patient-1",
        "ISIC_0000191.jpg",
        "Left forearm",
        "delivered",
        Finding(
            "Regular, symmetric pigmented lesion; benign naevus. Photo again in 12 months.", *NEVUS
        ),  # fmt: skip
    ),
    Case(
        "demo-patient-2",
        "ISIC_0000154.jpg",
        "Upper back",
        "delivered",
        Finding(
            "Irritated seborrhoeic keratosis, not melanoma on dermoscopy; treat the inflammation "
            "and review in 3 months.",
            "bkl",
            "Benign keratosis-like lesion",
            ("394726009", "Seborrheic keratosis"),
            ("Hydrocortisone 1% cream", "Apply thinly twice daily for 7 days"),
        ),
    ),
    Case("demo-patient-3", "ISIC_0000169.jpg", "Right calf", "ai"),
    Case("demo-patient-4", "ISIC_0000452.jpg", "Left shoulder", "ai"),
    Case(
        "demo-patient-5",
        "ISIC_0000311.jpg",
        "Chest",
        "doctor",
        Finding(
            "Atypical naevus with inflamed surround; excision biopsy booked, antiseptic until then.",
            "nv",
            "Melanocytic nevus",
            ("400096001", "Melanocytic nevus"),
            ("Chlorhexidine 0.05% solution", "Clean the area once daily until the biopsy"),
        ),
    ),
    Case(
        "demo-patient-6",
        "ISIC_0000268.jpg",
        "Right thigh",
        "pharmacist",
        Finding("Benign naevus; no treatment needed.", *NEVUS),
    ),
)


@dataclass
class Told:
    slots: int = 0
    cases: dict[str, str] = field(default_factory=dict)  # patient -> case's businessStatus
    skipped: bool = False

    def summary(self) -> str:
        if self.skipped:
            return "the demo story is already told in this database (nothing changed)"
        lines = [f"free Slots made for {SCHEDULE}: {self.slots}"]
        lines += [f"  Patient/{p}: {status}" for p, status in self.cases.items()]
        return "\n".join(lines)


class _Api:
    """The FHIR API of an in-process Hearth, as an operator acting for one person at a time."""

    def __init__(self, client, token: str) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None, who: tuple[str, str] | None = None) -> dict:  # fmt: skip
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json"}
        if who is not None:
            headers |= {"X-Hearth-Role": who[0], "X-Hearth-Actor": who[1]}
        resp = self.client.request(method, f"/fhir/{path}", json=body, headers=headers)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} /fhir/{path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else {}

    def op(self, path: str, who: tuple[str, str], **params: dict) -> dict:
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": name, **value} for name, value in params.items()],
        }
        return self.call("POST", path, body, who)

    def step(self, case_id: str, code: str) -> dict:
        found = self.call("GET", f"Task?part-of=Task/{case_id}&code={STEP_SYSTEM}|{code}")
        return found["entry"][0]["resource"]


def _findings(case: Case) -> list[dict]:
    f = case.finding
    assert f is not None
    codings = [{"system": SKIN_LABEL, "code": f.label, "display": f.display}]
    if f.snomed:
        codings.insert(0, {"system": SNOMED, "code": f.snomed[0], "display": f.snomed[1]})
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "exam",
                    }
                ]
            }
        ],
        "code": {"text": "Dermoscopic assessment"},
        "bodySite": {"text": case.site},
        "valueCodeableConcept": {"coding": codings, "text": f.display},
        "note": [{"text": f.text}],
    }
    outputs = [{"name": "output", "resource": observation}]
    if f.prescription:
        medicine, dosage = f.prescription
        outputs.append(
            {
                "name": "output",
                "resource": {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {"text": medicine},
                    "dosageInstruction": [{"text": dosage}],
                },
            }
        )
    return [
        *outputs,
        {"name": "conclusion", "valueString": f.text},
        {"name": "conclusionCode", "valueCodeableConcept": {"coding": codings}},
    ]


def _photo(case: Case, photos: Path) -> dict:
    data = base64.b64encode((photos / case.photo).read_bytes()).decode()
    return {
        "resourceType": "Media",
        "status": "completed",
        "modality": {
            "coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "XC"}]
        },
        "subject": {"reference": f"Patient/{case.patient}"},
        "operator": {"reference": CADRE},
        "createdDateTime": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "bodySite": {"text": case.site},
        "content": {"contentType": "image/jpeg", "data": data, "title": f"{case.site} lesion"},
    }


def tell(settings: Settings, root: Path, say: Callable[[str], None] = print) -> Told:
    """Tell the story into the database of ``settings`` (migrated), from the demo folder
    ``root`` (its bundle and photos)."""
    from fastapi.testclient import TestClient

    from fhir_server.auth.clients import register
    from fhir_server.auth.tokens import operator_token
    from fhir_server.runtime import ai
    from fhir_server.runtime.app import build_context, create_app
    from fhir_server.runtime.loader import load_paths
    from inference.worker import Worker
    from resources.auth.store import AuthStore

    for noisy in ("httpx", "mail.log"):  # one line per request / SMTP command otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    told = Told()
    ctx = build_context(settings)
    try:
        summary = load_paths(ctx, [root / "hearth-demo.json"], progress=False)
        if summary.failed:
            raise RuntimeError(f"the demo bundle did not load: {summary.failed}")
        store = AuthStore(ctx.repo.engine)
        if store.client(STORY_CLIENT) is None:
            register(store, "Hearth demo story", "confidential-symmetric", scope="system/*.cruds", client_id=STORY_CLIENT)  # fmt: skip
        token = operator_token(store, settings, STORY_CLIENT, "system/*.cruds")["access_token"]
        # The app in this process, without the network listeners (`hearth serve` runs those),
        # but with the development mailbox when it is set, so reports land there.
        quiet = settings.model_copy(update={"dicom_enabled": False, "mllp_port": None})
        with TestClient(create_app(quiet), base_url=settings.base_url) as client:
            api = _Api(client, token)
            begun = api.call("GET", "Task?patient=Patient/demo-patient-1&_summary=count")
            if begun.get("total"):
                told.skipped = True
                return told
            # Two weeks of weekday mornings, 20-minute Slots ($generate-slots).
            zone = settings.default_timezone
            today = datetime.now(ZoneInfo(zone)).date()
            made = api.op(
                f"{SCHEDULE}/$generate-slots",
                ("admin", ADMIN),
                start={"valueDate": (today + timedelta(days=1)).isoformat()},
                weeks={"valueInteger": 2},
                startTime={"valueTime": "09:00:00"},
                endTime={"valueTime": "12:00:00"},
                slotMinutes={"valueInteger": 20},
                timeZone={"valueString": zone},
            )
            told.slots = next(
                p["valueInteger"] for p in made["parameter"] if p["name"] == "created"
            )
            cadre = ("cadre", CADRE)
            started = {}
            for case in STORY:
                media = api.call("POST", "Media", _photo(case, root / "photos"))
                start: dict[str, dict] = {
                    "caseType": {"valueCode": "skin-screening"},
                    "patient": {"valueReference": {"reference": f"Patient/{case.patient}"}},
                    "focus": {"valueReference": {"reference": f"Media/{media['id']}"}},
                    "referredTo": {"valueReference": {"reference": DOCTOR}},
                    "priority": {"valueCode": case.priority},
                    "note": {"valueString": "Photo taken at the outreach post; consent recorded."},
                }
                started[case.patient] = api.op("Task/$start-case", cadre, **start)["id"]
                say(f"started a skin screening for Patient/{case.patient} ({case.photo})")
            # The models: the worker `make run` starts would do this within seconds.
            worker = Worker(ctx.repo, ai.analyzer(ctx, "demo-story"), batch_size=8)
            while worker.run_once() > 0:
                pass
            for case in STORY:
                case_id = started[case.patient]
                for role, who, code in STEPS[case.until]:
                    step = api.step(case_id, code)
                    if step["status"] != "requested":
                        continue  # not on this case's path (no prescription: no pharmacist)
                    api.op(f"Task/{step['id']}/$claim", (role, who))
                    params: list[dict] = []
                    if role == "doctor":
                        params = _findings(case)
                    elif role == "pharmacist":
                        params = _dispense(api, case_id)
                    body = {"resourceType": "Parameters", "parameter": params}
                    api.call("POST", f"Task/{step['id']}/$complete", body, (role, who))
                status = api.call("GET", f"Task/{case_id}")["businessStatus"]["coding"][0]["code"]
                told.cases[case.patient] = status
            return told
    finally:
        ctx.repo.engine.dispose()


def _dispense(api: _Api, case_id: str) -> list[dict]:
    """The pharmacist's record: a MedicationDispense of each prescription of the case."""
    order = api.call("GET", f"Task/{case_id}")["basedOn"][0]["reference"]
    found = api.call("GET", f"MedicationRequest?based-on={order}")
    orders = [e["resource"] for e in found.get("entry", []) if e["search"]["mode"] == "match"]
    out = []
    for mr in orders:
        out.append(
            {
                "name": "output",
                "resource": {
                    "resourceType": "MedicationDispense",
                    "status": "completed",
                    "medicationCodeableConcept": mr["medicationCodeableConcept"],
                    "authorizingPrescription": [{"reference": f"MedicationRequest/{mr['id']}"}],
                    "performer": [{"actor": {"reference": PHARMACIST}}],
                    "quantity": {"value": 1, "unit": "tube"},
                    "whenHandedOver": datetime.now(UTC)
                    .isoformat(timespec="seconds")
                    .replace("+00:00", "Z"),
                    "dosageInstruction": mr.get("dosageInstruction", []),
                },
            }
        )
    out.append({"name": "note", "valueString": "Dispensed with instructions; no interactions with known allergies."})  # fmt: skip
    return out
