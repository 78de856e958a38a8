"""Train the chest X-ray normal / pneumonia classifier on PneumoniaMNIST (28×28 grey).

Recipe: MONAI ResNet-10 layout at quarter width, AdamW with cosine decay, weight EMA, plain
cross-entropy, small rotations, zoom, shift and brightness / contrast jitter (no flips: chest
anatomy is not mirror-symmetric). Temperature fitted on the validation split afterwards.

    nice -n 19 .venv/bin/python -m inference.training.train_pneumonia
"""

from __future__ import annotations

from inference.models.pneumonia import MODEL
from inference.training.common import SHARED_ML, Recipe, main_for

DEFAULT_DATA = SHARED_ML / "pneumoniamnist_trainval.npz"
DEFAULT_EPOCHS = 30


def recipe(epochs: int) -> Recipe:
    return Recipe(
        epochs=epochs,
        batch_size=64,
        lr=2e-3,
        weight_decay=5e-4,
        warmup_epochs=1,
        ema_decay=0.995,
        logit_adjust_tau=0.0,
        dihedral=False,
        rotate_degrees=10.0,
        scale=(0.9, 1.1),
        translate=0.05,
        brightness=0.2,
        contrast=0.2,
        padding_mode="border",
        tta="none",
        select="last",
    )


def main(argv: list[str] | None = None) -> None:
    main_for(
        MODEL,
        "inference.training.train_pneumonia",
        __doc__,
        DEFAULT_DATA,
        DEFAULT_EPOCHS,
        recipe,
        argv,
    )


if __name__ == "__main__":
    main()
