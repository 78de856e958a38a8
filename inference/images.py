"""Select and decode a model's input: photos (JPEG/PNG) and DICOM instances to PIL images, with
the checks that refuse what a model must not be asked about.

DICOM pixel handling follows PS3.3 C.7.6.3.1 and C.11: the Modality LUT / Rescale (0028,1052-3)
and the VOI LUT or Window Center/Width (0028,1050-1) are applied, MONOCHROME1 (0028,0004) is
inverted so that bone is bright, and the result is scaled to 8 bits.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

# Modalities a chest radiograph comes from (PS3.3 C.7.3.1.1.1) and the body part that must go with
# it: Body Part Examined (0018,0015) "CHEST", or the series bodySite SNOMED 51185008 (thorax).
CHEST_MODALITIES = frozenset({"CR", "DX"})
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX"})
THORAX_SNOMED = "51185008"
# Photographic modalities (PS3.3 C.7.3.1.1.1): external-camera photography, dermoscopy.
PHOTO_MODALITIES = frozenset({"XC", "DMS"})


def is_chest_series(series: dict) -> bool:
    """An ImagingStudy series the pneumonia model takes: CR or DX, and a chest body site (or none
    recorded)."""
    if series.get("modality", {}).get("code") not in CHEST_MODALITIES:
        return False
    site = series.get("bodySite", {})
    codes = {str(site.get("code", "")).upper(), str(site.get("display", "")).upper()}
    return not site or THORAX_SNOMED in codes or bool(codes & CHEST_BODY_PARTS)


def has_chest_modality(media: dict) -> bool:
    """A Media whose ``modality`` is CR or DX (any coding system): a radiograph, not a photo."""
    modality = {c.get("code") for c in media.get("modality", {}).get("coding", [])}
    return bool(modality & CHEST_MODALITIES)


class BadInput(ValueError):
    """The input cannot be analysed; the message is the Task's statusReason."""


def open_photo(data: bytes) -> Image.Image:
    """A JPEG/PNG photo as RGB; corrupt or empty bytes raise :class:`BadInput`."""
    if not data:
        raise BadInput("the image is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"the image cannot be decoded: {exc}") from exc


def is_dicom(data: bytes) -> bool:
    """PS3.10 file: 128-byte preamble then ``DICM``."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def read_dicom(data: bytes):  # type: ignore[no-untyped-def]
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise BadInput(f"not a readable DICOM file: {exc}") from exc


def dicom_image(ds) -> Image.Image:  # type: ignore[no-untyped-def]
    """The first frame of a DICOM image as an 8-bit PIL image (L for grey, RGB for colour)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        raise BadInput("the DICOM instance has no pixel data (7FE0,0010)")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for unsupported/corrupt encodings
        raise BadInput(f"the DICOM pixel data cannot be decoded: {exc}") from exc
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3:  # colour (RGB after pydicom's YBR conversion)
        return Image.fromarray(_to_uint8(pixels.astype(np.float32), None)).convert("RGB")
    values = apply_modality_lut(pixels, ds)
    has_window = "WindowCenter" in ds or "VOILUTSequence" in ds
    if has_window:
        values = apply_voi_lut(values, ds)
    values = values.astype(np.float32)
    window = None if has_window else tuple(np.percentile(values, (0.5, 99.5)))
    grey = _to_uint8(values, window)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, mode="L")


def _to_uint8(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    low, high = window if window else (float(values.min()), float(values.max()))
    if high <= low:
        raise BadInput("the image has no contrast (all pixels equal)")
    scaled = (np.clip(values, low, high) - low) / (high - low) * 255.0
    return scaled.round().astype(np.uint8)


def check_chest_radiograph(ds) -> None:  # type: ignore[no-untyped-def]
    """Refuse anything but a chest CR/DX instance (the pneumonia model saw nothing else)."""
    modality = str(getattr(ds, "Modality", "") or "")
    body_part = str(getattr(ds, "BodyPartExamined", "") or "").upper()
    if modality not in CHEST_MODALITIES:
        raise BadInput(f"not a chest radiograph: modality {modality or 'missing'} is not CR or DX")
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise BadInput(f"not a chest radiograph: body part examined is {body_part}")
