"""``hearth worker`` and ``hearth ai``: run background work, list the models, predict files.

``hearth ai predict`` is the interface used for independent evaluation: one JSON line per input
with every class probability (and, for a screening model, the "refer" decision), for image files (JPEG, PNG, DICOM) or each row of a MedMNIST-style
``.npz`` (``images``/``labels`` or ``<split>_images``/``<split>_labels``).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

import click


@click.command()
@click.option("--database-url", help="database URL [HEARTH_DATABASE_URL]")
@click.option(
    "--batch-size", type=int, help="AI jobs claimed at once [HEARTH_WORKER_BATCH_SIZE, 16]"
)
@click.option("--once", is_flag=True, help="run what is waiting now, then exit (tests, cron)")
@click.option(
    "--poll", type=float, default=1.0, show_default=True,
    help="seconds between AI polls (on PostgreSQL the fallback: new jobs wake the worker at once)",
)  # fmt: skip
@click.option(
    "--notify/--no-notify", default=True, show_default=True,
    help="on PostgreSQL, LISTEN for new AI jobs instead of only polling",
)  # fmt: skip
@click.option(
    "--interval", type=float, default=30.0, show_default=True,
    help="seconds between workflow passes (reports, reminders, e-mail)",
)  # fmt: skip
@click.option("--no-ai", is_flag=True, help="skip the AI queue (a worker without torch)")
def worker(database_url, batch_size, once, poll, interval, notify, no_ai) -> None:  # type: ignore[no-untyped-def]
    """Run background work: queued AI analyses, subscription notifications, Bulk Data exports
    and imports, report delivery, medication reminders, e-mail."""
    import time

    from fhir_server.auth.keys import key_store
    from fhir_server.cli.settings import settings_from_flags
    from fhir_server.runtime import ai
    from fhir_server.runtime.app import build_context
    from inference.tasks import JOB_KIND
    from resources.jobs import queue
    from workflow import worker as workflow_worker

    settings = settings_from_flags(database_url=database_url, worker_batch_size=batch_size)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx = build_context(settings)
    runner = None
    if not no_ai:
        from inference.worker import Worker
        from inference.worker_name import worker_name

        name = worker_name()
        runner = Worker(
            ctx.repo,
            ai.analyzer(ctx, name),
            batch_size=settings.worker_batch_size,
            lease=timedelta(seconds=settings.worker_lease_seconds),
        )

    def export_pass() -> int:  # Bulk Data exports the API process did not run (docs/bulk-export.md)
        from inference.worker_name import worker_name
        from resources.jobs import bulk_export

        return bulk_export.run_pending(
            ctx.repo,
            settings.blobs(ctx.repo.engine),
            f"worker:{worker_name()}",
            page_size=settings.export_page_size,
            file_limit=settings.export_file_max_resources,
            lease=timedelta(seconds=settings.worker_lease_seconds),
        )

    def import_pass() -> int:  # $import jobs the API process did not run (docs/bulk-import.md)
        from fhir_server.runtime import import_runner
        from inference.worker_name import worker_name

        return import_runner.run_pending(ctx.repo, settings, f"worker:{worker_name()}")

    dicom_exporter = None

    def dicom_ai_pass() -> int:  # AI results to DICOM SR / SC, pushed to the PACS (docs/dicom.md)
        nonlocal dicom_exporter
        from fhir_server.dicom import ai_export

        if not settings.dicom_ai_objects:
            return 0
        if dicom_exporter is None:
            from fhir_server.dicom import service as dicom_service
            from inference.worker_name import worker_name

            dicom = dicom_service.start(ctx.repo, settings, listen=False, replay=False)
            dicom_exporter = ai_export.Exporter(
                ctx.repo, settings, dicom, f"dicom-ai:{worker_name()}"
            )
        return dicom_exporter.run_once()

    def workflow_pass() -> None:
        done = workflow_worker.run_once(
            ctx.repo,
            settings.smtp(),
            signing_material=lambda: settings.report_signing(key_store(ctx.repo.engine, settings)),
            facility_name=settings.facility_name,
            default_timezone=settings.default_timezone,
            portal_url=f"{settings.base_url}/app/portal/",
        )
        click.echo(done.summary())

    from fhir_server.runtime.subscriptions import Deliverer
    from inference.worker_name import worker_name as _name

    deliverer = Deliverer(ctx.repo, settings, f"subscriptions:{_name()}")
    try:
        if once:
            sent = 0
            while (n := deliverer.run_once()) > 0:
                sent += n
            click.echo(f"delivered {sent} subscription job(s)")
            total = 0
            while runner is not None and (n := runner.run_once()) > 0:
                total += n
            if runner is not None:
                click.echo(f"ran {total} job(s)")
            click.echo(f"ran {export_pass()} export(s)")
            click.echo(f"ran {import_pass()} import(s)")
            click.echo(f"exported {dicom_ai_pass()} AI result(s) to DICOM")
            workflow_pass()
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(
            "hearth worker: AI queue, subscriptions, Bulk Data exports and imports, workflow passes "
            "(Ctrl-C stops)"
        )
        # Subscriptions in a thread of their own: a notification never waits for an AI batch.
        notifier = threading.Thread(
            target=deliverer.run_forever, args=(stop,), kwargs={"notify": notify}, daemon=True
        )
        notifier.start()
        wakeup = queue.Wakeup(ctx.repo, [JOB_KIND], notify=notify and runner is not None)
        wakeup.start()  # listening before the first claim: no new job goes unnoticed
        next_pass = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_pass:
                workflow_pass()
                next_pass = time.monotonic() + interval
            busy = 0
            if runner is not None:
                try:
                    busy = runner.run_once()
                except Exception:  # the queue retries what failed
                    logging.getLogger(__name__).exception("AI batch failed")
            try:
                busy += export_pass()
            except Exception:  # the queue retries what failed
                logging.getLogger(__name__).exception("bulk export failed")
            try:
                busy += import_pass()
            except Exception:  # the queue retries what failed
                logging.getLogger(__name__).exception("bulk import failed")
            try:
                busy += dicom_ai_pass()
            except Exception:  # the queue retries what failed
                logging.getLogger(__name__).exception("AI DICOM export failed")
            if not busy:
                timeout = max(0.0, min(poll, next_pass - time.monotonic()))
                logging.getLogger(__name__).debug("idle: waiting up to %.1f s for work", timeout)
                wakeup.wait(timeout, stop)
        wakeup.close()
        notifier.join(timeout=30)
    finally:
        deliverer.close()
        if dicom_exporter is not None:
            dicom_exporter.dicom.stop()
        ctx.repo.engine.dispose()


@click.group()
def ai() -> None:
    """The AI models: list them, predict files."""


@ai.command("models")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per model")
def ai_models(as_json) -> None:  # type: ignore[no-untyped-def]
    """The shipped models (inference/models/) with version, weights sha256 and validation
    metrics; then the published formulas."""
    from inference import registry

    for name, spec in registry.MODELS.items():
        meta = registry.metadata(name)
        val = meta.get("val", {})
        row = {
            "name": name,
            "version": meta["version"],
            "analysis": spec.analysis,
            "labels": list(spec.labels),
            "input": meta["input"],
            "weights_sha256": meta["weights_sha256"],
            "confidence_threshold": spec.confidence_threshold,
            "val_accuracy": val.get("accuracy"),
            "val_balanced_accuracy": val.get("balanced_accuracy"),
            "val_macro_auc": val.get("macro_auc"),
            "val_ece": val.get("ece_after"),
        }
        # The own untouched test split (python -m inference.training.evaluate --split own-test
        # --write), beside validation, with 95 % bootstrap intervals.
        own = spec.evaluation().get("own-test")
        if own:
            figures, ci = own["figures"], own["ci95"]
            for key in ("balanced_accuracy", "macro_auc", "melanoma_sensitivity"):
                row[f"own_test_{key}"] = figures[key]
                row[f"own_test_{key}_ci95"] = ci.get(key)
            for key in ("sensitivity", "specificity"):
                row[f"own_test_screening_{key}"] = figures.get("screening", {}).get(key)
                row[f"own_test_screening_{key}_ci95"] = ci.get(f"screening.{key}")
            row["own_test_n"] = figures["n"]
        if as_json:
            click.echo(json.dumps(row))
        else:
            line = (
                f"{name:10} {row['version']:24} {spec.analysis:28} val: acc {row['val_accuracy']} "
                f"bal-acc {row['val_balanced_accuracy']} AUC {row['val_macro_auc']}"
            )
            if own:
                line += (
                    f"; own test (n = {row['own_test_n']}): bal-acc "
                    f"{row['own_test_balanced_accuracy']} AUC {row['own_test_macro_auc']} "
                    f"melanoma sens. {row['own_test_melanoma_sensitivity']}"
                )
            click.echo(line)
    for name, formula in registry.FORMULAS.items():
        version = formula.version()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "name": name,
                        "version": version,
                        "analysis": formula.analysis,
                        "kind": "formula",
                    }
                )
            )
        else:
            click.echo(f"{name:10} {version:24} {formula.analysis:28} {formula.summary}")


def _npz_rows(path: Path, split: str | None):  # type: ignore[no-untyped-def]
    import numpy as np

    with np.load(path) as data:
        keys = set(data.files)
        if split:
            image_key, label_key = f"{split}_images", f"{split}_labels"
        elif "images" in keys:
            image_key, label_key = "images", "labels"
        else:
            splits = sorted(k[: -len("_images")] for k in keys if k.endswith("_images"))
            if len(splits) != 1:
                raise click.ClickException(
                    f"{path}: choose a split with --split (found {splits or 'no images'})"
                )
            image_key, label_key = f"{splits[0]}_images", f"{splits[0]}_labels"
        if image_key not in keys:
            raise click.ClickException(f"{path}: no {image_key!r} array")
        images = data[image_key]
        labels = data[label_key].reshape(-1) if label_key in keys else None
    return images, labels


@ai.command("predict")
@click.option("--model", "model_name", required=True, help="an image model (hearth ai models)")
@click.option("--npz", type=click.Path(exists=True, path_type=Path), help="MedMNIST-style .npz")
@click.option("--split", help="which <split>_images of the npz (default: the only one)")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
def ai_predict(model_name, npz, split, batch_size, files) -> None:  # type: ignore[no-untyped-def]
    """Predict image FILES (JPEG, PNG, DICOM) or every row of --npz; one JSON line each.

    A file the image-quality gate refuses (blank, striped, dark, blurred, tiny, the wrong kind of
    image) gets {"input", "error": reason} and no prediction, and the exit status is 1; an npz
    row keeps its prediction and adds "refused": reason."""
    from PIL import Image

    from inference import quality
    from inference.images import BadInput, dicom_image, is_dicom, open_photo, read_dicom
    from inference.predict import load_model
    from inference.registry import MODELS
    from inference.results import screening_decision

    if model_name not in MODELS:
        raise click.ClickException(f"unknown model {model_name!r}; known: {sorted(MODELS)}")
    if not files and npz is None:
        raise click.ClickException("give image FILES or --npz")
    model = load_model(model_name)
    spec = model.spec

    def emit(source: dict, probabilities, decided, label=None) -> None:  # type: ignore[no-untyped-def]
        top = max(range(len(spec.labels)), key=lambda i: probabilities[i])
        row = {
            **source,
            "model": spec.name,
            "version": model.version,
            "prediction": spec.labels[int(decided)],
            "probabilities": {
                n: round(float(p), 6) for n, p in zip(spec.labels, probabilities, strict=True)
            },
            "uncertain": bool(probabilities[top] < spec.confidence_threshold),
        }
        screen = screening_decision(spec, model.operating_point, probabilities)
        if screen is not None:  # the "refer" decision (docs/models.md, "Screening")
            row["screening"] = {
                "name": screen.name,
                "probability": round(screen.probability, 6),
                "threshold": screen.threshold,
                "refer": screen.positive,
            }
        if label is not None:
            row["label"] = spec.labels[int(label)]
        click.echo(json.dumps(row))

    failed = 0
    for path in files:
        data = path.read_bytes()
        try:
            image = dicom_image(read_dicom(data)) if is_dicom(data) else open_photo(data)
            quality.check(spec, image)  # the image-quality gate: refused with its reason
        except BadInput as exc:
            click.echo(json.dumps({"input": str(path), "error": str(exc)}))
            failed += 1
            continue
        prediction = model.predict(image)
        emit({"input": str(path)}, prediction.probabilities[0], prediction.labels[0])
    if npz is not None:
        images, labels = _npz_rows(npz, split)
        for start in range(0, len(images), batch_size):
            prediction = model.predict(images[start : start + batch_size])
            for i in range(len(prediction.labels)):
                index = start + i
                # Rows of an npz are already curated and resized: the gate's verdict is given
                # beside the prediction ("refused"), so an evaluation sees both.
                source: dict = {"input": f"{npz}#{index}", "index": index}
                verdict = quality.verdict(spec, Image.fromarray(images[index]))
                if verdict is not None:
                    source["refused"] = verdict.reason
                emit(
                    source,
                    prediction.probabilities[i],
                    prediction.labels[i],
                    None if labels is None else labels[index],
                )
    if failed:
        sys.exit(1)
