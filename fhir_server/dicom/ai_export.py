"""AI results back where radiologists look: when an AI classification of an ImagingStudy is
recorded, its Comprehensive SR and heatmap Secondary Capture (``mappings/dicom/ai_objects.py``)
are stored in Hearth — in the source study, so the ImagingStudy, QIDO-RS and WADO-RS show them —
and pushed by C-STORE to the PACS named in ``HEARTH_DICOM_AI_DESTINATIONS``.

Durable on the work queue: the write hook enqueues one job (kind ``dicom-ai-objects``, keyed on
the Observation) in the transaction that records the result, so a committed result is always
exported and a rolled-back one never. ``hearth worker`` runs the jobs; a PACS that refuses or is
unreachable fails the attempt, retried with back-off up to ``HEARTH_DICOM_AI_MAX_ATTEMPTS``, then
the job stays ``failed`` with its error (dead-lettered, listed by ``hearth dicom-pending``).
Building again gives the same UIDs, so a retry replaces instead of duplicating.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

from pydicom import dcmread
from pydicom.dataset import Dataset

from fhir_server.runtime.settings import Settings
from mappings.dicom import ai_objects
from resources.errors import NotFound
from resources.jobs import queue
from resources.storage.repository import Repository, Unit, WriteResult

log = logging.getLogger(__name__)
JOB_KIND = "dicom-ai-objects"
AI_SERIES = {"SR", "OT", "KO", "PR"}  # never the source of an analysis
VERIFIED = ("final", "amended", "corrected")  # the Observation statuses of a verified result
VERIFIED_SUFFIX = "/verified"  # job key of the export after verification


def is_study_result(content: dict | None) -> bool:
    """An AI classification (Observation by a model Device, with class probabilities) derived
    from an ImagingStudy."""
    if not content or content.get("resourceType") != "Observation":
        return False
    derived = [str(d.get("reference", "")) for d in content.get("derivedFrom", [])]
    device = str(content.get("device", {}).get("reference", ""))
    return (
        any(r.startswith("ImagingStudy/") for r in derived)
        and device.startswith("Device/")
        and bool(content.get("component"))
    )


def install(repo: Repository, settings: Settings) -> None:
    """The write hook that enqueues a study result's export (``HEARTH_DICOM_AI_OBJECTS``)."""
    if not settings.dicom_ai_objects:
        return

    def on_write(u: Unit, result: WriteResult) -> None:
        stored = result.stored
        if stored.res_type == "Observation" and is_study_result(stored.content):
            # one export while preliminary, one more once verified (final): the verified SR
            # (COMPLETE / VERIFIED, a new instance in the same series) reaches the PACS too
            verified = (stored.content or {}).get("status") in VERIFIED
            queue.enqueue(
                u, JOB_KIND, f"{stored.res_id}{VERIFIED_SUFFIX if verified else ''}",
                f"Observation/{stored.res_id}", max_attempts=settings.dicom_ai_max_attempts,
            )  # fmt: skip

    repo.write_hooks.append(on_write)


