"""The DICOM Storage SCP (pynetdicom): Verification (C-ECHO, PS3.4 Annex A) and the Storage
Service Class (C-STORE, PS3.4 Annex B) for the SOP classes in ``sop_classes``.

Every C-STORE is handed to the ingest service. A refused instance answers its DICOM failure
status (PS3.4 B.2.3: 0xA700 out of resources, 0xA900 data set does not match SOP class, 0xC000
cannot understand, 0x0122 SOP class not supported); an unexpected exception in the handler is
logged and answered 0xC000 — the association always stays up. Releasing the association tells
the ingest service the sender is done with its studies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from .ingest import Ingest
from .parse import CANNOT_UNDERSTAND, Rejected
from .sop_classes import STORAGE, TRANSFER_SYNTAXES

log = logging.getLogger("hearth.dicom.scp")


@dataclass
class Listener:
    """A running SCP; ``stop()`` closes it."""

    server: object
    port: int
    ae_title: str

    def stop(self) -> None:
        self.server.shutdown()  # type: ignore[attr-defined]


def _handle_store(event, ingest: Ingest) -> int:  # type: ignore[no-untyped-def]
    calling = event.assoc.requestor.ae_title
    try:
        data = event.encoded_dataset(include_meta=True)
        received = ingest.receive(data, association=event.assoc)
        log.debug("stored %s from %s", received.sop_uid, calling)
        return 0x0000
    except Rejected as exc:
        log.warning("C-STORE %s from %s refused (0x%04X)", exc.sop_uid or "-", calling, exc.status)
        return exc.status
    except Exception:
        log.exception("C-STORE from %s failed", calling)
        return CANNOT_UNDERSTAND


def _handle_released(event, ingest: Ingest) -> None:  # type: ignore[no-untyped-def]
    try:
        ingest.association_released(event.assoc)
    except Exception:
        log.exception("association release handling failed")


def _handle_aborted(event, ingest: Ingest) -> None:  # type: ignore[no-untyped-def]
    try:
        ingest.association_aborted(event.assoc)
    except Exception:
        log.exception("association abort handling failed")


def build_ae(ae_title: str, allowed_callers: list[str] | None = None) -> AE:
    """The Application Entity: presentation contexts for Verification and every storage SOP
    class with the common transfer syntaxes; optional calling-AE allow-list (rejects others)."""
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = 0  # no limit on what peers may send per P-DATA PDU
    ae.add_supported_context(Verification)
    for sop in STORAGE:
        ae.add_supported_context(sop, list(TRANSFER_SYNTAXES))
    if allowed_callers:
        ae.require_calling_aet = list(allowed_callers)
    return ae


def start(
    ingest: Ingest,
    *,
    host: str,
    port: int,
    ae_title: str,
    allowed_callers: list[str] | None = None,
) -> Listener:
    """Start the SCP in background threads (one per association)."""
    ae = build_ae(ae_title, allowed_callers)
    handlers = [
        (evt.EVT_C_STORE, _handle_store, [ingest]),
        (evt.EVT_RELEASED, _handle_released, [ingest]),
        (evt.EVT_ABORTED, _handle_aborted, [ingest]),
    ]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    log.info("DICOM Storage SCP %s listening on %s:%d", ae_title, host, port)
    return Listener(server, port, ae_title)
