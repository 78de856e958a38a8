"""The training loop's parts: batch mixing, the weight EMA, recipe overrides, and a real (tiny)
sweep of two variants through the training script's own command line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from inference.networks import build_network
from inference.training.common import SHARED_ML, Recipe, WeightEMA, mix_batch, with_overrides
from inference.training.sweep import main as sweep_main
from inference.training.sweep import parse_variant, run_command

SKIN_64 = SHARED_ML / "ham10000_onelesion_64_trainval.npz"


def batch(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_no_mixing_without_alphas_and_no_random_draws():
    rng = np.random.default_rng(1)
    x = batch()
    mixed, partner, lam = mix_batch(x, Recipe(epochs=1), rng)
    assert mixed is x and partner is None and lam == 1.0
    # The mixing stream was not touched, so turning mixing off leaves a run unchanged.
    assert rng.random() == np.random.default_rng(1).random()


def test_mix_prob_zero_never_mixes():
    recipe = Recipe(epochs=1, cutmix_alpha=1.0, mix_prob=0.0)
    rng = np.random.default_rng(2)
    for _ in range(20):
        assert mix_batch(batch(), recipe, rng)[1] is None


def test_cutmix_pastes_a_box_and_lam_is_the_exact_pixel_share():
    recipe = Recipe(epochs=1, cutmix_alpha=1.0)
    x = batch()
    for seed in range(20):
        mixed, partner, lam = mix_batch(x, recipe, np.random.default_rng(seed))
        assert partner is not None and sorted(partner.tolist()) == list(range(len(x)))
        i = next(i for i in range(len(x)) if partner[i] != i)
        changed = (mixed[i] != x[i]).any(dim=0)  # (H, W); random floats never coincide
        assert changed.float().mean().item() == pytest.approx(1.0 - lam, abs=1e-9)
        assert torch.equal(mixed[i][:, changed], x[partner[i]][:, changed])
        rows, cols = torch.nonzero(changed, as_tuple=True)
        if len(rows):  # the pasted pixels form one rectangle
            assert changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


def test_mixup_is_a_convex_blend():
    recipe = Recipe(epochs=1, mixup_alpha=0.4)
    x = batch()
    mixed, partner, lam = mix_batch(x, recipe, np.random.default_rng(5))
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])


def test_mixing_is_seeded():
    recipe = Recipe(epochs=1, mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.5)
    first = [mix_batch(batch(), recipe, rng)[2] for rng in [np.random.default_rng(9)] * 6]
    again = [mix_batch(batch(), recipe, rng)[2] for rng in [np.random.default_rng(9)] * 6]
    assert first == again


def test_weight_ema_matches_the_per_tensor_formula():
    torch.manual_seed(0)
    network = build_network("pneumonia-resnet10-w16")
    ema = WeightEMA(network, decay=0.9)
    reference = copy.deepcopy(ema.module.state_dict())
    for step in range(1, 4):
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(torch.randn_like(parameter))
        network.train()(torch.rand(4, 1, 28, 28))  # moves the BatchNorm statistics too
        ema.update(network)
        decay = min(0.9, (1 + step) / (10 + step))
        for key, value in network.state_dict().items():
            if reference[key].is_floating_point():
                reference[key].mul_(decay).add_(value, alpha=1 - decay)
            else:
                reference[key].copy_(value)
        for key, value in ema.module.state_dict().items():
            assert torch.equal(value, reference[key]), key


def test_overrides_take_json_and_bare_strings():
    recipe = with_overrides(
        Recipe(epochs=3),
        ["lr=0.01", "scale=[0.8, 1.2]", "network=skin-resnet18-w48", 'tta="dihedral8"'],
    )
    assert recipe.lr == 0.01 and recipe.scale == (0.8, 1.2)
    assert recipe.network == "skin-resnet18-w48" and recipe.tta == "dihedral8"
    with pytest.raises(SystemExit):
        with_overrides(Recipe(epochs=1), ["no_such_field=1"])


def test_sweep_variant_syntax_and_command():
    assert parse_variant("base") == ("base", [])
    name, pairs = parse_variant("long=epochs=120,cutmix_alpha=1.0")
    assert (name, pairs) == ("long", ["epochs=120", "cutmix_alpha=1.0"])
    command = run_command("train_skin", SHARED_ML, "cpu", pairs, 7)
    assert command[command.index("--epochs") + 1] == "120"
    assert "seed=7" in command and "cutmix_alpha=1.0" in command and "epochs=120" not in command


@pytest.fixture(scope="module")
def tiny_skin(tmp_path_factory):
    """A real 64 px HAM10000 subset: a few lesions of every class, so a sweep runs in seconds."""
    path = tmp_path_factory.mktemp("data") / "ham_tiny.npz"
    with np.load(SKIN_64) as data:
        parts = {}
        for split, per_class in (("train", 6), ("val", 3)):
            labels = data[f"{split}_labels"].reshape(-1)
            rows = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(7)])
            parts[f"{split}_images"] = data[f"{split}_images"][rows]
            parts[f"{split}_labels"] = data[f"{split}_labels"][rows]
    np.savez(path, **parts)
    return path


def test_a_sweep_runs_each_variant_and_ranks_by_the_mean(tiny_skin, tmp_path):
    out = tmp_path / "out"
    sweep_main(
        [
            "--script", "train_skin", "--data", str(tiny_skin), "--seeds", "1",
            "--holdout", "none",  # the own test split is defined on the full data only
            "--variant", "base=epochs=2,eval_every=1",
            "--variant", "mixed=epochs=2,eval_every=1,cutmix_alpha=1.0,network=skin-resnet18-w48",
            "--parallel", "2", "--keep", "1", "--out", str(out), "--work", str(tmp_path / "runs"),
        ]
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["ranking"]) == ["base", "mixed"]
    runs = {run["run"]: run for run in summary["runs"]}
    assert set(runs) == {"base-s1", "mixed-s1"}
    assert all(run["returncode"] == 0 for run in runs.values())
    assert runs["mixed-s1"]["metadata"]["network"] == "skin-resnet18-w48"
    assert runs["mixed-s1"]["metadata"]["recipe"]["cutmix_alpha"] == 1.0
    assert "--set cutmix_alpha=1.0" in runs["mixed-s1"]["command"]
    logits = np.load(out / "val_logits.npz")
    assert logits["base-s1"].shape == logits["mixed-s1"].shape == (21, 7)
    assert sorted(logits["labels"].tolist()) == sorted(list(range(7)) * 3)
    best = summary["ranking"][0]
    assert (out / f"weights-{best}-s1.pt").exists() and (out / f"weights-{best}-s1.json").exists()


def test_sweep_report_reads_ensembles_and_the_adjustment_scan(tmp_path):
    from inference.training.sweep_report import DELTAS, report

    labels = np.repeat(np.arange(3), 4)
    right = np.eye(3)[labels] * 4.0  # every run decides right...
    wrong = np.roll(right, 1, axis=1)  # ...but this one always decides the next class
    result = report({"a-s1": right, "a-s2": right, "b-s1": wrong}, labels, [10, 10, 10])
    assert result["runs"]["a-s1"]["balanced_accuracy"] == 1.0
    assert result["runs"]["b-s1"]["balanced_accuracy"] == 0.0
    assert set(result["ensembles"]) == {"a", "b"}
    assert result["ensembles"]["a"]["balanced_accuracy"] == 1.0
    # Equal priors: shifting by the log prior changes no decision.
    assert result["delta_scan"]["a-s1"] == [1.0] * len(DELTAS)
    skewed = report({"a-s1": np.zeros((12, 3))}, labels, [1, 1, 1000])
    # All-zero logits minus delta * log prior: a positive delta favours the rare classes.
    row = skewed["delta_scan"]["a-s1"]
    assert row[DELTAS.index(0.6)] == pytest.approx(1 / 3, abs=1e-3) and row[
        DELTAS.index(-0.6)
    ] == pytest.approx(1 / 3, abs=1e-3)


def test_the_recorded_command_names_the_niceness_it_ran_at():
    import os
    import subprocess
    import sys

    code = "from inference.training.common import command_line; print(command_line('m', ['--x']))"
    out = subprocess.run(
        ["nice", "-n", "3", sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == f"nice -n {min(os.nice(0) + 3, 19)} .venv/bin/python -m m --x"


def test_select_best_with_no_comparable_epoch_says_why(tmp_path):
    """A validation split of one class has no AUC (NaN): no epoch beats -inf, so "best" has no
    weights to restore; training stops with the reason (it used to fail in load_state_dict)."""
    from inference.models.pneumonia import MODEL as PNEUMONIA
    from inference.training.common import train

    rng = np.random.default_rng(5)
    data = tmp_path / "one_class_val.npz"
    np.savez(
        data,
        train_images=rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        train_labels=np.array([0, 1] * 4),
        val_images=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        val_labels=np.zeros(4, dtype=np.int64),
    )
    recipe = Recipe(epochs=1, batch_size=4, warmup_epochs=0, select="best", threads=1)
    with pytest.raises(SystemExit, match="no epoch had a comparable validation criterion"):
        train(PNEUMONIA, data, tmp_path / "out", recipe, "test")
