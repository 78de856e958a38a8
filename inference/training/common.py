"""Shared training loop: data, augmentation, class-balanced loss, EMA, calibration, metadata.

Everything is seeded and runs with ``torch.use_deterministic_algorithms(True)`` on the CPU (the
default). ``--device cuda`` trains the same recipe on a GPU, where a few kernels (grid-sample
backward) have no deterministic variant, so that path is seeded but not bit-reproducible.
Augmentation always runs on the CPU with the seeded generator; only the network moves.
The validation split is used only to report metrics per epoch, to fit the temperature and, where
a script says so, to pick the epoch; it is never trained on.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.metrics import classification_report, expected_calibration_error, softmax
from inference.networks import build_network
from inference.predict import network_logits, sha256_of
from inference.preprocess import preprocess
from inference.spec import ImageClassifier

REPO = Path(__file__).resolve().parents[2]
SHARED_ML = REPO.parent / "shared" / "data" / "ml"


@dataclass
class Recipe:
    epochs: int
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    ema_decay: float = 0.998
    label_smoothing: float = 0.0
    logit_adjust_tau: float = 0.0  # 0 = plain cross-entropy; 1 = balanced (Menon et al. 2021)
    dihedral: bool = False  # random flips and 90° rotations
    rotate_degrees: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    # Batch mixing against over-fitting the few rare-class lesions: with probability
    # ``mix_prob`` a batch is mixed with a shuffled copy of itself, by CutMix (Yun et al. 2019;
    # a box of the partner image pasted in) when ``cutmix_alpha`` > 0, else by mixup (Zhang et
    # al. 2018; a convex blend) when ``mixup_alpha`` > 0; with both, each mixed batch picks one
    # at random. The loss mixes the two labels' cross-entropies by the pixel share ``lam``.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    padding_mode: str = "reflection"
    tta: str = "none"
    select: str = "last"  # "last" epoch, or "best" by the validation criterion
    # Validation metrics every ``eval_every`` epochs, plus the first and the last three (each
    # evaluation with 8-view TTA costs about half a CPU training epoch); "best" needs 1; 0: none
    # during training (the final report on validation is always made).
    eval_every: int = 1
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on a CPU)
    # bfloat16 autocast of the training forward pass on the CPU (master weights, optimiser, EMA,
    # validation and the saved weights stay float32 / float16): faster on CPUs with AVX512-BF16.
    bf16_autocast: bool = False
    seed: int = 20240611
    threads: int = 2
    network: str = ""  # a network the model declares (spec.networks) to train instead
    extra: dict = field(default_factory=dict)


def relative_to_repo(path: Path) -> str:
    return os.path.relpath(Path(path).resolve(), REPO)


def seed_everything(seed: int, threads: int, device: str = "cpu") -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    if device == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def load_split(
    path: Path, spec: ImageClassifier, split: str, exclude: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-processed images and labels of ``split``, without the rows in ``exclude``."""
    with np.load(path) as data:
        images = data[f"{split}_images"]
        labels = data[f"{split}_labels"].reshape(-1).astype(np.int64)
    if exclude is not None and len(exclude):
        keep = np.setdiff1d(np.arange(len(labels)), exclude)
        images, labels = images[keep], labels[keep]
    return preprocess(images, size=spec.input_size, mode=spec.mode), torch.from_numpy(labels)


