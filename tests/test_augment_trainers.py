"""Data-augmentation trainers (mixup, cutmix, rotation, noise): what each does to a batch, that a no-op
augmentation trains bit-for-bit like ``standard``, reproducibility, strict params, and a tiny suite end to end."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from support import rbench

from rbench.errors import SuiteError
from rbench.model import TrainData
from rbench.plugins import get_plugin
from rbench.plugins.trainers.augment import (
    beta,
    cutmix,
    gaussian_noise,
    mixup,
    n_augmented,
    random_rotation,
    rotate,
)
from rbench.suite import load_suite

AUGMENTS = ["mixup", "cutmix", "rotation", "noise"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def _mnist(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from rbench.data import load_split

    images, labels = load_split("mnist", "train")
    return torch.tensor(images[:n].reshape(-1, 1, 28, 28), dtype=torch.float32) / 255, torch.tensor(labels[:n])


def _train(trainer: str, seed: int = 1, n: int = 512, **params) -> tuple[dict[str, torch.Tensor], dict]:
    torch.manual_seed(0)  # dropout draws from the global generator, as in run_train
    plugin = get_plugin("model", "mlp")
    model = plugin.build(plugin.Params(widths=[32], dropout=0.2))
    t = get_plugin("trainer", trainer)
    p = t.Params(**{"epochs": 2, "batch_size": 64, "lr": 3e-3, **params})
    stats = t.train(model, TrainData(*_mnist(n)), p, generator=torch.Generator().manual_seed(seed),
                    device=torch.device("cpu"))
    return model.state_dict(), stats


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("trainer", "params"), [
    ("mixup", {"fraction": 0.0}), ("cutmix", {"fraction": 0.0}), ("rotation", {"degrees": 0.0}),
    ("noise", {"sigma": 0.0}), ("noise", {"fraction": 0.007}),  # 0.007 * 64 rounds to no sample
])
def test_noop_augmentation_trains_bit_for_bit_like_standard(trainer, params):
    reference, ref_stats = _train("standard")
    state, stats = _train(trainer, **params)
    assert _same(state, reference) and stats == ref_stats


@pytest.mark.parametrize("trainer", AUGMENTS)
def test_augmentation_changes_training_and_is_reproducible_from_the_seed(trainer):
    reference, _ = _train("standard")
    state, stats = _train(trainer, fraction=0.5)
    assert not _same(state, reference)
    assert math.isfinite(stats["final_epoch_loss"]) and stats["steps"] == 2 * 8
    again, again_stats = _train(trainer, fraction=0.5)
    assert _same(state, again) and stats == again_stats
    other, _ = _train(trainer, seed=2, fraction=0.5)
    assert not _same(state, other)


def test_n_augmented_rounds_to_whole_samples():
    assert [n_augmented(f, 64) for f in (0, 0.007, 0.5, 1)] == [0, 0, 32, 64]
    assert n_augmented(0.5, 3) == 2 and n_augmented(1.0, 1) == 1


def test_beta_draws_follow_the_distribution_and_the_generator():
    g = torch.Generator().manual_seed(0)
    uniform = np.array([beta(1.0, g) for _ in range(2000)])  # Beta(1, 1) is uniform: mean 1/2, variance 1/12
    assert abs(uniform.mean() - 0.5) < 0.03 and abs(uniform.var() - 1 / 12) < 0.01
    peaked = np.array([beta(0.2, g) for _ in range(2000)])  # Beta(0.2, 0.2): variance 1 / (4 * 1.4) = 0.179
    assert abs(peaked.var() - 1 / 5.6) < 0.02 and ((peaked < 0.1) | (peaked > 0.9)).mean() > 0.5
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [beta(0.2, a) for _ in range(5)] == [beta(0.2, b) for _ in range(5)]


def _constant_images(n: int, size: tuple[int, int] = (28, 28)) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is constant (i + 1) / (n + 1); label i, so partners' labels name the partners."""
    x = ((torch.arange(n, dtype=torch.float32) + 1) / (n + 1)).view(-1, 1, 1, 1).expand(n, 1, *size).clone()
    return x, torch.arange(n)


