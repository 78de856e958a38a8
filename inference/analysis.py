"""Carry out claimed analysis jobs: select the input → pre-process → predict → post-process →
write the FHIR results, one transaction per Task. What each step does for a model — which
series or image it reads, the checks its input must pass, its network, labels and codes — is the
model's declaration (``inference/models/<name>.py``, :mod:`inference.spec`); a formula (a
:class:`~inference.spec.Formula`) computes its own result from the record.

Image jobs of the same model are predicted as one batch. A job whose input cannot be analysed
(a corrupt image, a non-chest study, an image the quality gate refuses — blank, striped, dark,
blurred, tiny, an X-ray sent to the skin model —, missing PLCOm2012 inputs) fails its Task at
once with the reason and writes no result; any other error is retried with back-off by the queue, and the Task is
failed only when no attempt is left. The job is finished in the same transaction that writes the
results, so a worker killed mid-task leaves no result and its lease lets another worker retry.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from inference import quality, registry, results, reuse, tasks
from inference.heatmap import grad_cam, overlay_png
from inference.images import BadInput, dicom_image, is_dicom, open_photo, read_dicom
from inference.predict import LoadedModel, load_model
from inference.preprocess import preprocess
from inference.results import service_requests
from inference.segmentation import segment_photo
from inference.spec import Formula, ImageClassifier
from resources.errors import Gone, NotFound
from resources.jobs import queue
from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored

log = logging.getLogger(__name__)


# Called after a result is committed: (completed task, result refs, high_risk, uncertain).
ResultHook = Callable[[dict, list[str], bool, bool], None]


def analysis_of(task: dict) -> str:
    for coding in task.get("code", {}).get("coding", []):
        return str(coding.get("code"))
    raise BadInput("the Task has no analysis code")


@dataclass
class ModelCache:
    """Loads each model once per process (weights checked against their sha256)."""

    directory: Path | None = None
    loaded: dict[str, LoadedModel] = field(default_factory=dict)

    def get(self, name: str) -> LoadedModel:
        if name not in self.loaded:
            self.loaded[name] = (
                load_model(name, self.directory) if self.directory else load_model(name)
            )
        return self.loaded[name]


@dataclass
class _Input:
    job: queue.Job
    task: dict
    image: Image.Image
    subject: str | None = None
    derived_from: str | None = None
    effective: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column), when the input says


class Analyzer:
    """Runs claimed jobs against ``repo``; ``instance_bytes(sop_uid)`` reads stored DICOM
    instances (None: not stored)."""

    def __init__(
        self,
        repo: Repository,
        *,
        worker: str,
        instance_bytes: Callable[[str], bytes | None] | None = None,
        models: ModelCache | None = None,
        backoff: timedelta = timedelta(seconds=5),
        heatmaps: bool = True,
        wait_for_earlier: timedelta = timedelta(seconds=1),
    ) -> None:
        self.repo = repo
        self.worker = worker
        self.instance_bytes = instance_bytes
        self.models = models or ModelCache()
        self.backoff = backoff
        self.heatmaps = heatmaps
        self.wait_for_earlier = wait_for_earlier  # a job put back waits this long (reuse)
        self.result_hooks: list[ResultHook] = []
        # One batch at a time per analyzer: the networks and their Grad-CAM hooks are shared.
        self._lock = threading.Lock()

    # -- the whole batch -----------------------------------------------------------------------
    def run(self, jobs: list[queue.Job]) -> None:
        with self._lock:
            self._run(jobs)

    def _run(self, jobs: list[queue.Job]) -> None:
        tasks_by_job = self._start(jobs)
        # Earliest Task first: of several Tasks asking for the same analysis, it runs the model.
        jobs = sorted(
            (j for j in jobs if j.id in tasks_by_job),
            key=lambda j: reuse.order(tasks_by_job[j.id]),
        )
        by_model: dict[str, list[_Input]] = {}
        leaders: set[tuple[str, str, str]] = set()
        followers: list[tuple[queue.Job, dict]] = []
        for job in jobs:
            task = tasks_by_job[job.id]
            key = reuse.analysis_key(task)
            if key is not None and key in leaders:  # the same analysis, run in this batch
                followers.append((job, task))
                continue
            if self._prepare(job, task, by_model) and key is not None:
                leaders.add(key)
        self._classify_all(by_model)
        # Followers take the result their leader just committed (or, if it failed, try
        # themselves: an input that failed once fails again with the same reason).
        by_model = {}
        for job, task in followers:
            self._prepare(job, task, by_model)
        self._classify_all(by_model)

    def _prepare(self, job: queue.Job, task: dict, by_model: dict[str, list[_Input]]) -> bool:
        """Run what needs no network now (a formula, a reused result, a bad input); add an
        image to ``by_model``. True when the image was added."""
        try:
            kind = analysis_of(task)
            spec = registry.BY_ANALYSIS.get(kind)
            if spec is None:
                raise BadInput(f"Hearth has no model for analysis {kind!r}")
            if isinstance(spec, Formula):
                self._assess(job, task, spec)
                return False
            assert isinstance(spec, ImageClassifier)
            if self._from_earlier(job, task, kind):
                return False
            by_model.setdefault(spec.name, []).append(self._select(job, task, spec))
            return True
        except BadInput as exc:
            self._fail(job, task, str(exc), retry=False)
        except Exception as exc:  # a fault: retried by the queue with back-off
            log.exception("analysis job %s failed", job.id)
            self._fail(job, task, f"{type(exc).__name__}: {exc}", retry=True)
        return False

    def _classify_all(self, by_model: dict[str, list[_Input]]) -> None:
        for name, inputs in by_model.items():
            try:
                self._classify(self.models.get(name), inputs)
            except Exception as exc:
                log.exception("batch of %s failed", name)
                for item in inputs:
                    self._fail(item.job, item.task, f"{type(exc).__name__}: {exc}", retry=True)

    def _from_earlier(self, job: queue.Job, task: dict, kind: str) -> bool:
        """Complete ``task`` with the result of an earlier Task of the same analysis, or put its
        job back while that one still runs (see :mod:`inference.reuse`). False when there is no
        earlier analysis: this Task runs the model."""

        if self.repo.read(lambda u: reuse.earlier(u, task)) is None:
            return False  # the common case, decided without a write transaction

        def run(u: Unit) -> tuple[dict, list[str], bool, bool] | bool:
            found = reuse.earlier(u, task)  # again, inside the transaction that acts on it
            if found is None:
                return False
            if isinstance(found, reuse.Pending):
                waiting = {**task, "businessStatus": {"text": f"waiting for {found.task_ref}"}}
                u.update("Task", job.task_id, waiting)
                if not queue.release(u, job, self.worker, self.wait_for_earlier):
                    raise LostLease(job.id)
                return True
            result_ref = found.outputs[0][1]
            reuse.link_request(u, result_ref, service_requests(task))
            high, uncertain = reuse.flags(u, kind, result_ref)
            business = str(found.task.get("businessStatus", {}).get("text", ""))
            done = tasks.completed(
                task,
                found.outputs,
                business,
                note=f"The result of Task/{found.task['id']}, the same analysis of the same "
                "input by the same model version, is reused.",
            )
            u.update("Task", job.task_id, done)
            if not queue.finish(u, job, self.worker):
                raise LostLease(job.id)
            return done, [result_ref], high, uncertain

        try:
            outcome = self.repo.run(run)
        except LostLease:
            log.warning("job %s: lease lost to another worker", job.id)
            return True
        if isinstance(outcome, tuple):
            self._after(*outcome)
            return True
        return outcome

    def _start(self, jobs: list[queue.Job]) -> dict[str, dict]:
        """Mark the claimed Tasks in-progress (one transaction)."""

        def run(u: Unit) -> dict[str, dict]:
            found = {}
            for job in jobs:
                try:
                    task = u.read("Task", job.task_id).resource
                except NotFound:
                    continue
                if task.get("status") in ("requested", "received", "accepted", "ready"):
                    task = u.update("Task", job.task_id, tasks.started(task)).stored.resource
                found[job.id] = task
            return found

        return self.repo.run(run)

    # -- select the input ----------------------------------------------------------------------
    def _select(self, job: queue.Job, task: dict, spec: ImageClassifier) -> _Input:
        focus = str(task.get("focus", {}).get("reference", ""))
        res_type, _, res_id = focus.partition("/")
        subject = task.get("for", {}).get("reference")
        spacing = None
        if res_type == "ImagingStudy":
            study = self._read(res_type, res_id)
            image, effective, spacing = self._study_image(study, spec)
            subject = subject or study.get("subject", {}).get("reference")
        elif res_type == "Media":
            media = self._read(res_type, res_id)
            image, spacing = self._media_image(media, spec)
            effective = media.get("createdDateTime")
            subject = subject or media.get("subject", {}).get("reference")
        else:
            raise BadInput(f"{spec.analysis} needs an ImagingStudy or Media focus, not {focus!r}")
        if spec.check_image is not None:
            spec.check_image(image)
        quality.check(spec, image)  # refused with a reason the cadre can act on
        return _Input(job, task, image, subject, focus, effective, spacing)

    def _read(self, res_type: str, res_id: str) -> dict:
        try:
            stored: Stored = self.repo.read(lambda u: u.read(res_type, res_id))
        except (NotFound, Gone) as exc:
            raise BadInput(f"{res_type}/{res_id} does not exist") from exc
        assert stored.content is not None
        return stored.content

    def _study_image(
        self, study: dict, spec: ImageClassifier
    ) -> tuple[Image.Image, str | None, tuple[float, float] | None]:
        """The first instance of the first series the model takes (``spec.series``: e.g. a chest
        CR/DX series for the pneumonia model, a photographic series for the skin model), its
        date and its Pixel Spacing (0028,0030) in mm when the instance has one."""
        candidates = []
        for series in study.get("series", []):
            if spec.series(series):
                candidates.extend(series.get("instance", []))
        if not candidates:
            modalities = sorted(
                {s.get("modality", {}).get("code", "?") for s in study.get("series", [])}
            )
            raise BadInput(f"not {spec.wanted} study: series modalities {modalities}")
        if self.instance_bytes is None:
            raise BadInput("this worker has no DICOM instance store configured")
        data = self.instance_bytes(candidates[0]["uid"])
        if data is None:
            raise BadInput(f"instance {candidates[0]['uid']} is not in the instance store")
        ds = read_dicom(data)
        if spec.check_dicom is not None:
            spec.check_dicom(ds)
        return dicom_image(ds), study.get("started"), pixel_spacing(ds)

    def _media_image(
        self, media: dict, spec: ImageClassifier
    ) -> tuple[Image.Image, tuple[float, float] | None]:
        """The Media's image and, for a DICOM attachment, its Pixel Spacing in mm (a photo
        file has no known scale)."""
        content = media.get("content", {})
        data = self._attachment_bytes(content)
        if is_dicom(data):
            ds = read_dicom(data)
            if spec.check_dicom is not None:
                spec.check_dicom(ds)
            return dicom_image(ds), pixel_spacing(ds)
        return open_photo(data), None

    def _attachment_bytes(self, attachment: dict) -> bytes:
        if attachment.get("data"):
            try:
                return base64.b64decode(attachment["data"], validate=True)
            except ValueError as exc:
                raise BadInput("the attachment data is not valid base64") from exc
        url = str(attachment.get("url", ""))
        if url.startswith("Binary/"):
            binary = self._read("Binary", url.split("/", 1)[1])
            return base64.b64decode(binary.get("data", ""))
        raise BadInput("the Media has no image data (content.data or a Binary url)")

    # -- predict and write ---------------------------------------------------------------------
    def _classify(self, model: LoadedModel, inputs: list[_Input]) -> None:
        spec = model.spec
        log.info("%s: %d input(s) in one forward pass", spec.name, len(inputs))
        batch = preprocess([i.image for i in inputs], size=spec.input_size, mode=spec.mode)
        prediction = model.postprocess(model.predict_logits(batch))
        cams = (
            grad_cam(model.network, batch, [int(c) for c in prediction.labels])
            if self.heatmaps
            else None
        )
        device = results.model_device(spec, model.metadata, model.operating_point, model.evaluation)
        for n, item in enumerate(inputs):
            probs = prediction.probabilities[n]
            decided = int(prediction.labels[n])
            screen = results.screening_decision(spec, model.operating_point, probs)
            lesion = (
                results.lesion_components(
                    segment_photo(item.image, pixel_spacing_mm=item.pixel_spacing_mm)
                )
                if spec.segment_lesion
                else []
            )
            task_id = item.job.task_id
            observation = results.classification_observation(
                spec,
                device["id"],
                probs,
                decided,
                task_id=task_id,
                subject=item.subject,
                derived_from=str(item.derived_from),
                based_on=service_requests(item.task),
                effective=item.effective,
                screening=screen,
                lesion=lesion,
            )
            extra = []
            if cams is not None:
                png = overlay_png(item.image, cams[n])
                extra = list(
                    results.heatmap_resources(
                        png,
                        task_id=task_id,
                        observation_ref=f"Observation/{observation['id']}",
                        subject=item.subject,
                        device_id=device["id"],
                    )
                )
            uncertain = results.is_uncertain(spec, probs)
            high = results.is_high_risk(spec, probs, decided, screen)
            top = spec.display[int(np.argmax(probs))]
            business = f"uncertain ({top}): physician review required" if uncertain else top
            if screen is not None:
                business = f"{business}; {screen.summary()}"
            self._commit(
                item.job, item.task, [device, observation, *extra], business, high, uncertain
            )

    def _assess(self, job: queue.Job, task: dict, spec: Formula) -> None:
        """A formula: its result from the record as it is now (no batching, no reuse)."""
        done = spec.assess(self.repo, task, job.task_id)
        self._commit(job, task, done.resources, done.business, done.high_risk, False)

    def _commit(
        self,
        job: queue.Job,
        task: dict,
        resources_: list[dict],
        business: str,
        high_risk: bool,
        uncertain: bool,
    ) -> None:
        """Write the results, complete the Task and finish the job — or none of it."""

        def run(u: Unit) -> tuple[dict, list[str]]:
            refs = []
            for body in resources_:
                u.update(body["resourceType"], body["id"], body)
                refs.append(f"{body['resourceType']}/{body['id']}")
            outputs = [("result", refs[1])] + [
                ("explanation", r) for r in refs[2:] if r.startswith("Media/")
            ]
            done = tasks.completed(task, outputs, business)
            u.update("Task", job.task_id, done)
            if not queue.finish(u, job, self.worker):
                raise LostLease(job.id)
            return done, [refs[1]]  # the Observation or RiskAssessment

        try:
            completed, results_ = self.repo.run(run)
        except LostLease:
            log.warning(
                "job %s: lease lost to another worker; its results were not written", job.id
            )
            return
        self._after(completed, results_, high_risk, uncertain)

    def _after(
        self, completed: dict, results_: list[str], high_risk: bool, uncertain: bool
    ) -> None:
        """Run the result hooks of a committed result."""
        for hook in self.result_hooks:
            try:
                hook(completed, results_, high_risk, uncertain)
            except Exception:  # the result stands; a hook's failure is logged, not undone
                log.exception("result hook failed for Task/%s", completed.get("id"))

    def _fail(self, job: queue.Job, task: dict, reason: str, *, retry: bool) -> None:
        def run(u: Unit) -> None:
            state = queue.fail(u, job, self.worker, reason, retry=retry, backoff=self.backoff)
            if state == queue.FAILED:
                current = u.read("Task", job.task_id).content
                assert current is not None
                u.update("Task", job.task_id, tasks.failed(current, reason))

        self.repo.run(run)


def pixel_spacing(ds) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
    """(row, column) Pixel Spacing (0028,0030) in mm, when present and positive."""
    try:
        row, column = (float(v) for v in ds.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        return None
    return (row, column) if row > 0 and column > 0 else None


class LostLease(Exception):
    """Another worker took the job over (this one's lease expired)."""
