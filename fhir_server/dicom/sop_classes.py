"""The storage SOP classes and transfer syntaxes Hearth accepts (PS3.4 Annex B.5, PS3.5 §10)."""

from __future__ import annotations

import re

from pydicom import uid
from pydicom._uid_dict import UID_dictionary
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import _STORAGE_CLASSES, register_uid


def _retired_storage() -> tuple[str, ...]:
    """The retired composite storage SOP classes of PS3.4 (pydicom's UID dictionary: Ultrasound
    Image Storage 1.2.840.10008.5.1.4.1.1.6, the "Trial" SR classes, standalone curves and
    overlays...): retired from the standard, still sent by modalities in service. Registered with
    pynetdicom's Storage Service Class (``register_uid``), which otherwise has no handler for
    them and aborts the association on their C-STORE."""
    out = []
    for uid_, (name, kind, _, retired, keyword) in UID_dictionary.items():
        if kind != "SOP Class" or retired != "Retired":
            continue
        if not re.search(r"Storage( - Trial)?$", name):
            continue
        if name.startswith(("Stored Print", "Hardcopy")):  # print management, no study
            continue
        if uid_ not in _STORAGE_CLASSES.values():
            register_uid(uid_, keyword, StorageServiceClass)
        out.append(uid_)
    return tuple(sorted(out))


# Every storage SOP class pynetdicom knows (its Storage Service Class registry, PS3.4 Annex B.5)
# and the retired ones above: one declaration, used by the Storage SCP's presentation contexts,
# by C-STORE / STOW-RS acceptance, and by the C-GET SCP's role negotiation.
STORAGE: tuple[str, ...] = tuple(sorted(set(_STORAGE_CLASSES.values()) | set(_retired_storage())))
STORAGE_UIDS = frozenset(STORAGE)

# In order of preference: pynetdicom, as acceptor, takes the first of these that a presentation
# context proposes (not the proposer's first). Explicit VR Little Endian leads, as dcmtk's storescp
# prefers: it keeps every VR, it is what DICOMweb serves by default, and a C-GET requester that
# proposes it gets a stored Explicit VR instance sent from its file without decoding.
TRANSFER_SYNTAXES = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
)
