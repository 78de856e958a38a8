"""Train the 7-class skin lesion classifier on HAM10000 (one image per lesion, 64×64).

Recipe: MONAI ResNet-18 layout at half width, AdamW with cosine decay, weight EMA, logit-adjusted
cross-entropy (class-balanced decisions without oversampling), dihedral flips, free rotation,
zoom, shift and colour jitter; predictions average the 8 dihedral views. Temperature fitted on the
validation split afterwards. The learning rate, weight decay and seed are the best of a six-run
sweep (two recipes x three seeds, all listed in docs/models.md).

    nice -n 19 .venv/bin/python -m inference.training.train_skin
"""

from __future__ import annotations

from inference.models.skin import MODEL
from inference.training.common import SHARED_ML, Recipe, main_for
from inference.training.own_test import SPLIT_FILE

DEFAULT_DATA = SHARED_ML / "ham10000_onelesion_64_trainval.npz"
DEFAULT_EPOCHS = 60


def recipe(epochs: int) -> Recipe:
    return Recipe(
        epochs=epochs,
        batch_size=64,
        lr=3e-3,
        weight_decay=1e-3,
        warmup_epochs=2,
        ema_decay=0.998,
        logit_adjust_tau=1.0,
        dihedral=True,
        rotate_degrees=180.0,
        scale=(0.9, 1.15),
        translate=0.06,
        brightness=0.15,
        contrast=0.15,
        saturation=0.15,
        padding_mode="reflection",
        tta="dihedral8",
        select="last",
        eval_every=5,
        channels_last=True,
        seed=11,
    )


def main(argv: list[str] | None = None) -> None:
    main_for(
        MODEL,
        "inference.training.train_skin",
        __doc__,
        DEFAULT_DATA,
        DEFAULT_EPOCHS,
        recipe,
        argv,
        default_holdout=SPLIT_FILE,
    )


if __name__ == "__main__":
    main()