def test_mixup_mixes_the_first_k_samples_with_their_partners():
    x, y = _constant_images(8)
    for seed in range(10):
        out, partner, w = mixup(x, y, 5, 0.2, torch.Generator().manual_seed(seed))
        assert 0 <= w <= 1 and partner.shape == (5,)
        assert torch.equal(out[5:], x[5:])
        torch.testing.assert_close(out[:5], (1 - w) * x[:5] + w * x[partner])


def test_cutmix_label_weight_is_the_pasted_box_area():
    x, y = _constant_images(8)
    weights = []
    for seed in range(40):
        out, partner, w = cutmix(x, y, 6, 1.0, torch.Generator().manual_seed(seed))
        assert torch.equal(out[6:], x[6:])
        weights.append(w)
        for i, j in enumerate(partner.tolist()):
            changed = out[i, 0] != x[i, 0]
            if j == i:
                assert not changed.any()
                continue
            assert (out[i, 0][changed] == x[j, 0, 0, 0]).all()  # the pasted pixels are the partner's
            assert changed.sum().item() == pytest.approx(w * 28 * 28)  # weight = area share
            rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
            if len(rows):  # one rectangle
                assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert min(weights) < 0.2 and max(weights) > 0.6  # Beta(1, 1) boxes of many sizes


@pytest.mark.parametrize(("trainer", "params"), [("mixup", {"alpha": 0.4}), ("cutmix", {"alpha": 1.0})])
def test_mixing_loss_weights_the_partners_labels(trainer, params):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = _mnist(16)
    t = get_plugin("trainer", trainer)
    p = t.Params(fraction=0.5, **params)
    loss = t.batch_loss(model, x, y, p, generator=torch.Generator().manual_seed(3), epoch=0, tally={})
    mix = mixup if trainer == "mixup" else cutmix
    xa, partner, w = mix(x, y, 8, params["alpha"], torch.Generator().manual_seed(3))
    ce = torch.nn.functional.cross_entropy
    logits = model(xa)
    per = ce(logits, y, reduction="none")
    expected = torch.cat([(1 - w) * per[:8] + w * ce(logits[:8], partner, reduction="none"), per[8:]]).mean()
    torch.testing.assert_close(loss, expected)


def test_rotate_geometry():
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(rotate(x, torch.zeros(3)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, torch.full((3,), 90.0)), torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, torch.full((3,), -90.0)), torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)
    wide = torch.rand(2, 1, 6, 10)
    torch.testing.assert_close(rotate(wide, torch.full((2,), 180.0)), torch.rot90(wide, 2, (-2, -1)),
                               atol=1e-5, rtol=0)


def test_random_rotation_rotates_the_first_k_digits_only():
    x, _ = _mnist(6)
    out = random_rotation(x, 3, 15.0, torch.Generator().manual_seed(0))
    assert torch.equal(out[3:], x[3:])
    assert all(not torch.equal(out[i], x[i]) for i in range(3))
    ink, ink_out = x[:3].sum((1, 2, 3)), out[:3].sum((1, 2, 3))
    assert ((ink_out - ink).abs() / ink < 0.1).all()  # a small rotation keeps the digit inside the frame
    assert out.min() >= 0 and out.max() <= 1
    # the angles are the generator's first draws, uniform in [-15, 15] degrees
    angles = (2 * torch.rand(3, generator=torch.Generator().manual_seed(0)) - 1) * 15
    assert (angles.abs() <= 15).all()
    torch.testing.assert_close(out[:3], rotate(x[:3], angles))


