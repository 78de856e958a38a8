"""The storage SOP classes and transfer syntaxes Hearth accepts (PS3.4 Annex B.5, PS3.5 §10)."""

from __future__ import annotations

from pydicom import uid

# pydicom's typed UID constants (pynetdicom's sop_class module builds the same ones at import
# time, so type checkers cannot see them; AE.add_supported_context takes either as a UID).
STORAGE = (
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.DigitalXRayImageStorageForProcessing,
    uid.DigitalMammographyXRayImageStorageForPresentation,
    uid.CTImageStorage,
    uid.EnhancedCTImageStorage,
    uid.MRImageStorage,
    uid.EnhancedMRImageStorage,
    uid.EnhancedMRColorImageStorage,
    uid.UltrasoundImageStorage,
    uid.UltrasoundMultiFrameImageStorage,
    uid.EnhancedUSVolumeStorage,
    uid.SecondaryCaptureImageStorage,
    uid.MultiFrameSingleBitSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uid.VLPhotographicImageStorage,
    uid.VLWholeSlideMicroscopyImageStorage,
    uid.SegmentationStorage,
)
STORAGE_UIDS = frozenset(str(u) for u in STORAGE)

TRANSFER_SYNTAXES = (
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRLittleEndian,
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