class Exporter:
    """Runs ``dicom-ai-objects`` jobs: build, store through ``ingest``, push."""

    def __init__(self, repo: Repository, settings: Settings, dicom, worker: str) -> None:  # type: ignore[no-untyped-def]
        from fhir_server.dicom.qr import parse_destinations

        self.repo, self.settings, self.dicom, self.worker = repo, settings, dicom, worker
        known = parse_destinations(settings.dicom_destinations)
        wanted = [a.strip() for a in settings.dicom_ai_destinations.split(",") if a.strip()]
        missing = [a for a in wanted if a not in known]
        if missing:
            raise ValueError(
                f"HEARTH_DICOM_AI_DESTINATIONS names {', '.join(missing)}, not in "
                "HEARTH_DICOM_DESTINATIONS (AE@host:port)"
            )
        self.destinations = [known[a] for a in wanted]

    def run_once(self, limit: int = 4) -> int:
        jobs = queue.claim(self.repo, [JOB_KIND], self.worker, limit=limit,
                           lease=timedelta(minutes=5))  # fmt: skip
        for job in jobs:
            try:
                self.export(job.key.removesuffix(VERIFIED_SUFFIX))
            except Exception as exc:  # refused, unreachable, unreadable: retried, then failed
                error = f"{type(exc).__name__}: {exc}"[:2000]
                state = self.repo.run(partial(self._fail, job, error))
                log.warning("AI objects of Observation/%s: %s (%s)", job.key, error, state)
                continue
            self.repo.run(partial(self._finish, job))
        return len(jobs)

    def _fail(self, job: queue.Job, error: str, u: Unit) -> str:
        return queue.fail(u, job, self.worker, error, retry=True, backoff=timedelta(seconds=5))

    def _finish(self, job: queue.Job, u: Unit) -> bool:
        return queue.finish(u, job, self.worker)

    def export(self, observation_id: str) -> list[Dataset]:
        """Build, store and push the objects of one result; the datasets."""
        repo = self.repo
        observation = repo.read(lambda u: u.read("Observation", observation_id)).resource
        study_ref = next(
            str(d["reference"])
            for d in observation.get("derivedFrom", [])
            if str(d.get("reference", "")).startswith("ImagingStudy/")
        )
        study = repo.read(lambda u: u.read("ImagingStudy", study_ref.split("/", 1)[1])).resource
        source = self._source_header(study)
        model = self._model(str(observation["device"]["reference"]))
        when = datetime.now(UTC)
        from inference.results import DISCLAIMER

        objects = [ai_objects.structured_report(source, observation, model, when,
                                                disclaimer=DISCLAIMER)]  # fmt: skip
        png = self._heatmap(observation_id)
        if png is not None:
            objects.append(
                ai_objects.secondary_capture(
                    source, observation, model, png, when, disclaimer=DISCLAIMER
                )  # fmt: skip
            )
        for ds in objects:
            self.dicom.ingest.receive(ai_objects.part10(ds))
        if not self.dicom.ingest.flush(timeout=60):
            raise TimeoutError("the AI objects were stored but their ImagingStudy is not written")
        for destination in self.destinations:
            push(self.settings.dicom_ae_title, destination, objects)
        return objects

    def _source_header(self, study: dict) -> Dataset:
        """The header of the study's first stored instance outside the AI's own series."""
        for series in study.get("series", []):
            if series.get("modality", {}).get("code") in AI_SERIES:
                continue
            for instance in series.get("instance", []):
                try:
                    with self.dicom.store.open(instance["uid"]) as f:
                        return dcmread(f, stop_before_pixels=True)
                except NotFound:
                    continue
        raise NotFound("no stored instance of the analysed study")

    def _model(self, device_ref: str) -> dict:
        try:
            device = self.repo.read(lambda u: u.read("Device", device_ref.split("/", 1)[1]))
        except NotFound:
            return {"name": device_ref, "version": ""}
        content = device.resource
        names = [n.get("name") for n in content.get("deviceName", []) if n.get("name")]
        versions = [v.get("value") for v in content.get("version", []) if v.get("value")]
        return {
            "name": names[0] if names else device_ref,
            "version": versions[0] if versions else "",
        }

    def _heatmap(self, observation_id: str) -> bytes | None:
        """The Grad-CAM PNG of the result (``inference.results``: Media ``partOf`` it)."""
        import base64

        from inference.results import heatmap_id

        task_id = observation_id.removeprefix("ai-")
        try:
            binary = self.repo.read(lambda u: u.read("Binary", heatmap_id(task_id))).resource
        except NotFound:
            return None
        data = binary.get("data")
        return base64.b64decode(data) if isinstance(data, str) else None


def push(calling_ae: str, destination, datasets: list[Dataset]) -> None:  # type: ignore[no-untyped-def]
    """C-STORE ``datasets`` to ``destination`` on one association; raises unless every one was
    stored (status 0x0000, or a warning 0xB000-0xB007)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [str(datasets[0].file_meta.TransferSyntaxUID)])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise ConnectionError(
            f"{destination.ae_title}@{destination.host}:{destination.port} refused the association"
        )
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise ConnectionError(f"{destination.ae_title}: no C-STORE response")
            if code != 0 and not 0xB000 <= code <= 0xB007:
                raise RuntimeError(
                    f"{destination.ae_title} answered C-STORE status 0x{code:04X} for "
                    f"{ds.SOPInstanceUID}"
                )
    finally:
        assoc.release()
