"""The outlier exposure trainer: its loss term, its params' validation, and that it improves OOD detection of
Fashion-MNIST (test split) by an MNIST MLP exposed to Fashion-MNIST's train split (real data, small subsets)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rbench.errors import SuiteError
from rbench.model import TrainData
from rbench.plugins import get_plugin
from rbench.plugins.metrics.calibration import anomaly_scores, auroc
from rbench.plugins.trainers.outlier_exposure import uniform_cross_entropy
from rbench.suite import load_suite

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _slice(dataset: str, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    plugin = get_plugin("dataset", dataset)
    x, y = plugin.load(split, plugin.Params())
    return torch.from_numpy(x[:n]), torch.from_numpy(y[:n])


def _train(trainer: str, x: torch.Tensor, y: torch.Tensor, **params) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = get_plugin("model", "mlp").build(get_plugin("model", "mlp").Params(widths=[64]))
    plugin = get_plugin("trainer", trainer)
    stats = plugin.train(model, TrainData(x, y), plugin.Params(**params), generator=torch.Generator().manual_seed(0),
                         device=torch.device("cpu"))
    return model.eval().requires_grad_(False), stats


def test_uniform_cross_entropy():
    assert float(uniform_cross_entropy(torch.zeros(3, 10))) == pytest.approx(math.log(10))
    assert float(uniform_cross_entropy(torch.tensor([[20.0, 0, 0]]))) > math.log(3)


def test_outlier_exposure_raises_the_msp_auroc():
    x, y = _slice("mnist", "train", 2000)
    common = {"epochs": 2, "lr": 3e-3, "batch_size": 64}
    standard, _ = _train("standard", x, y, **common)
    exposed, stats = _train("outlier_exposure", x, y, **common, n_outliers=2000)
    assert stats["n_outliers"] == 2000 and stats["final_epoch_outlier_loss"] < math.log(10) + 0.5
    x_in, y_in = _slice("mnist", "test", 500)
    x_out, _ = _slice("fashion-mnist", "test", 500)  # disjoint from the train split the outliers came from

    def msp_auroc(model):
        return auroc(anomaly_scores(model(x_in).double().numpy(), "msp"),
                     anomaly_scores(model(x_out).double().numpy(), "msp"))

    before, after = msp_auroc(standard), msp_auroc(exposed)
    assert after > before + 0.05 and after > 0.9, (before, after)
    assert (exposed(x_in).argmax(1) == y_in).float().mean() > 0.8  # still a classifier


def test_outlier_sampling_is_seeded():
    x, y = _slice("mnist", "train", 256)
    a, _ = _train("outlier_exposure", x, y, batch_size=64, n_outliers=100, outlier_batch_size=48)
    b, _ = _train("outlier_exposure", x, y, batch_size=64, n_outliers=100, outlier_batch_size=48)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


SUITE = """
[suite]
name = "oe"
[datasets.mnist]
plugin = "mnist"
[models.net]
plugin = "mlp"
dataset = "mnist"
trainer = {{ plugin = "outlier_exposure", params = {params} }}
[evaluations.test]
dataset = "mnist"
sources = ["net"]
[tables.t]
evaluation = "test"
rows = "model"
columns = "metric"
metrics = ["accuracy"]
where = {{ attack = "clean" }}
"""


@pytest.mark.parametrize(("params", "problem"), [
    ('{ outliers = "fashon-mnist" }', ["models.net.trainer.params.outliers", "fashion-mnist"]),
    ('{ outliers = "mnist", outlier_split = "val" }', ["outlier_split", "'val'", "train, test"]),
    ("{ coef = -1.0 }", ["models.net.trainer.params.coef"]),
    ("{ n_outliers = 0 }", ["models.net.trainer.params.n_outliers"]),
])
def test_params_are_validated_with_the_suite(write_suite, params, problem):
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(SUITE.format(params=params)))
    assert all(p in str(info.value) for p in problem), str(info.value)


def test_defaults_and_a_valid_suite(write_suite):
    p = get_plugin("trainer", "outlier_exposure").Params()
    assert (p.coef, p.outliers, p.outlier_split, p.n_outliers, p.outlier_batch_size) == (
        0.5, "fashion-mnist", "train", None, None)
    suite = load_suite(write_suite(SUITE.format(params='{ coef = 0.5, epochs = 2, optimizer = "sgd" }')))
    assert suite.models["net"].trainer.params.coef == 0.5
    assert np.isclose(suite.models["net"].trainer.params.lr, 1e-3)


def test_missing_outlier_data_stops_the_run_before_any_work(tmp_path):
    """The outliers are data the trainer loads itself (``Trainer.extra_data``): a run checks them up front too."""
    import shutil

    from support import SHARED_DATA, rbench

    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mnist", data / "mnist")  # MNIST only: no Fashion-MNIST files
    suite = tmp_path / "oe.toml"
    suite.write_text('[suite]\nname = "oe"\n[datasets.mnist]\nplugin = "mnist"\n'
                     '[models.net]\nplugin = "mlp"\nparams = { widths = [8] }\ndataset = "mnist"\nn_train = 100\n'
                     'trainer = { plugin = "outlier_exposure", params = { outliers = "fashion-mnist" } }\n'
                     '[evaluations.test]\ndataset = "mnist"\nn = 10\nsources = ["net"]\n'
                     '[tables.t]\nevaluation = "test"\nrows = "model"\ncolumns = "attack"\nmetric = "error"\n')
    store = tmp_path / "store"
    out = rbench("run", str(suite), "--store", str(store), env={"RBENCH_DATA": str(data)})
    assert out.returncode == 2 and "fashion" in out.stderr.lower() and out.stderr.count("\n") == 1, out.stderr
    assert not list(store.glob("objects/*/*"))  # nothing was computed


def test_outliers_with_a_fingerprint_enter_the_checkpoint_key_and_are_checked_when_trained(tmp_path, monkeypatch,
                                                                                             write_suite):
    """Outliers from a dataset whose files are the user's own (notMNIST) are keyed by their content: relabelled or
    replaced files make another checkpoint (the old one is not served), and a job planned on other content refuses
    to train. Fashion-MNIST (pinned by its registry) adds nothing to the key."""
    import gzip
    import shutil

    from support import SHARED_DATA

    from rbench import data
    from rbench.errors import DataError
    from rbench.jobs import run_train
    from rbench.model import no_progress
    from rbench.plan import build_plan
    from rbench.store import Store

    for name in ("mnist", "notmnist"):
        shutil.copytree(SHARED_DATA / name, tmp_path / "data" / name)
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "data"))
    data.load_split.cache_clear()

    def train_job(outliers: str, split: str):
        suite = load_suite(write_suite(SUITE.format(
            params=f'{{ outliers = "{outliers}", outlier_split = "{split}", epochs = 1, n_outliers = 50 }}')))
        return next(job for job in build_plan(suite).jobs.values() if job.spec.kind == "train")

    assert "extra_content" not in train_job("fashion-mnist", "train").spec.to_dict()
    before = train_job("notmnist", "test")
    assert before.spec.extra_content == (("notmnist", "test", data.content_digest("notmnist", "test")),)

    labels = tmp_path / "data" / "notmnist" / "t10k-labels-idx1-ubyte.gz"
    images = tmp_path / "data" / "notmnist" / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(images.read_bytes()))
    raw[16:] = bytes(255 - b for b in raw[16:])  # every outlier image inverted
    images.write_bytes(gzip.compress(bytes(raw)))
    assert labels.exists() and train_job("notmnist", "test").key != before.key
    with pytest.raises(DataError, match="notmnist test data changed since the job was planned"):
        run_train(before, Store(tmp_path / "store"), torch.device("cpu"), no_progress)
    data.load_split.cache_clear()


def test_outliers_are_checked_against_the_dataset_contract(monkeypatch):
    """The trainer loaded its outliers with the dataset plugin's own ``load``, past the engine's check of every
    split: a third-party dataset serving 0-255 pixels was trained on silently (an audit). It reads them through
    ``rbench.inputs.checked_split`` now."""
    from rbench.errors import PluginContractError
    from rbench.plugins.trainers.outlier_exposure import load_outliers

    plugin = get_plugin("dataset", "fashion-mnist")
    real_load = type(plugin).load

    def bytes_load(self, split, params):
        x, y = real_load(self, split, params)
        return x * 255, y

    monkeypatch.setattr(type(plugin), "load", bytes_load)
    params = get_plugin("trainer", "outlier_exposure").Params(n_outliers=10)
    with pytest.raises(PluginContractError, match="dataset 'fashion-mnist' loaded a train split that breaks the "
                       "dataset contract"):
        load_outliers(params, torch.Generator().manual_seed(0))
    monkeypatch.setattr(type(plugin), "load", real_load)
    outliers = load_outliers(params, torch.Generator().manual_seed(0))
    assert outliers.shape == (10, 1, 28, 28) and outliers.dtype == torch.float32 and float(outliers.max()) <= 1.0
