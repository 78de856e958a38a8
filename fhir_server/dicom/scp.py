"""The DICOM SCP (pynetdicom): Verification (C-ECHO, PS3.4 Annex A), the Storage Service Class
(C-STORE, PS3.4 Annex B) for the SOP classes in ``sop_classes``, and Query/Retrieve (C-FIND,
C-MOVE, C-GET, PS3.4 Annex C; ``qr``). The services are one table, ``SERVICES``: each row names
its SOP classes, transfer syntaxes, role negotiation and the handler of its DIMSE event;
``build_ae`` and ``start`` read nothing else.

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
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.events import EventHandlerType

# pynetdicom makes its SOP class names at import time (``globals()[name] = ...`` in
# sop_class._generate_sop_classes), so they are invisible to a type checker.
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from . import qr as qr_service
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


@dataclass(frozen=True)
class Hub:
    """What the handlers work with: the ingest service, and the Q/R engine (None: no Q/R)."""

    ingest: Ingest
    qr: qr_service.QueryRetrieve | None = None


def _handle_store(event, hub: Hub) -> int | Dataset:  # type: ignore[no-untyped-def]
    """One C-STORE. pynetdicom has written the data set to a temporary Part 10 file as its
    fragments arrived (``STORE_RECV_CHUNKED_DATASET``, set by ``start``): the ingest reads its
    header and copies it to the store a megabyte at a time, and the file is removed here."""
    ingest = hub.ingest
    calling = event.assoc.requestor.ae_title
    try:
        path = _received_path(event)
        try:
            data = path if path is not None else event.encoded_dataset(include_meta=True)
            received = ingest.receive(data, association=event.assoc)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
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


def _received_path(event) -> Path | None:  # type: ignore[no-untyped-def]
    """The temporary file pynetdicom wrote the C-STORE data set to (None: it is in memory)."""
    try:
        return Path(event.dataset_path)
    except (AttributeError, TypeError):
        return None


def _handle_released(event, hub: Hub) -> None:  # type: ignore[no-untyped-def]
    try:
        hub.ingest.association_released(event.assoc)
    except Exception:
        log.exception("association release handling failed")


def _handle_aborted(event, hub: Hub) -> None:  # type: ignore[no-untyped-def]
    try:
        hub.ingest.association_aborted(event.assoc)
    except Exception:
        log.exception("association abort handling failed")


def _model(event) -> str:  # type: ignore[no-untyped-def]
    sop = str(event.request.AffectedSOPClassUID)
    return (
        qr_service.PATIENT_ROOT
        if sop.startswith("1.2.840.10008.5.1.4.1.2.1.")
        else (qr_service.STUDY_ROOT)
    )


def _failure(status: int, reason: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = "".join(
        c if c.isascii() and c.isprintable() and c != "\\" else " " for c in reason
    )[:64]
    return ds


def _handle_find(event, hub: Hub):  # type: ignore[no-untyped-def]
    """C-FIND (PS3.4 C.4.1): one pending response per match, cancellable."""
    if hub.qr is None or not hub.qr.allows(event.assoc.requestor.ae_title):
        yield _failure(qr_service.NOT_AUTHORIZED, "this AE may not query"), None
        return
    try:
        found = hub.qr.find(event.identifier, _model(event))
    except qr_service.QueryError as exc:
        yield _failure(exc.status, exc.reason), None
        return
    except Exception:
        log.exception("C-FIND from %s failed", event.assoc.requestor.ae_title)
        yield _failure(qr_service.UNABLE_TO_PROCESS, "the query could not be processed"), None
        return
    for rec in found:
        if event.is_cancelled:
            yield qr_service.CANCELLED, None
            return
        yield qr_service.PENDING, rec
    yield qr_service.SUCCESS, None


class _FromFile(Dataset):
    """What a C-GET / C-MOVE handler yields for an instance sent as stored: its SOP class and
    instance UIDs (pynetdicom logs and counts by them) and the path of its file. The
    association's ``send_c_store`` (wrapped by ``_send_from_files``) hands pynetdicom the path,
    which then sends the file in PDU-sized chunks (``STORE_SEND_CHUNKED_DATASET``) instead of
    decoding and re-encoding the whole data set in memory."""

    def __init__(self, sop_class: str, sop_uid: str, path: Path, temporary: bool) -> None:
        super().__init__()
        self.SOPClassUID = sop_class
        self.SOPInstanceUID = sop_uid
        self.hearth_file = path
        self.hearth_temporary = temporary  # a copy made for this send: removed once sent


def _send_from_files(assoc) -> None:  # type: ignore[no-untyped-def]
    """Make ``assoc.send_c_store`` send a ``_FromFile`` from its file (once per association)."""
    if assoc is None or getattr(assoc.send_c_store, "hearth_from_files", False):
        return
    send = assoc.send_c_store

    def send_c_store(dataset, *args, **kwargs):  # type: ignore[no-untyped-def]
        path = getattr(dataset, "hearth_file", None)
        if path is None:
            return send(dataset, *args, **kwargs)
        try:
            return send(path, *args, **kwargs)
        finally:
            if dataset.hearth_temporary:
                path.unlink(missing_ok=True)

    send_c_store.hearth_from_files = True  # type: ignore[attr-defined]
    assoc.send_c_store = _responses_kept(assoc, send_c_store)
    _bounded_queue(assoc)
    _low_latency(assoc)


def _responses_kept(assoc, send_c_store):  # type: ignore[no-untyped-def]
    """On a C-MOVE sub-association (Hearth the requestor, its reactor in a thread of its own):
    while a C-STORE waits for its response, the reactor's non-blocking look at the message
    queue finds nothing, so it cannot take the response. pynetdicom pauses the reactor for
    each C-STORE by a flag the reactor may not have lowered yet after the previous one; once
    the response came within microseconds (``_low_latency``), the reactor sometimes took it
    ("Received unexpected C-STORE service message") and the C-STORE waited out the DIMSE
    timeout, failing the rest of the move. (C-GET sends from the reactor thread itself.)"""
    if not getattr(assoc, "is_requestor", False):
        return send_c_store
    dimse = assoc.dimse
    get_msg = dimse.get_msg
    lock = threading.Lock()  # a look at the queue is over before a C-STORE is sent
    sending = [False]

    def get_msg_kept(block: bool = False):  # type: ignore[no-untyped-def]
        if block:
            return get_msg(block)
        with lock:
            return (None, None) if sending[0] else get_msg(False)

    dimse.get_msg = get_msg_kept

    def send_kept(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            sending[0] = True
        try:
            return send_c_store(*args, **kwargs)
        finally:
            with lock:
                sending[0] = False

    send_kept.hearth_from_files = True  # type: ignore[attr-defined]
    return send_kept


SEND_QUEUE = 16  # P-DATA PDUs waiting for the socket, at most, on a retrieve's association


def _bounded_queue(assoc) -> None:  # type: ignore[no-untyped-def]
    """Back-pressure for the sub-operations' C-STOREs: pynetdicom queues every P-DATA PDU of a
    message for its network thread without a bound, so a file read faster than the peer takes
    it would pile up in memory (half a gigabyte of a 1 GB object, measured). Each PDU waits
    here while ``SEND_QUEUE`` are already queued, as long as the association lasts, woken as
    soon as the network thread takes one (the queue's own ``not_full`` condition, which its
    ``get`` notifies)."""
    dul = assoc.dul
    put = dul.send_pdu
    queued = dul.to_provider_queue

    def send_pdu(primitive) -> None:  # type: ignore[no-untyped-def]
        with queued.not_full:
            while len(queued.queue) >= SEND_QUEUE and assoc.is_established and dul.is_alive():
                queued.not_full.wait(0.05)
        put(primitive)

    dul.send_pdu = send_pdu


def _low_latency(assoc) -> None:  # type: ignore[no-untyped-def]
    """No Nagle, no delayed ACK on the connection a retrieve's C-STOREs go over. Each C-STORE
    waits for its response before the next; with Nagle's algorithm the last, partial PDU of a
    data set waited for the peer's delayed ACK, and the peer's response (dcmtk writes a PDU's
    header and body apart) waited for Hearth's: about 40 ms per instance on Linux, whatever
    its size (measured: 19 → 130-157 instances/s into dcmtk storescp, docs/dicom.md).
    TCP_NODELAY once; TCP_QUICKACK (Linux: the kernel clears it by itself) before each read."""
    wrapper: Any = getattr(assoc.dul, "socket", None)
    sock = getattr(wrapper, "socket", None)
    if wrapper is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is None:
        return
    recv = wrapper.recv

    def recv_acking(nr_bytes: int) -> bytearray:
        try:
            wrapper.socket.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except (OSError, AttributeError):
            pass
        return recv(nr_bytes)

    wrapper.recv = recv_acking


def _sub_operations(event, hub: Hub, association):  # type: ignore[no-untyped-def]
    """The C-STORE sub-operations of a C-MOVE / C-GET on ``association()`` (found when first
    needed): the count, then one data set each (a failed read is counted failed, the others
    still go). An instance whose stored syntax the peer accepted for its SOP class is sent from
    its file, chunk by chunk (``_FromFile``); one that must be transcoded is decoded in memory."""
    assert hub.qr is not None
    qr = hub.qr
    try:
        uids = qr.instances(event.identifier, _model(event))
    except qr_service.QueryError as exc:
        yield 0
        yield _failure(exc.status, exc.reason), None
        return
    yield len(uids)
    by_class: dict[str, list[str]] | None = None
    for uid in uids:
        if event.is_cancelled:
            yield qr_service.CANCELLED, None
            return
        try:
            if by_class is None:
                assoc = association()
                _send_from_files(assoc)
                by_class = _accepted_syntaxes(assoc)
            ds = _to_send(qr, uid, by_class)
        except Exception:
            log.exception("instance %s could not be read for a retrieve", uid)
            yield qr_service.PENDING, None  # counted as a failed sub-operation
            continue
        yield qr_service.PENDING, ds


def _to_send(qr: qr_service.QueryRetrieve, uid: str, by_class: dict[str, list[str]]) -> Dataset:
    """The instance as a ``_FromFile`` when the peer accepted its stored syntax for its SOP
    class (the stored file itself, or a temporary copy of a database blob), else decoded and
    transcoded to a syntax the peer accepted (``QueryRetrieve.dataset``, in memory)."""
    path = qr.store.local_path(uid)
    temporary = path is None
    if path is None:
        path = _copy(qr, uid)
    try:
        head = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        sop_class = str(head.SOPClassUID)
        accepted = by_class.get(sop_class, [])
        if str(head.file_meta.TransferSyntaxUID) in accepted:
            sent, temporary = _FromFile(sop_class, uid, path, temporary), False
            return sent
        return qr.dataset(uid, accepted)
    finally:
        if temporary:
            path.unlink(missing_ok=True)


def _copy(qr: qr_service.QueryRetrieve, uid: str) -> Path:
    """A temporary copy of an instance whose blob is not a local file (the database blob
    store), made a megabyte at a time, to send from."""
    with (
        qr.store.open(uid) as f,
        tempfile.NamedTemporaryFile(prefix="hearth-send-", suffix=".dcm", delete=False) as out,
    ):
        shutil.copyfileobj(f, out, 1 << 20)
    return Path(out.name)


def _accepted_syntaxes(assoc) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """SOP class -> the transfer syntaxes the association accepted with Hearth as SCU."""
    by_class: dict[str, list[str]] = {}
    for cx in assoc.accepted_contexts if assoc is not None else []:
        if cx.as_scu:
            by_class.setdefault(str(cx.abstract_syntax), []).append(str(cx.transfer_syntax[0]))
    return by_class


def _move_association(event, known: qr_service.Destination):  # type: ignore[no-untyped-def]
    """The sub-association pynetdicom opened to the C-MOVE destination (it does not hand it to
    the handler): the newest established requestor association to that AE, host and port."""
    for assoc in reversed(list(event.assoc.ae.active_associations)):
        if (
            assoc.is_requestor
            and assoc.is_established
            and assoc.acceptor.ae_title == known.ae_title
            and assoc.acceptor.address == known.host
            and assoc.acceptor.port == known.port
        ):
            return assoc
    return None


def _handle_move(event, hub: Hub):  # type: ignore[no-untyped-def]
    """C-MOVE (PS3.4 C.4.2): to a destination of ``HEARTH_DICOM_DESTINATIONS`` only."""
    if hub.qr is None or not hub.qr.allows(event.assoc.requestor.ae_title):
        yield None, None
        return
    destination = str(event.move_destination).strip()
    known = hub.qr.destinations.get(destination)
    if known is None:
        log.warning("C-MOVE to unknown destination %r refused", destination)
        yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
        return
    try:
        uids = hub.qr.instances(event.identifier, _model(event))
        contexts = hub.qr.contexts(uids)
    except qr_service.QueryError:
        uids, contexts = [], []
    kwargs = (
        {"ae_title": known.ae_title, "contexts": contexts}
        if contexts
        else {"ae_title": known.ae_title}
    )
    yield known.host, known.port, kwargs
    # each instance in a syntax the destination accepted: as stored, else transcoded
    yield from _sub_operations(event, hub, lambda: _move_association(event, known))


def _handle_get(event, hub: Hub):  # type: ignore[no-untyped-def]
    """C-GET (PS3.4 C.4.3): C-STOREs on the requesting association, in a transfer syntax the
    requester accepted for the SOP class (transcoded when the stored one is not)."""
    if hub.qr is None or not hub.qr.allows(event.assoc.requestor.ae_title):
        yield 0
        yield _failure(qr_service.NOT_AUTHORIZED, "this AE may not retrieve"), None
        return
    yield from _sub_operations(event, hub, lambda: event.assoc)


@dataclass(frozen=True)
class ScpService:
    """One DIMSE service Hearth provides as SCP."""

    name: str
    sop_classes: tuple[str, ...]
    event: object | None  # the pynetdicom intervention event handled (None: pynetdicom's own)
    handler: Callable | None
    syntaxes: tuple[str, ...] = tuple(str(t) for t in TRANSFER_SYNTAXES)
    # accept SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET requester acts as Storage SCP
    role_selection: bool = False
    needs_qr: bool = False


UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
SERVICES: tuple[ScpService, ...] = (
    ScpService("Verification", (str(Verification),), None, None, UNCOMPRESSED),
    ScpService("Storage", STORAGE, evt.EVT_C_STORE, _handle_store, role_selection=True),
    ScpService(
        "Query/Retrieve C-FIND",
        (
            str(PatientRootQueryRetrieveInformationModelFind),
            str(StudyRootQueryRetrieveInformationModelFind),
        ),
        evt.EVT_C_FIND,
        _handle_find,
        UNCOMPRESSED,
        needs_qr=True,
    ),
    ScpService(
        "Query/Retrieve C-MOVE",
        (
            str(PatientRootQueryRetrieveInformationModelMove),
            str(StudyRootQueryRetrieveInformationModelMove),
        ),
        evt.EVT_C_MOVE,
        _handle_move,
        UNCOMPRESSED,
        needs_qr=True,
    ),
    ScpService(
        "Query/Retrieve C-GET",
        (
            str(PatientRootQueryRetrieveInformationModelGet),
            str(StudyRootQueryRetrieveInformationModelGet),
        ),
        evt.EVT_C_GET,
        _handle_get,
        UNCOMPRESSED,
        needs_qr=True,
    ),
)


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
    ae_title: str,
    allowed_callers: list[str] | None = None,
    limits: Limits | None = None,
    *,
    query_retrieve: bool = False,
) -> AE:
    """The Application Entity: the presentation contexts of ``SERVICES`` (the Q/R ones when
    ``query_retrieve``); optional calling-AE allow-list (rejects others); association limit
    and timeouts."""
    limits = limits or Limits()
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = 0  # no limit on what peers may send per P-DATA PDU
    ae.maximum_associations = limits.max_associations
    ae.acse_timeout = limits.acse_timeout
    ae.dimse_timeout = limits.dimse_timeout
    ae.network_timeout = limits.network_timeout
    for service in SERVICES:
        if service.needs_qr and not query_retrieve:
            continue
        roles = {"scu_role": True, "scp_role": True} if service.role_selection else {}
        for sop in service.sop_classes:
            ae.add_supported_context(sop, list(service.syntaxes), **roles)
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
    qr: qr_service.QueryRetrieve | None = None,
) -> Listener:
    """Start the SCP in background threads (one per association); with ``qr``, also the
    Query/Retrieve SCP."""
    # Large objects (docs/dicom.md "Very large objects"): received C-STORE data sets go to a
    # temporary file fragment by fragment instead of a growing buffer, and retrieved instances
    # are sent from their stored file in PDU-sized chunks (``_sub_operations``). Both are
    # process-wide pynetdicom switches; the second only affects sends given a file path.
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = build_ae(ae_title, allowed_callers, limits, query_retrieve=qr is not None)
    hub = Hub(ingest, qr)
    handlers: list[EventHandlerType] = [
        (service.event, service.handler, [hub])  # type: ignore[misc]
        for service in SERVICES
        if service.event is not None and (qr is not None or not service.needs_qr)
    ]
    handlers += [
        (evt.EVT_RELEASED, _handle_released, [hub]),
        (evt.EVT_ABORTED, _handle_aborted, [hub]),
        (evt.EVT_CONN_CLOSE, _handle_conn_close),
    ]
    # AE.start_server(block=False), with the server class above
    server = ae.make_server((host, port), evt_handlers=handlers, server_class=_Server)
    threading.Thread(target=server.serve_forever, name=f"dicom-scp-{port}", daemon=True).start()
    ae._servers.append(server)  # AE.shutdown() stops what the AE started
    log.info("DICOM Storage SCP %s listening on %s:%d", ae_title, host, port)
    return Listener(server, port, ae_title)
