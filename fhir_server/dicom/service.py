"""Builds the DICOM side of a running Hearth from its settings: instance store, ingest service
and (optionally) the Storage SCP; ``hearth serve``'s lifespan and ``hearth dicom`` both use it."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.runtime.settings import Settings
from resources.storage.instances import InstanceStore
from resources.storage.repository import Repository

from . import qr, scp
from .ingest import Ingest


@dataclass
class DicomService:
    store: InstanceStore
    ingest: Ingest
    listener: scp.Listener | None

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.ingest.stop()


def start(
    repo: Repository, settings: Settings, *, listen: bool, replay: bool = True
) -> DicomService:
    store = settings.instance_store(repo.engine)
    ingest = Ingest(
        repo,
        store,
        dicomweb_base=settings.dicomweb_base,
        quiet_seconds=settings.dicom_quiet_seconds,
        complete_on_release=settings.dicom_complete_on_release,
    )
    ingest.start(replay=replay)  # the pending journal (docs/dicom.md "Data safety")
    listener = None
    if listen:
        try:
            listener = start_listener(ingest, settings)
        except OSError:
            ingest.stop()
            raise
    return DicomService(store, ingest, listener)


def start_listener(ingest: Ingest, settings: Settings) -> scp.Listener:
    """The SCP on ``HEARTH_DICOM_PORT``, storing through ``ingest``; with the Query/Retrieve
    SCP when ``HEARTH_DICOM_QR_AES`` names who may use it."""
    query_retrieve = None
    if settings.dicom_qr_callers:
        query_retrieve = qr.QueryRetrieve(
            ingest.repo,
            ingest.store,
            qr.parse_destinations(settings.dicom_destinations),
            callers=settings.dicom_qr_callers,
        )
    try:
        return scp.start(
            ingest,
            host=settings.host,
            port=settings.dicom_port,
            ae_title=settings.dicom_ae_title,
            allowed_callers=settings.dicom_callers,
            limits=scp.Limits(
                max_associations=settings.dicom_max_associations,
                acse_timeout=settings.dicom_acse_timeout,
                dimse_timeout=settings.dicom_dimse_timeout,
                network_timeout=settings.dicom_network_timeout,
            ),
            qr=query_retrieve,
        )
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen for DICOM on {settings.host}:{settings.dicom_port} "
            f"({exc.strerror}); set HEARTH_DICOM_PORT, or HEARTH_DICOM_ENABLED=false",
        ) from exc
