"""``pneumonia`` — chest X-ray normal / pneumonia classifier (PneumoniaMNIST, 28×28 grey).

Input: the first chest CR/DX series of an ImagingStudy, or a Media (DICOM, PNG, JPEG); a DICOM
instance must be a chest CR/DX. An ImagingStudy announced complete by the DICOM receiver with a
chest CR/DX series requests this analysis (through its imaging-review case when the study has a
Patient). Model card: docs/models.md.
"""

from __future__ import annotations

from inference.images import check_chest_radiograph, has_chest_modality, is_chest_series
from inference.spec import ImageClassifier, QualityGate, Trigger

# Per-channel mean / std of the training split (pixel values scaled to [0, 1]).
PNEUMONIAMNIST_MEAN = (0.5719,)
PNEUMONIAMNIST_STD = (0.1684,)


def pneumonia_resnet10_w16():  # type: ignore[no-untyped-def]
    """MONAI 2-D ResNet-10 layout (basic blocks 1-1-1-1) at quarter width, for 1×28×28 input."""
    from monai.networks.nets import ResNet

    from inference.networks import NormalisedClassifier

    backbone = ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=[16, 32, 64, 128],
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_size=3,
        conv1_t_stride=1,
        no_max_pool=True,
        num_classes=2,
    )
    return NormalisedClassifier(backbone, PNEUMONIAMNIST_MEAN, PNEUMONIAMNIST_STD)


def is_chest_radiograph_study(study: dict) -> bool:
    return any(is_chest_series(series) for series in study.get("series", []))


def _default_for(res_type: str, focus: dict) -> bool:
    return res_type == "ImagingStudy" or (res_type == "Media" and has_chest_modality(focus))


MODEL = ImageClassifier(
    name="pneumonia",
    analysis="chest-xray-pneumonia",
    analysis_display="AI chest X-ray pneumonia classification",
    title="Hearth chest X-ray pneumonia classifier (PneumoniaMNIST)",
    order=2,
    operation_inputs=frozenset({"ImagingStudy", "Media"}),
    default_for=_default_for,
    triggers=(Trigger("study-complete", "ImagingStudy", is_chest_radiograph_study),),
    network="pneumonia-resnet10-w16",
    networks={"pneumonia-resnet10-w16": pneumonia_resnet10_w16},
    input_size=28,
    mode="L",
    labels=("normal", "pneumonia"),
    display=("normal", "pneumonia"),
    high_risk=frozenset({"pneumonia"}),
    benign=frozenset({"normal"}),
    snomed={"pneumonia": ("233604007", "Pneumonia")},
    series=is_chest_series,
    wanted="a chest radiograph",
    check_dicom=check_chest_radiograph,
    training="inference.training.train_pneumonia",
    # Image-quality gate (inference/quality.py): a grey radiograph, at least 28 px on its short
    # side (the training resolution); thresholds fitted on the training images.
    quality=QualityGate(colour="grey", min_side=28, quantile=0.001),
)