def augment(batch: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Random dihedral flips, affine warp and colour jitter, done per sample on the batch."""
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    if recipe.dihedral:
        flip = torch.rand(n, generator=generator) < 0.5
        batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
        turns = torch.randint(0, 4, (n,), generator=generator)
        rotated = [torch.rot90(batch, k, dims=(-2, -1)) for k in range(4)]
        batch = torch.stack(rotated)[turns, torch.arange(n)]
    if recipe.rotate_degrees or recipe.scale != (1.0, 1.0) or recipe.translate:
        angle = uniform(-recipe.rotate_degrees, recipe.rotate_degrees) * math.pi / 180.0
        zoom = 1.0 / uniform(*recipe.scale)
        shift = (
            uniform(-recipe.translate, recipe.translate),
            uniform(-recipe.translate, recipe.translate),
        )
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[0] * 2], 1), torch.stack([sin, cos, shift[1] * 2], 1)],
            1,
        )
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        batch = F.grid_sample(
            batch, grid, mode="bilinear", padding_mode=recipe.padding_mode, align_corners=False
        )
    if recipe.brightness:
        batch = batch * uniform(1 - recipe.brightness, 1 + recipe.brightness).view(-1, 1, 1, 1)
    if recipe.contrast:
        mean = batch.mean(dim=(1, 2, 3), keepdim=True)
        factor = uniform(1 - recipe.contrast, 1 + recipe.contrast).view(-1, 1, 1, 1)
        batch = mean + factor * (batch - mean)
    if recipe.saturation and batch.shape[1] == 3:
        grey = (0.299 * batch[:, :1] + 0.587 * batch[:, 1:2] + 0.114 * batch[:, 2:]).expand_as(
            batch
        )
        factor = uniform(1 - recipe.saturation, 1 + recipe.saturation).view(-1, 1, 1, 1)
        batch = grey + factor * (batch - grey)
    return batch.clamp(0.0, 1.0)


def mix_batch(
    batch: torch.Tensor, recipe: Recipe, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``(mixed batch, partner order or None, lam)``: the share ``lam`` of each image is its own
    (for CutMix, the exact share of pixels outside the pasted box)."""
    if not (recipe.mixup_alpha or recipe.cutmix_alpha) or rng.random() >= recipe.mix_prob:
        return batch, None, 1.0
    use_cutmix = recipe.cutmix_alpha > 0 and (recipe.mixup_alpha <= 0 or rng.random() < 0.5)
    alpha = recipe.cutmix_alpha if use_cutmix else recipe.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = torch.from_numpy(rng.permutation(batch.shape[0]))
    if not use_cutmix:
        return lam * batch + (1.0 - lam) * batch[partner], partner, lam
    height, width = batch.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    box_h, box_w = int(round(height * cut)), int(round(width * cut))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - box_h // 2, 0), min(cy + (box_h - box_h // 2), height)
    left, right = max(cx - box_w // 2, 0), min(cx + (box_w - box_w // 2), width)
    mixed = batch.clone()
    mixed[..., top:bottom, left:right] = batch[partner][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, partner, lam


class WeightEMA:
    """Exponential moving average of the weights *and* BatchNorm statistics, with the usual
    warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so that early, fast-moving weights do
    not linger in the average."""

    def __init__(self, network: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(network).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = network.state_dict()
        averages, latest = [], []
        for key, average in self.module.state_dict().items():
            if average.is_floating_point():
                averages.append(average)
                latest.append(current[key].detach())
            else:
                average.copy_(current[key])
        # One fused multiply and one fused add over all tensors (the same arithmetic as a
        # per-tensor ``mul_(decay).add_(x, alpha=1 - decay)``, far fewer kernel launches on a GPU).
        torch._foreach_mul_(averages, decay)
        torch._foreach_add_(averages, latest, alpha=1 - decay)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the validation negative log-likelihood (Guo et al. 2017)."""
    z = torch.from_numpy(logits).double()
    y = torch.from_numpy(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def evaluate(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, names, offset, tta):
    """Validation logits and a report: probabilities ``softmax(logits + offset)``, decision
    ``argmax(logits)`` (temperature not yet fitted)."""
    device = next(network.parameters()).device
    logits = torch.cat(
        [
            network_logits(network, images[i : i + 512].to(device), tta).cpu()
            for i in range(0, len(images), 512)
        ]
    ).numpy()
    y = labels.numpy()
    return logits, classification_report(softmax(logits + offset), logits.argmax(1), y, names)


def criterion_of(report: dict) -> float:
    return report["balanced_accuracy"] + report["macro_auc"]


def train(
    spec: ImageClassifier,
    data: Path,
    out: Path,
    recipe: Recipe,
    command: str,
    device: str = "cpu",
    holdout: Path | None = None,
) -> dict:
    """Train ``spec`` on ``data``'s train split less the rows of the ``holdout`` split file
    (:mod:`inference.training.own_test`), report on its validation split, write the weights."""
    started, cpu_started = time.time(), time.process_time()
    generator = seed_everything(recipe.seed, recipe.threads, device)
    mix_rng = np.random.default_rng(recipe.seed)  # its own stream: mixing leaves augment's alone
    held_out = None
    if holdout is not None:
        from inference.training.own_test import load_holdout  # noqa: PLC0415 (cycle)

        held_out = load_holdout(holdout, data)
    train_x, train_y = load_split(data, spec, "train", held_out)
    val_x, val_y = load_split(data, spec, "val")
    classes = len(spec.labels)
    counts = torch.bincount(train_y, minlength=classes).double()
    log_prior = (counts / counts.sum()).log().float()
    adjustment = recipe.logit_adjust_tau * log_prior
    offset = adjustment.numpy().astype(np.float64)
    print(
        f"{spec.name}: train {len(train_y)} {counts.long().tolist()}, val {len(val_y)}", flush=True
    )

    if recipe.bf16_autocast and device != "cpu":
        raise SystemExit("bf16_autocast is the CPU path; on a GPU train in float32")
    if recipe.select == "best" and recipe.eval_every != 1:
        raise SystemExit('select="best" picks among evaluated epochs: it needs eval_every=1')
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    network_name = recipe.network or spec.network
    # Module.to takes memory_format at run time (torch's overloads for it omit the keyword).
    network = build_network(network_name).to(device, memory_format=memory_format)  # type: ignore[call-overload]
    ema = WeightEMA(network, recipe.ema_decay)
    adjustment_on_device = adjustment.to(device)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_y) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    warmup = recipe.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_at)
    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, torch.Tensor] | None, int] = (-math.inf, None, 0)
    for epoch in range(1, recipe.epochs + 1):
        network.train()
        epoch_start, epoch_cpu, running, seen = time.time(), time.process_time(), 0.0, 0
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            if len(index) < 2:
                continue
            x, partner, lam = mix_batch(augment(train_x[index], recipe, generator), recipe, mix_rng)
            x = x.to(device, memory_format=memory_format, non_blocking=True)
            y = train_y[index].to(device, non_blocking=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16_autocast):
                logits = network(x).float() + adjustment_on_device
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            if partner is not None:
                loss = lam * loss + (1.0 - lam) * F.cross_entropy(
                    logits, y[partner.to(device)], label_smoothing=recipe.label_smoothing
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            ema.update(network)
            running += loss.item() * len(index)
            seen += len(index)
        row = {"epoch": epoch, "train_loss": round(running / seen, 4)}
        if recipe.eval_every > 0 and (
            epoch == 1 or epoch % recipe.eval_every == 0 or epoch > recipe.epochs - 3
        ):
            _, report = evaluate(ema.module, val_x, val_y, spec.labels, offset, recipe.tta)
            row["val_accuracy"] = report["accuracy"]
            row["val_balanced_accuracy"] = report["balanced_accuracy"]
            row["val_macro_auc"] = report["macro_auc"]
        row["seconds"] = round(time.time() - epoch_start, 1)
        # Process CPU time (user + sys, all threads): on a shared machine the honest cost.
        row["cpu_seconds"] = round(time.process_time() - epoch_cpu, 1)
        row["load_1min"] = round(os.getloadavg()[0], 2)
        history.append(row)
        print(json.dumps(row), flush=True)
        if recipe.select == "best" and criterion_of(report) > best[0]:
            state = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
            best = (criterion_of(report), state, epoch)

    if recipe.select == "best":
        if best[1] is None:
            raise SystemExit(
                'select="best": no epoch had a comparable validation criterion (NaN metrics?)'
            )
        ema.module.load_state_dict(best[1])
        chosen = best[2]
    else:
        chosen = recipe.epochs
    train_seconds = time.time() - started
    train_cpu_seconds = time.process_time() - cpu_started

    out.mkdir(parents=True, exist_ok=True)
    weights = spec.weights_path(out)
    state = {
        k: (v.half() if v.is_floating_point() else v).cpu().contiguous()
        for k, v in ema.module.state_dict().items()
    }
    torch.save(state, weights)

    # Metrics from the saved (float16) weights, exactly as prediction will load them.
    shipped = build_network(network_name)
    loaded = torch.load(weights, map_location="cpu", weights_only=True)
    shipped.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in loaded.items()}
    )
    logits, _ = evaluate(shipped, val_x, val_y, spec.labels, offset, recipe.tta)
    val_labels = val_y.numpy()
    calibration_offset = offset
    natural = logits + calibration_offset
    temperature = fit_temperature(natural, val_labels)
    decision = logits.argmax(1)
    before = softmax(natural)
    after = softmax(natural / temperature)
    report = classification_report(after, decision, val_labels, spec.labels)
    report["ece_before"] = round(expected_calibration_error(before, val_labels), 4)
    report["ece_after"] = round(expected_calibration_error(after, val_labels), 4)
    report["nll_before"] = round(
        float(-np.log(before[np.arange(len(val_labels)), val_labels] + 1e-12).mean()), 4
    )
    report["nll_after"] = round(
        float(-np.log(after[np.arange(len(val_labels)), val_labels] + 1e-12).mean()), 4
    )
    if recipe.logit_adjust_tau:
        balanced = classification_report(softmax(logits), decision, val_labels, spec.labels)
        report["balanced_softmax"] = {
            "macro_auc": balanced["macro_auc"],
            "ece": round(expected_calibration_error(softmax(logits), val_labels), 4),
        }
    report["argmax_of_calibrated_probabilities"] = {
        key: value
        for key, value in classification_report(
            after, after.argmax(1), val_labels, spec.labels
        ).items()
        if key in ("accuracy", "balanced_accuracy")
    }
    metadata = {
        "name": spec.name,
        "version": f"{spec.name}-{sha256_of(weights)[:12]}",
        "network": network_name,
        "labels": list(spec.labels),
        "display": list(spec.display),
        "input": {"size": spec.input_size, "mode": spec.mode, "range": "[0, 1]"},
        "weights_file": weights.name,
        "weights_sha256": sha256_of(weights),
        "weights_bytes": weights.stat().st_size,
        "weights_dtype": "float16 (loaded as float32)",
        "temperature": round(temperature, 6),
        "calibration_offset": [round(float(v), 6) for v in calibration_offset],
        "decision_offset": [0.0] * classes,
        "decision_rule": (
            "argmax of the network logits (trained with logit-adjusted loss: balanced decision)"
            if recipe.logit_adjust_tau
            else "argmax of the network logits"
        ),
        "tta": recipe.tta,
        "data_file": relative_to_repo(data),
        "train_class_counts": counts.long().tolist(),
        "holdout": None
        if holdout is None
        else {
            "file": relative_to_repo(holdout),
            "checksum": json.loads(Path(holdout).read_text())["checksum"],
            "rows": len(held_out) if held_out is not None else 0,
        },
        "training_command": command,
        "recipe": asdict(recipe),
        "selected_epoch": chosen,
        "train_seconds": round(train_seconds),
        "train_cpu_seconds": round(train_cpu_seconds),
        "train_threads": recipe.threads,
        "train_device": device if device == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "val": report,
        "history": history,
    }
    spec.metadata_path(out).write_text(json.dumps(metadata, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in report if k not in ("per_class", "confusion_matrix")}))
    print(
        f"wrote {relative_to_repo(weights)} ({weights.stat().st_size} bytes) in {train_seconds:.0f} s"
    )
    return metadata


def command_line(module: str, argv: list[str]) -> str:
    """The command as run, with the process's own niceness when it was started under ``nice``."""
    niceness = os.nice(0)
    prefix = [f"nice -n {niceness}"] if niceness > 0 else []
    return " ".join([*prefix, ".venv/bin/python -m", module, *map(shlex.quote, argv)])


def with_overrides(recipe: Recipe, pairs: list[str]) -> Recipe:
    """``recipe`` with ``key=value`` overrides (JSON values), e.g. ``label_smoothing=0.1``."""
    changes: dict[str, Any] = {}
    names = {f.name: f for f in fields(Recipe)}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in names:
            raise SystemExit(f"--set takes key=value with key one of {sorted(names)}; got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string, e.g. network=skin-resnet18-w48
        changes[key] = tuple(value) if isinstance(value, list) else value
    return replace(recipe, **changes)


def main_for(
    spec: ImageClassifier,
    module: str,
    doc: str,
    default_data: Path,
    default_epochs: int,
    recipe: Callable[[int], Recipe],
    argv: list[str] | None = None,
    default_holdout: Path | None = None,
) -> dict:
    """The command line every training script shares: data, output, epochs, device, overrides."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--out", type=Path, default=spec.weights_path().parent)
    parser.add_argument("--epochs", type=int, default=default_epochs)
    parser.add_argument(
        "--holdout",
        type=Path,
        default=default_holdout,
        help="a split file of train rows to leave out (the own test split); 'none' for none",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default, deterministic) or cuda")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field"
    )
    args = parser.parse_args(argv)
    shown = [
        "--data", relative_to_repo(args.data), "--out", relative_to_repo(args.out),
        "--epochs", str(args.epochs),
    ]  # fmt: skip
    holdout = None if str(args.holdout).lower() == "none" else args.holdout
    if holdout is not None:
        shown += ["--holdout", relative_to_repo(holdout)]
    if args.device != "cpu":
        shown += ["--device", args.device]
    for pair in args.set:
        shown += ["--set", pair]
    final = with_overrides(recipe(args.epochs), args.set)
    return train(
        spec, args.data, args.out, final, command_line(module, shown), args.device, holdout
    )
