"""The DICOM ingest service: every received instance (C-STORE or STOW-RS) is checked, stored in
the instance file store, and folded into its study's ImagingStudy and Patient through the
Repository; a study is announced complete once per arrival of new instances.

Receiving is synchronous up to the file store, and success is answered only for what will reach
FHIR: the instance's Patient and ImagingStudy are mapped and validated as R4 first (an instance
that cannot be mapped is refused 0xC000 with the reason), and the instance is on disk and in the
store's pending journal before the sender hears success. The FHIR side is written by one
background writer that batches the instances waiting for each study into one unit of work, so a
500-instance study costs tens of ImagingStudy writes, not 500. ``flush()`` waits for the writer (STOW-RS answers after it). Completion: ``quiet_seconds``
with no new instance for the study, or the release of the association that sent it (when
``complete_on_release``); subscribers in ``on_study_complete`` get the ImagingStudy id.

Nothing acknowledged is dropped (docs/dicom.md "Data safety"): a committed write removes its
instances from the journal; a study whose writes fail ``WRITE_ATTEMPTS`` times in a row is
dead-lettered in the journal (``InstanceStore.mark_failed``) and logged, and waits for
``hearth dicom-replay``; the whole journal (instances acknowledged before a crash, dead-lettered
studies) is replayed when the service starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from pydicom import dcmread

from mappings.dicom import imaging_study, patient
from resources import audit
from resources.errors import PreconditionFailed
from resources.storage.instances import InstanceStore, PutResult
from resources.storage.repository import Repository, Unit
from resources.validation import validate_resource

from .parse import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, Checked, Rejected, Source, check, chunks
from .sop_classes import STORAGE_UIDS

log = logging.getLogger("hearth.dicom.ingest")

ENDPOINT_ID = "hearth-dicomweb"
WRITE_ATTEMPTS = 5  # a study is dead-lettered (kept in the journal) after this many failures
FORGET_AFTER = 600.0  # seconds after the quiet period that a finished study's state is kept


@dataclass
class _Pending:
    header: imaging_study.Header
    patient: dict  # the Patient the header describes (mappings.dicom.patient.patient)
    # ``Patient/{id}`` the upload is bound to (a patient's or cadre's own upload,
    # ``$upload-xray``): the study's subject, whatever the header says; None: matched by Patient ID
    subject: str | None = None


@dataclass
class _Study:
    uid: str
    pending: list[_Pending] = field(default_factory=list)
    last_arrival: float = 0.0
    new_since_event: bool = False  # an instance new to the store arrived since the last event
    release_requested: bool = False
    resource_id: str | None = None
    mismatch_reported: bool = False
    failures: int = 0  # consecutive failed writes


@dataclass(frozen=True)
class Received:
    sop_uid: str
    sop_class: str
    study_uid: str
    series_uid: str
    stored: PutResult


class Ingest:
    """Coordinates the instance store, the DICOM→FHIR mappings and the repository."""

    def __init__(
        self,
        repo: Repository,
        store: InstanceStore,
        *,
        dicomweb_base: str,
        quiet_seconds: float = 30.0,
        complete_on_release: bool = True,
        batch_delay: float = 0.05,
    ) -> None:
        self.repo = repo
        self.store = store
        self.dicomweb_base = dicomweb_base
        self.quiet_seconds = quiet_seconds
        self.complete_on_release = complete_on_release
        self.batch_delay = batch_delay
        self.on_study_complete: list[Callable[[str], None]] = []
        # astimezone() with no argument always returns an aware datetime (typeshed: Optional)
        self.local_tz: tzinfo = datetime.now().astimezone().tzinfo or UTC
        self._studies: dict[str, _Study] = {}
        self._cond = threading.Condition()
        self._writing = 0  # studies being written right now
        self._stop = False
        self._thread: threading.Thread | None = None
        self._endpoint_ready = False
        self._by_association: dict[object, set[str]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, replay: bool = True) -> None:
        """Start the writer and (``replay``) queue the whole pending journal again: instances
        acknowledged before a crash, and dead-lettered studies (retried once per start)."""
        self._thread = threading.Thread(target=self._run, name="dicom-ingest", daemon=True)
        self._thread.start()
        if not replay:
            return
        try:
            queued = self.replay()
        except Exception:  # the journal stays; `hearth dicom-replay` can take it up
            log.exception("replaying the DICOM pending journal failed")
        else:
            if queued:
                log.warning("%d acknowledged instance(s) from the pending journal replayed", queued)

    def stop(self) -> None:
        self.flush(timeout=10)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- receiving ---------------------------------------------------------------------------
    def receive(self, data: Source, *, association: object | None = None) -> Received:
        """Check and store one Part 10 instance (its bytes, or the path of a file holding it:
        then it is streamed, never read whole); raises ``Rejected`` with a DICOM status."""
        checked = check(data, STORAGE_UIDS)
        return self.accept(checked, data, association=association)

    def accept(
        self,
        checked: Checked,
        data: Source,
        *,
        association: object | None,
        subject: str | None = None,
    ) -> Received:
        """Store one checked instance; with ``subject`` (``Patient/{id}``) its study is bound to
        that Patient instead of the one its Patient ID names (the caller gave the instance UIDs
        of its own, so it can join no other study)."""
        try:
            header = imaging_study.header(checked.dataset, self.local_tz)
            described = patient.patient(checked.dataset)
        except Exception as exc:  # an attribute pydicom cannot decode
            raise Rejected(
                0xA900, f"header cannot be mapped: {exc}", checked.sop_class, checked.sop_uid
            ) from exc
        problem = self._unmappable(header, described)
        if problem is not None:
            raise Rejected(CANNOT_UNDERSTAND, problem, checked.sop_class, checked.sop_uid)
        try:
            stored = self.store.put(checked.sop_uid, chunks(data))
            self.store.mark_pending(header.study_uid, checked.sop_uid)
        except OSError as exc:
            log.error("storing %s failed: %s", checked.sop_uid, exc)
            raise Rejected(
                OUT_OF_RESOURCES,
                f"the instance could not be stored: {exc.strerror}",
                checked.sop_class,
                checked.sop_uid,
            ) from exc
        with self._cond:
            study = self._studies.get(header.study_uid)
            if study is None:
                study = self._studies[header.study_uid] = _Study(header.study_uid)
            study.pending.append(_Pending(header, described, subject))
            study.last_arrival = time.monotonic()
            if stored.created:
                study.new_since_event = True
            if association is not None:
                self._by_association.setdefault(association, set()).add(header.study_uid)
            self._cond.notify_all()
        return Received(
            checked.sop_uid, checked.sop_class, header.study_uid, header.series_uid, stored
        )

    def _unmappable(self, header: imaging_study.Header, described: dict) -> str | None:
        """Why this instance's Patient or ImagingStudy would not be accepted by the repository
        (None when they would): the mappings run and their output is validated as R4, plus the
        rule of R4 datatypes.html#string that strings hold no control characters other than
        tab, CR and LF (PostgreSQL's JSONB cannot even store NUL). Says where, never what."""
        study = imaging_study.merge(
            None,
            [header],
            subject={"reference": "Patient/unmapped"},
            endpoint=f"Endpoint/{ENDPOINT_ID}",
        )
        for resource in (described, study):
            where = _control_character(resource)
            if where is not None:
                return (
                    f"{resource['resourceType']}.{where} would hold a control character "
                    "(not allowed in FHIR strings)"
                )
            errors = [i for i in validate_resource(resource) if i.severity in ("error", "fatal")]
            if errors:  # the location and kind only: diagnostics may quote the value (PHI)
                where = ".".join(str(p) for p in errors[0].expression) or "(resource)"
                return f"{resource['resourceType']}.{where} is not valid FHIR R4 ({errors[0].code})"
        return None

    def replay(self, *, include_failed: bool = True, studies: list[str] | None = None) -> int:
        """Queue the instances of the pending journal for their ImagingStudy again (from the
        stored files); ``include_failed`` also takes dead-lettered studies. Returns how many."""
        failed = self.store.failed()
        queued = 0
        for study_uid, sop_uids in self.store.pending().items():
            if studies is not None and study_uid not in studies:
                continue
            if study_uid in failed and not include_failed:
                continue
            items = []
            for uid in sop_uids:
                try:
                    with self.store.open(uid) as f:
                        ds = dcmread(f, stop_before_pixels=True)
                    items.append(
                        _Pending(imaging_study.header(ds, self.local_tz), patient.patient(ds))
                    )
                except Exception:
                    log.exception("pending instance %s of study %s cannot be read", uid, study_uid)
            if not items:
                continue
            self.store.clear_failed(study_uid)
            with self._cond:
                study = self._studies.get(study_uid)
                if study is None:
                    study = self._studies[study_uid] = _Study(study_uid)
                study.failures = 0
                study.pending.extend(items)
                study.new_since_event = True
                study.release_requested = True
                self._cond.notify_all()
            queued += len(items)
        return queued

    def association_released(self, association: object) -> None:
        """The sender released its association: its studies are complete (when configured)."""
        with self._cond:
            uids = self._by_association.pop(association, set())
            if self.complete_on_release:
                for uid in uids:
                    self._studies[uid].release_requested = True
            self._cond.notify_all()

    def association_aborted(self, association: object) -> None:
        with self._cond:
            self._by_association.pop(association, None)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every received instance is in its ImagingStudy; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._writing or any(s.pending for s in self._studies.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.notify_all()
                self._cond.wait(left)
        return True

    def study_id(self, study_uid: str) -> str | None:
        """The ImagingStudy id of a study this process has written (None when unknown)."""
        with self._cond:
            study = self._studies.get(study_uid)
            return study.resource_id if study else None

    # -- the writer --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                if not any(s.pending for s in self._studies.values()):
                    self._cond.wait(timeout=min(0.5, max(self.quiet_seconds / 4, 0.05)))
            if self.batch_delay:
                time.sleep(self.batch_delay)  # let a burst of instances gather into one write
            with self._cond:
                work = [(s, s.pending) for s in self._studies.values() if s.pending]
                for s, _ in work:
                    s.pending = []
                self._writing += len(work)
            failed = False
            for study, items in work:
                try:
                    self._write(study, items)
                    study.failures = 0
                except Exception as exc:
                    study.failures += 1
                    failed = True
                    with self._cond:
                        if study.failures < WRITE_ATTEMPTS:  # e.g. the database restarting
                            study.pending = items + study.pending
                    log.exception(
                        "updating ImagingStudy for study %s failed (attempt %d of %d)",
                        study.uid,
                        study.failures,
                        WRITE_ATTEMPTS,
                    )
                    if study.failures >= WRITE_ATTEMPTS:
                        self._dead_letter(study, exc)
                finally:
                    with self._cond:
                        self._writing -= 1
                        self._cond.notify_all()
            if failed:
                time.sleep(0.5)
            self._announce()

    def _dead_letter(self, study: _Study, exc: Exception) -> None:
        """Stop retrying the study in memory; its instances stay in the journal, marked failed."""
        detail = {
            "failed_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "attempts": study.failures,
            "error": type(exc).__name__,
        }
        try:
            self.store.mark_failed(study.uid, detail)
        except Exception:
            log.exception("dead-lettering study %s failed (it stays in the journal)", study.uid)
        log.error(
            "study %s dead-lettered after %d failed writes: its instances stay in the pending "
            "journal; `hearth dicom-pending` lists it, `hearth dicom-replay` retries it",
            study.uid,
            study.failures,
        )

    def _announce(self) -> None:
        """Emit the completion event of every study that is quiet or released, once; forget
        studies idle for a long while (their state is only needed while instances arrive)."""
        now = time.monotonic()
        due: list[_Study] = []
        with self._cond:
            idle = [
                uid
                for uid, s in self._studies.items()
                if not s.pending
                and not s.new_since_event
                and now - s.last_arrival > self.quiet_seconds + FORGET_AFTER
            ]
            for uid in idle:
                del self._studies[uid]
            for s in self._studies.values():
                if s.pending or not s.new_since_event or s.resource_id is None:
                    continue
                if s.release_requested or now - s.last_arrival >= self.quiet_seconds:
                    s.new_since_event = False
                    s.release_requested = False
                    due.append(s)
        for s in due:
            log.info("study %s complete: ImagingStudy/%s", s.uid, s.resource_id)
            for callback in list(self.on_study_complete):
                try:
                    callback(s.resource_id)  # type: ignore[arg-type]
                except Exception:
                    log.exception("study-complete subscriber %r failed", callback)

    def _write(self, study: _Study, items: list[_Pending]) -> None:
        self._ensure_endpoint()
        for attempt in range(8):
            try:
                result = self.repo.run(lambda unit: self._write_unit(unit, study, items))
                with self._cond:
                    study.resource_id = result
                self.store.clear_pending(study.uid, [p.header.sop_uid for p in items])
                return
            except PreconditionFailed:  # another writer updated the study first: merge again
                log.debug("ImagingStudy %s changed underneath (attempt %d)", study.uid, attempt)
        raise RuntimeError(f"ImagingStudy for {study.uid} kept changing under 8 attempts")

    def _write_unit(self, unit: Unit, study: _Study, items: list[_Pending]) -> str:
        described = items[0].patient
        ident = described["identifier"][0]
        bound = next((p.subject for p in items if p.subject), None)
        found = [] if bound else unit.match("Patient", patient.search(ident), limit=2)
        mismatches: list[str] = []
        if bound:
            subject_id = unit.read("Patient", bound.split("/", 1)[1]).res_id
        elif found:
            stored_patient = unit.read_many(found[:1])[0]
            subject_id = stored_patient.res_id
            mismatches = patient.mismatches(stored_patient.content or {}, described)
        else:
            created = unit.create(described, if_none_exist=patient.search(ident))
            subject_id = created.stored.res_id
        subject = {"reference": f"Patient/{subject_id}"}
        headers = [p.header for p in items]
        existing = unit.match("ImagingStudy", imaging_study.study_search(study.uid), limit=2)
        endpoint = f"Endpoint/{ENDPOINT_ID}"
        if existing:
            current = unit.read_many(existing[:1])[0]
            body = imaging_study.merge(
                current.resource,
                headers,
                subject=current.resource.get("subject", subject),
                endpoint=endpoint,
            )
            result = unit.update(
                "ImagingStudy", current.res_id, body, if_match=str(current.version)
            )
        else:
            based_on = self._based_on(unit, headers)
            body = imaging_study.merge(
                None, headers, subject=subject, endpoint=endpoint, based_on=based_on
            )
            result = unit.create(body, if_none_exist=imaging_study.study_search(study.uid))
            if result.status == "exists":  # created meanwhile by another process: merge into it
                raise PreconditionFailed("ImagingStudy appeared concurrently")
        if mismatches and not study.mismatch_reported:
            self._report_mismatch(unit, subject_id, result.stored.res_id, mismatches)
            study.mismatch_reported = True
        return result.stored.res_id

    def _based_on(self, unit: Unit, headers: list[imaging_study.Header]) -> list[dict] | None:
        """basedOn: the ServiceRequest whose identifier is the Accession Number (0008,0050)."""
        accession = next((h.accession for h in headers if h.accession), None)
        if not accession:
            return None
        found = unit.match("ServiceRequest", [("identifier", accession)], limit=2)
        if len(found) != 1:
            return None
        return [{"reference": unit.read_many(found)[0].ref}]

    def _report_mismatch(self, unit: Unit, patient_id: str, study_id: str, issues: list[str]):
        """The stored Patient is kept; the disagreement is recorded as an AuditEvent in the audit
        log, in the ingest's own transaction."""
        log.warning(  # the differences themselves (names, dates) go to the audit log only
            "Patient/%s differs from DICOM header of ImagingStudy/%s in %d element(s)",
            patient_id,
            study_id,
            len(issues),
        )
        audit.append(
            unit.conn,
            {
                "resourceType": "AuditEvent",
                "type": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110107",
                    "display": "Import",
                },
                "action": "C",
                "outcome": "4",
                "outcomeDesc": "DICOM patient demographics differ from the stored Patient "
                "(stored Patient kept): " + "; ".join(issues),
                "agent": [{"who": {"display": "Hearth DICOM ingest"}, "requestor": False}],
                "source": {"observer": {"display": "Hearth"}},
                "entity": [
                    {"what": {"reference": f"Patient/{patient_id}"}},
                    {"what": {"reference": f"ImagingStudy/{study_id}"}},
                ],
            },
        )

    def _ensure_endpoint(self) -> None:
        """Endpoint/hearth-dicomweb: where ImagingStudy.endpoint points (WADO-RS)."""
        if self._endpoint_ready:
            return
        body = {
            "resourceType": "Endpoint",
            "id": ENDPOINT_ID,
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs",
            },
            "name": "Hearth DICOMweb",
            "payloadType": [{"text": "DICOM"}],
            "payloadMimeType": ["application/dicom"],
            "address": self.dicomweb_base,
        }
        self.repo.run(lambda unit: unit.update("Endpoint", ENDPOINT_ID, body))
        self._endpoint_ready = True


def _control_character(value: object, path: str = "") -> str | None:
    """The path of the first string under ``value`` holding a character below U+0020 other than
    tab, LF and CR (R4 datatypes.html#string), or None."""
    if isinstance(value, str):
        if any(ord(c) < 0x20 and c not in "\t\n\r" for c in value):
            return path or "(value)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _control_character(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _control_character(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
