"""The DICOM Storage SCP (pynetdicom): Verification (C-ECHO, PS3.4 Annex A) and the Storage
Service Class (C-STORE, PS3.4 Annex B) for the SOP classes in ``sop_classes``.

Every C-STORE is handed to the ingest service. A refused instance answers its DICOM failure
status (PS3.4 B.2.3: 0xA700 out of resources, 0xA900 data set does not match SOP class, 0xC000
cannot understand, 0x0122 SOP class not supported); an unexpected exception in the handler is
logged and answered 0xC000 — the association always stays up. Releasing the association tells
the ingest service the sender is done with its studies.

Starvation (docs/dicom.md "Connections and timeouts"): pynetdicom counts a connection that has
not associated yet against ``maximum_associations`` and keeps its thread until the ACSE timeout,
even after the peer has closed it. So every limit is set explicitly: the ACSE timeout bounds a
connection that never sends its A-ASSOCIATE-RQ (and the wait after such a peer has gone), the
network timeout an association that goes silent or stalls mid-PDU, the DIMSE timeout a
half-finished operation, and ``maximum_associations`` the threads all of them may hold.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import EventHandlerType

# pynetdicom makes its SOP class names at import time (``globals()[name] = ...`` in
# sop_class._generate_sop_classes), so they are invisible to a type checker.
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

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


def _handle_store(event, ingest: Ingest) -> int | Dataset:  # type: ignore[no-untyped-def]
    calling = event.assoc.requestor.ae_title
    try:
        data = event.encoded_dataset(include_meta=True)
        received = ingest.receive(data, association=event.assoc)
        log.debug("stored %s from %s", received.sop_uid, calling)
        return 0x0000
    except Rejected as exc:
        log.warning("C-STORE %s from %s refused (0x%04X)", exc.sop_uid or "-", calling, exc.status)
        status = Dataset()
        status.Status = exc.status
        # Error Comment (0000,0902), PS3.7 C.4.2.1.4: LO, at most 64 characters, no backslash
        comment = "".join(
            c if c.isascii() and c.isprintable() and c != "\\" else " " for c in exc.reason
        )
        status.ErrorComment = comment[:64]
        return status
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


@dataclass(frozen=True)
class Limits:
    """How many associations, and how long each phase may take (seconds)."""

    max_associations: int = 32
    acse_timeout: float = 10.0  # connect -> A-ASSOCIATE-RQ; A-RELEASE
    dimse_timeout: float = 60.0  # between the DIMSE messages of one operation
    network_timeout: float = 60.0  # an association (or a PDU read) with nothing arriving


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server with the network timeout on every accepted connection:
    pynetdicom sets it on the listening socket only, so a peer that sends part of a PDU and
    stops would hold its thread in ``recv`` for ever."""

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, address = super().get_request()
        sock.settimeout(self.ae.network_timeout)
        return sock, address


def _handle_conn_close(event) -> None:  # type: ignore[no-untyped-def]
    """A connection closed before it sent its A-ASSOCIATE-RQ (state Sta2, PS3.8 9.2: AA-5 or,
    for an expired ARTIM timer, AA-2): pynetdicom's acceptor thread would still wait out the
    ACSE timeout for the request and keep counting against ``maximum_associations``. Waking it
    with the "nothing arrived" value it gets on a timeout ends it now."""
    dul = event.assoc.dul
    if event.assoc.is_acceptor and dul.state_machine.current_state == "Sta2":
        dul.to_user_queue.put(None)


def build_ae(
    ae_title: str, allowed_callers: list[str] | None = None, limits: Limits | None = None
) -> AE:
    """The Application Entity: presentation contexts for Verification and every storage SOP
    class with the common transfer syntaxes; optional calling-AE allow-list (rejects others);
    association limit and timeouts."""
    limits = limits or Limits()
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = 0  # no limit on what peers may send per P-DATA PDU
    ae.maximum_associations = limits.max_associations
    ae.acse_timeout = limits.acse_timeout
    ae.dimse_timeout = limits.dimse_timeout
    ae.network_timeout = limits.network_timeout
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
    limits: Limits | None = None,
) -> Listener:
    """Start the SCP in background threads (one per association)."""
    ae = build_ae(ae_title, allowed_callers, limits)
    handlers: list[EventHandlerType] = [
        (evt.EVT_C_STORE, _handle_store, [ingest]),
        (evt.EVT_RELEASED, _handle_released, [ingest]),
        (evt.EVT_ABORTED, _handle_aborted, [ingest]),
        (evt.EVT_CONN_CLOSE, _handle_conn_close),
    ]
    # AE.start_server(block=False), with the server class above
    server = ae.make_server((host, port), evt_handlers=handlers, server_class=_Server)
    threading.Thread(target=server.serve_forever, name=f"dicom-scp-{port}", daemon=True).start()
    ae._servers.append(server)  # AE.shutdown() stops what the AE started
    log.info("DICOM Storage SCP %s listening on %s:%d", ae_title, host, port)
    return Listener(server, port, ae_title)
