"""``skin`` — 7-class dermoscopy lesion classifier (HAM10000 classes, DermaMNIST order).

Input: a photo (JPEG, PNG, DICOM XC/DMS) as a Media, or the first photographic series of an
ImagingStudy; the image-quality gate (``inference/quality.py``) refuses blank, striped, dark,
over-exposed, blurred, tiny and grey (X-ray) images first. A new Media photo from a photographic modality
(``Media.modality`` DICOM XC or DMS) requests this analysis by itself. Model card: docs/models.md.
"""

from __future__ import annotations

from inference.images import PHOTO_MODALITIES, has_chest_modality
from inference.spec import ImageClassifier, QualityGate, Screening, Trigger

DICOM_MODALITY = "http://dicom.nema.org/resources/ontology/DCM"

# Per-channel mean / std of the training split (pixel values scaled to [0, 1]).
HAM10000_64_MEAN = (0.7808, 0.5275, 0.5483)
HAM10000_64_STD = (0.1318, 0.1558, 0.1722)


def skin_resnet18(width: int = 32, stem_stride: int = 2):  # type: ignore[no-untyped-def]
    """MONAI 2-D ResNet-18 layout (basic blocks 2-2-2-2), first stage ``width`` channels (64 is
    the standard width), for 3×64×64 input. A 3×3 stem without max-pooling: stride 2 keeps
    32×32 feature maps in the first stage, stride 1 keeps 64×64 (four times the arithmetic).
    """
    from monai.networks.nets import ResNet

    from inference.networks import NormalisedClassifier

    backbone = ResNet(
        block="basic",
        layers=[2, 2, 2, 2],
        block_inplanes=[width, 2 * width, 4 * width, 8 * width],
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_size=3,
        conv1_t_stride=stem_stride,
        no_max_pool=True,
        num_classes=7,
    )
    return NormalisedClassifier(backbone, HAM10000_64_MEAN, HAM10000_64_STD)


def is_skin_photo(media: dict) -> bool:
    """An image (image/* or application/dicom) from a photographic modality: DICOM ``XC``
    (external-camera photography) or ``DMS`` (dermoscopy) in ``Media.modality``."""
    content_type = str(media.get("content", {}).get("contentType", ""))
    modality = {
        c.get("code") for c in media.get("modality", {}).get("coding", [])
        if c.get("system") in (DICOM_MODALITY, None)
    }  # fmt: skip
    return (content_type.startswith("image/") or content_type == "application/dicom") and bool(
        modality & PHOTO_MODALITIES
    )


def is_photo_series(series: dict) -> bool:
    return series.get("modality", {}).get("code") in PHOTO_MODALITIES


MODEL = ImageClassifier(
    name="skin",
    analysis="skin-lesion-classification",
    analysis_display="AI skin lesion classification (7 HAM10000 classes)",
    title="Hearth skin lesion classifier (HAM10000, 7 classes)",
    order=1,
    operation_inputs=frozenset({"Media"}),
    default_for=lambda res_type, focus: res_type == "Media" and not has_chest_modality(focus),
    triggers=(Trigger("created", "Media", is_skin_photo),),
    network="skin-resnet18-w32",
    networks={
        "skin-resnet18-w32": lambda: skin_resnet18(32, 2),  # shipped: half width, stride-2 stem
        # Larger variants, compared in recipe sweeps (docs/models.md).
        "skin-resnet18-w48": lambda: skin_resnet18(48, 2),
        "skin-resnet18-w64": lambda: skin_resnet18(64, 2),
        "skin-resnet18-w32-s1": lambda: skin_resnet18(32, 1),
    },
    input_size=64,
    mode="RGB",
    labels=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
    display=(
        "actinic keratosis / intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesion",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevus",
        "vascular lesion",
    ),
    high_risk=frozenset({"mel", "bcc", "akiec"}),
    benign=frozenset({"bkl", "df", "nv", "vasc"}),
    # Checked SNOMED CT codes (sources: docs/models.md, "Codes"); mel, df, vasc carry the label
    # code only. HAM10000 "bkl" also holds solar lentigines and lichen-planus-like keratoses:
    # the concept is the class's main member, not an exact equivalent.
    snomed={
        "akiec": ("201101007", "Actinic keratosis"),
        "bcc": ("254701007", "Basal cell carcinoma of skin"),
        "bkl": ("394726009", "Seborrheic keratosis"),
        "nv": ("400096001", "Melanocytic nevus"),
    },
    series=is_photo_series,
    wanted="a skin photograph (XC, DMS)",
    training="inference.training.train_skin",
    # Screening: refer when P(melanoma) + P(bcc) + P(akiec) reaches the threshold chosen on the
    # validation split for a malignancy sensitivity of at least 0.90 (docs/models.md).
    # Image-quality gate (inference/quality.py): a colour photo, at least 28 px on its short side
    # (the smallest HAM10000 resolution shipped); thresholds fitted on the training images.
    quality=QualityGate(colour="colour", min_side=28, quantile=0.001),
    # The lesion's outline and area (Otsu + morphology on the blue channel) on every result.
    segment_lesion=True,
    screening=Screening(
        name="malignancy",
        display="Probability of malignancy (melanoma + basal cell carcinoma + actinic keratosis "
        "/ intraepithelial carcinoma)",
        positive=frozenset({"mel", "bcc", "akiec"}),
        target_sensitivity=0.90,
    ),
)