def test_gaussian_noise_on_the_first_k_images():
    x = torch.full((4, 1, 28, 28), 0.5)
    out = gaussian_noise(x, 2, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(out[2:], x[2:])
    d = out[:2] - x[:2]
    assert abs(d.std().item() - 0.1) < 0.01 and abs(d.mean().item()) < 0.01
    loud = gaussian_noise(x, 4, 1.0, torch.Generator().manual_seed(0))
    assert loud.min() == 0 and loud.max() == 1  # clamped to the pixel range


def test_params_defaults_and_strict_validation():
    params = {name: get_plugin("trainer", name).Params for name in AUGMENTS}
    assert (params["mixup"]().alpha, params["mixup"]().fraction) == (0.2, 1.0)
    assert (params["cutmix"]().alpha, params["cutmix"]().fraction) == (1.0, 1.0)
    assert (params["rotation"]().degrees, params["noise"]().sigma) == (15.0, 0.1)
    assert params["mixup"]().epochs == 1 and params["noise"]().batch_size == 128  # the standard params
    bad = [("mixup", {"alpha": -1}), ("mixup", {"alpha": 0}), ("cutmix", {"alpha": -1}),
           ("mixup", {"fraction": 1.5}), ("cutmix", {"fraction": -0.1}), ("rotation", {"degrees": -1}),
           ("rotation", {"degrees": 181}), ("noise", {"sigma": -0.1}), ("noise", {"sigma": 2}),
           ("noise", {"epochs": 0})] + [(name, {"bogus": 1}) for name in AUGMENTS] + [("rotation", {"alpha": 1})]
    for name, kwargs in bad:
        with pytest.raises(ValidationError):
            params[name](**kwargs)


def test_suite_rejects_bad_augmentation_params(write_suite):
    base = """
    [suite]
    name = "aug"
    [datasets.mnist]
    plugin = "mnist"
    [models.m]
    plugin = "mlp"
    dataset = "mnist"
    trainer = { plugin = "mixup", params = PARAMS }
    [evaluations.ev]
    dataset = "mnist"
    n = 10
    sources = ["m"]
    """
    assert load_suite(write_suite(base.replace("PARAMS", "{ alpha = 0.4 }"))).models["m"].trainer.params.alpha == 0.4
    with pytest.raises(SuiteError, match=r"models\.m\.trainer\.params\.alpha"):
        load_suite(write_suite(base.replace("PARAMS", "{ alpha = -1 }"), "b.toml"))
    with pytest.raises(SuiteError, match=r"models\.m\.trainer\.params\.degrees"):
        load_suite(write_suite(base.replace("PARAMS", "{ degrees = 10 }"), "c.toml"))


SUITE = """
[suite]
name = "augment"
seed = 4
[datasets.mnist]
plugin = "mnist"
""" + "".join(f"""
[models.{name}]
plugin = "mlp"
params = {{ widths = [32] }}
dataset = "mnist"
n_train = 2000
trainer = {{ plugin = "{name}", params = {{ epochs = 1, batch_size = 32, lr = 3e-3, fraction = 0.5 }} }}
""" for name in AUGMENTS) + f"""
[evaluations.test]
dataset = "mnist"
split = "test"
n = 300
sources = {json.dumps(AUGMENTS)}
[tables.t]
evaluation = "test"
rows = "model"
columns = [{{ label = "accuracy", attack = "clean", metric = "accuracy" }}]
"""


@pytest.mark.slow
def test_augmented_models_train_through_a_suite(write_suite, tmp_path):
    # one thread: on a busy 2-core machine, two threads per tiny MLP run several times slower
    out = rbench("run", str(write_suite(SUITE)), "--store", str(tmp_path / "store"), "--run-dir",
                 str(tmp_path / "run"), "-q", "--device", "cpu", env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    accuracy = {c["row"]: c["value"] for t in results["tables"] for c in t["cells"]}
    assert set(accuracy) == set(AUGMENTS)
    for name, value in accuracy.items():
        assert 80 <= value <= 100, (name, value)  # 2000 images, one epoch: an MLP reaches about 85-90%
