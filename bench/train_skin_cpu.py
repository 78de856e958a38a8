"""Skin training cost on this CPU: the shipped recipe's training step and validation pass in
several execution variants, each next to the old baseline measured in the same run.

    .venv/bin/python bench/train_skin_cpu.py [--steps 10] [--rounds 2] [--variants a,b,...]

Variants (2 threads, as training uses):

* ``baseline`` — what ``train_skin`` did before: float32, contiguous (NCHW) tensors, validation
  with 8-view test-time augmentation after every epoch;
* ``cl`` — channels_last (NHWC) activations and weights, validation every 5 epochs plus the first
  and the last three (15 of 60): the shipped default;
* ``cl-bf16`` — ``cl`` with ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward
  passes (training and validation);
* ``cl-compile`` — ``cl`` with ``torch.compile`` (inductor); the first step's compile time is
  printed apart.

Each round times ``--steps`` real training steps (augmentation of a 64-image batch, forward,
logit-adjusted loss, backward, AdamW, EMA update) and the 8 views of a validation pass over the
597 images, interleaved step by step and view by view across the variants so that the machine's
load hits them alike. Figures are process CPU seconds (user + sys, both threads) and wall seconds,
with the load average. On a shared machine contention inflates both (cache, OpenMP spin-waiting),
so the summary also gives the fastest tenth and the fastest step / view, the closest to a quiet
machine; compare variants only within one run. Per-epoch estimate = 66 steps + the variant's
share of a validation pass.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.models.skin import MODEL as SKIN  # noqa: E402
from inference.networks import build_network  # noqa: E402
from inference.predict import network_logits  # noqa: E402
from inference.training.common import (  # noqa: E402
    WeightEMA,
    augment,
    load_split,
    seed_everything,
)
from inference.training.train_skin import DEFAULT_DATA, DEFAULT_EPOCHS, recipe  # noqa: E402

VARIANTS = {
    # name: (channels_last, bf16, compile, evaluated epochs out of 60)
    "baseline": (False, False, False, 60),
    "cl": (True, False, False, 15),
    "cl-bf16": (True, True, False, 15),
    "cl-compile": (True, False, True, 15),
}


class Variant:
    def __init__(self, name: str, train_x, train_y, val_x, generator) -> None:
        self.name = name
        self.channels_last, self.bf16, compiled, self.evaluated = VARIANTS[name]
        self.format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.recipe = recipe(DEFAULT_EPOCHS)
        self.network = build_network(SKIN.network).to(memory_format=self.format)
        self.model = torch.compile(self.network) if compiled else self.network
        self.ema = WeightEMA(self.network, self.recipe.ema_decay)
        self.optimiser = torch.optim.AdamW(
            self.network.parameters(), lr=self.recipe.lr, weight_decay=self.recipe.weight_decay
        )
        self.train_x, self.train_y, self.val_x = train_x, train_y, val_x
        self.generator = generator
        counts = torch.bincount(train_y, minlength=len(SKIN.labels)).double()
        self.adjustment = (counts / counts.sum()).log().float()
        self.step_cpu: list[float] = []
        self.step_wall: list[float] = []
        self.eval_cpu: list[float] = []
        self.eval_wall: list[float] = []
        self.compile_cpu = self.compile_wall = 0.0
        self.started = False

    def autocast(self):
        if self.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> None:
        self.network.train()
        index = torch.randint(0, len(self.train_y), (64,), generator=self.generator)
        x = augment(self.train_x[index], self.recipe, self.generator)
        x = x.to(memory_format=self.format)
        with self.autocast():
            logits = self.model(x).float() + self.adjustment
        loss = F.cross_entropy(logits, self.train_y[index])
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.ema.update(self.network)

    def warm_up(self) -> None:
        cpu, wall = time.process_time(), time.time()
        self.step()
        self.compile_cpu, self.compile_wall = time.process_time() - cpu, time.time() - wall

    def timed_step(self) -> None:
        if not self.started:
            self.warm_up()
            self.started = True
        cpu, wall = time.process_time(), time.time()
        self.step()
        self.step_cpu.append(time.process_time() - cpu)
        self.step_wall.append(time.time() - wall)

    def timed_view(self, flip: bool, k: int) -> None:
        """One of the 8 views of the validation pass (x 8: the cost of the whole pass)."""
        cpu, wall = time.process_time(), time.time()
        view = torch.rot90(self.val_x.flip(-1) if flip else self.val_x, k, dims=(-2, -1))
        with self.autocast():
            for i in range(0, len(view), 512):
                network_logits(self.ema.module, view[i : i + 512])
        self.eval_cpu.append(8 * (time.process_time() - cpu))
        self.eval_wall.append(8 * (time.time() - wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="baseline,cl,cl-bf16")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    generator = seed_everything(11, 2)
    train_x, train_y = load_split(DEFAULT_DATA, SKIN, "train")
    val_x, _ = load_split(DEFAULT_DATA, SKIN, "val")
    steps_per_epoch = math.ceil(len(train_y) / 64)
    variants = [Variant(name, train_x, train_y, val_x, generator) for name in names]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu {os.cpu_count()}")
    for round_ in range(args.rounds):
        # Interleaved step by step and view by view, so that load bursts hit every variant.
        for _ in range(args.steps):
            for variant in variants:
                variant.timed_step()
        for flip in (False, True):
            for k in range(4):
                for variant in variants:
                    variant.timed_view(flip, k)
        for variant in variants:
            print(
                f"round {round_ + 1} {variant.name:11s} step cpu "
                f"{sum(variant.step_cpu[-args.steps :]) / args.steps:.3f} s wall "
                f"{sum(variant.step_wall[-args.steps :]) / args.steps:.3f} s; validation cpu "
                f"{sum(variant.eval_cpu[-8:]) / 8:.1f} s wall {sum(variant.eval_wall[-8:]) / 8:.1f} s;"
                f" load {os.getloadavg()[0]:.2f}",
                flush=True,
            )

    def quantile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(
        f"\nper epoch ({steps_per_epoch} steps + the variant's share of a validation pass),"
        " from the median, the fastest tenth and the fastest of the individual steps / views (the"
        " fastest are the closest to a quiet machine: those ran with both threads on a core):"
    )
    for q, label in ((0.5, "median"), (0.1, "10th percentile"), (0.0, "fastest")):
        base = None
        for variant in variants:
            share = variant.evaluated / DEFAULT_EPOCHS
            cpu = steps_per_epoch * quantile(variant.step_cpu, q) + share * quantile(
                variant.eval_cpu, q
            )
            wall = steps_per_epoch * quantile(variant.step_wall, q) + share * quantile(
                variant.eval_wall, q
            )
            base = base or wall
            extra = ""
            if VARIANTS[variant.name][2]:
                extra = f"; first step (compile) cpu {variant.compile_cpu:.0f} s"
            print(
                f"{label:15s} {variant.name:11s} epoch wall {wall:6.1f} s"
                f" (x{wall / base:.2f} of {variants[0].name}), cpu {cpu:6.1f} s;"
                f" 60 epochs: wall {wall:5.1f} min, cpu/2 {cpu / 2:5.1f} min{extra}"
            )
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
