"""Which transfer syntax a WADO-RS instance is sent in, and the transcoding to it (PS3.18
§8.7.3.5.2, §8.7.3.3.2): the same instance, whatever the syntax.

* The request names the syntaxes it accepts in the ``transfer-syntax`` parameters of its
  ``application/dicom`` media types (one Accept may carry several, ``*`` meaning "as stored");
  an ``application/dicom`` without the parameter means Explicit VR Little Endian, the default
  of PS3.18 Table 8.7.3-2.
* When the stored syntax is among those accepted, the stored file is sent as it is (no decode,
  byte for byte).
* Otherwise the instance is transcoded with pydicom: decompressed (``generate_instance_uid=False``:
  pydicom would otherwise give the copy a new SOP Instance UID), byte-swapped out of big endian,
  inflated, and re-encoded in the asked syntax — uncompressed ones always, compressed ones where
  pydicom has an encoder (RLE Lossless, JPEG 2000, JPEG-LS with its plugin). The SOP Instance,
  Series and Study UIDs never change.
* Nothing Hearth can produce is accepted: ``None`` (the caller answers 406).
"""

from __future__ import annotations

import io
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

ANY = "*"
DEFAULT = str(ExplicitVRLittleEndian)
UNCOMPRESSED = frozenset(
    str(u)
    for u in (
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    )
)


class CannotTranscode(Exception):
    """The instance cannot be sent in the asked syntax (no decoder or encoder for it)."""


def accepted_syntaxes(accept: str) -> list[str]:
    """The transfer syntaxes an Accept header allows for ``application/dicom``, in its order
    (``*`` included as such); [DEFAULT] when none is named or the header is absent."""
    out: list[str] = []
    for item in accept.split(","):
        if "application/dicom" not in item or "application/dicom+" in item:
            continue
        named = False
        for param in item.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "transfer-syntax":
                out.append(value.strip().strip('"'))
                named = True
        if not named:
            out.append(DEFAULT)
    return out or [DEFAULT]


def can_encode(syntax: str) -> bool:
    """True when pydicom can write pixel data in ``syntax`` here (an encoder is installed).
    Explicit VR Big Endian (retired, PS3.5 A.3) is sent only as stored, never produced."""
    if syntax == str(ExplicitVRBigEndian):
        return False
    if syntax in UNCOMPRESSED:
        return True
    try:
        from pydicom.pixels import get_encoder

        return bool(get_encoder(syntax).is_available)
    except (ValueError, NotImplementedError, KeyError):
        return False


def choose(accepted: list[str], stored: str) -> str | None:
    """The syntax to send: the stored one when accepted (or ``*``), else the first accepted
    one Hearth can produce, else None."""
    if ANY in accepted or stored in accepted:
        return stored
    for syntax in accepted:
        if can_encode(syntax):
            return syntax
    return None


def stored_syntax(source: BinaryIO) -> str:
    """The transfer syntax of the Part 10 file open in ``source`` (read from where it is)."""
    ds = dcmread(source, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.file_meta.TransferSyntaxUID)


def transcode(source: BinaryIO, target: str) -> bytes:
    """The stored instance open in ``source`` re-encoded in ``target``, same UIDs and same
    data."""
    ds: Dataset = dcmread(source)
    stored = ds.file_meta.TransferSyntaxUID
    try:
        if not stored.is_little_endian:
            ds = _little_endian(ds)
        elif "PixelData" in ds and stored.is_compressed:
            # decoded to native little-endian pixels; compressed YCbCr comes out as RGB
            ds.decompress(generate_instance_uid=False)
        wanted = UID(target)
        if wanted.is_compressed:
            if "PixelData" not in ds:
                raise CannotTranscode("an instance without pixel data has no compressed form")
            ds.compress(wanted, generate_instance_uid=False)
            return _write(ds, wanted)
        if not wanted.is_little_endian:
            raise CannotTranscode("Explicit VR Big Endian (retired) is sent only as stored")
        return _write(ds, wanted)
    except CannotTranscode:
        raise
    except Exception as exc:  # no decoder / encoder, or pixel data it cannot take
        raise CannotTranscode(f"{stored} cannot be converted to {target}: {exc}") from exc


def _little_endian(ds: Dataset) -> Dataset:
    """A big-endian (retired Explicit VR Big Endian) instance as a little-endian one: the
    elements copied into a fresh data set (pydicom refuses to write a read data set in the
    other byte order), Pixel Data decoded and laid out again as native little-endian samples."""
    out = Dataset()
    out.file_meta = ds.file_meta
    for elem in ds:
        out.add(elem)
    if "PixelData" in ds:
        arr = ds.pixel_array
        out.PixelData = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        out["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
        if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
            out.PlanarConfiguration = 0  # pixel_array interleaves the samples
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return out


def _write(ds: Dataset, syntax: UID) -> bytes:
    out = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
