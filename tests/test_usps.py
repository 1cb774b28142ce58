"""The USPS dataset plugin: LIBSVM's test file read, checked and framed as MNIST digits."""

from __future__ import annotations

import bz2
import shutil

import numpy as np
import pytest
import torch
from support import SHARED_DATA, rbench

from rbench.errors import DataError
from rbench.plugins.datasets.usps import FILE, TEST_SIZE, Usps, UspsParams, parse_libsvm

needs_usps = pytest.mark.skipif(not (SHARED_DATA / "usps" / FILE).is_file(),
                                reason=f"USPS not found at {SHARED_DATA / 'usps'}")
#: the class sizes of USPS's standard test split (Hull 1994; LIBSVM's copy), digits 0-9
CLASS_SIZES = [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]


@pytest.fixture
def usps_data(monkeypatch):
    monkeypatch.setenv("RBENCH_DATA", str(SHARED_DATA))
    monkeypatch.setenv("RBENCH_OFFLINE", "1")


@needs_usps
@pytest.mark.parametrize("framing", ["mnist", "stretch"])
def test_the_test_split_loads_as_28x28_digits_with_usps_class_sizes(usps_data, framing):
    plugin = Usps()
    x, y = plugin.load("test", UspsParams(framing=framing))
    assert x.shape == (TEST_SIZE, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1 and np.isfinite(x).all()
    assert np.bincount(y).tolist() == CLASS_SIZES  # labels 1-10 read as the digits 0-9
    assert plugin.size("test", UspsParams(framing=framing)) == TEST_SIZE and plugin.splits == ("test",)
    x[0] = 0  # a copy: the cached split is not written through
    again, _ = plugin.load("test", UspsParams(framing=framing))
    assert again[0].any()


@needs_usps
def test_mnist_framing_fits_each_digit_into_20_pixels_centred_by_mass(usps_data):
    x, _ = Usps().load("test", UspsParams())
    images = x[:, 0]
    for image in images[::50]:
        rows, cols = np.nonzero(image > 0.05)
        assert max(np.ptp(rows) + 1, np.ptp(cols) + 1) == 20, "the longer side of the ink box is MNIST's 20 pixels"
        assert rows.min() >= 0 and rows.max() <= 27 and cols.min() >= 0 and cols.max() <= 27
    grid = np.arange(28)
    mass = images.sum(axis=(1, 2))
    centre_row = (images.sum(axis=2) * grid).sum(axis=1) / mass
    centre_col = (images.sum(axis=1) * grid).sum(axis=1) / mass
    # where MNIST's own digits have theirs: within half a pixel of 14 (a whole-pixel shift), 14 on average
    assert np.abs(centre_row - 14).max() <= 0.5 and np.abs(centre_col - 14).max() <= 0.5
    assert abs(centre_row.mean() - 14) < 0.05 and abs(centre_col.mean() - 14) < 0.05


@needs_usps
def test_an_mnist_model_reads_usps_digits_framed_as_mnist_far_better_than_stretched(usps_data):
    """The labels' mapping and the framing, shown by a model that never saw USPS: a label off by one would give
    about 1% here, a frame unlike MNIST's far less than the MNIST framing."""
    from rbench.testing import reference_model

    model = reference_model()
    accuracy = {}
    for framing in ("mnist", "stretch"):
        x, y = Usps().load("test", UspsParams(framing=framing))
        with torch.no_grad():
            predicted = model(torch.from_numpy(x)).argmax(1).numpy()
        accuracy[framing] = (predicted == y).mean()
    assert accuracy["mnist"] > 0.6 and accuracy["stretch"] < accuracy["mnist"] - 0.2, accuracy


def test_libsvm_parse_fills_omitted_features_and_names_a_bad_line(tmp_path):
    good = tmp_path / "good.bz2"
    good.write_bytes(bz2.compress(b"3 1:0.5 4:-1\n1 2:1\n"))
    values, labels = parse_libsvm(good, 4)
    assert labels.tolist() == [3, 1]
    assert values.tolist() == [[0.5, 0, 0, -1], [0, 1, 0, 0]]
    for body, problem in ((b"1 1:0.5\n2 5:0.1\n", "line 2: feature index 5 outside 1-4"),
                          (b"1 1:0.5\nx 1:0\n", "line 2"), (b"1 1=0.5\n", "line 1")):
        bad = tmp_path / "bad.bz2"
        bad.write_bytes(bz2.compress(body))
        with pytest.raises(DataError, match=f"LIBSVM file {bad}, {problem}"):
            parse_libsvm(bad, 4)
    plain = tmp_path / "plain.bz2"
    plain.write_bytes(b"1 1:0.5\n")  # not bzip2
    with pytest.raises(DataError, match=f"cannot read LIBSVM file {plain}"):
        parse_libsvm(plain, 4)


SUITE = """
[suite]
name = "shift"

[datasets.mnist]
plugin = "mnist"

[datasets.usps]
plugin = "usps"

[models.mlp]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 100
trainer = { params = { epochs = 1 } }

[attacks.fgsm]
plugin = "fgsm"
params = { eps = 0.1 }

[evaluations.ev]
dataset = "usps"
n = 20
sources = ["mlp"]
attacks = ["fgsm"]

[tables.t]
evaluation = "ev"
rows = "attack"
columns = "model"
metric = "error"
"""


@needs_usps
def test_a_suite_evaluates_on_usps_and_a_corrupt_copy_stops_it_before_any_work(tmp_path):
    """Checksummed like MNIST: a copy that does not match its SHA-256 is one line, exit 2, nothing computed; the
    genuine file runs, and the report names the images."""
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mnist", data / "mnist", symlinks=True)
    (data / "usps").mkdir()
    raw = bytearray((SHARED_DATA / "usps" / FILE).read_bytes())
    raw[-100] ^= 1
    (data / "usps" / FILE).write_bytes(bytes(raw))
    suite = tmp_path / "shift.toml"
    suite.write_text(SUITE)
    env = {"RBENCH_DATA": str(data), "RBENCH_OFFLINE": "1"}
    store = tmp_path / "store"
    args = ("run", str(suite), "--store", str(store), "--run-dir", str(tmp_path / "run"), "-q")
    out = rbench(*args, env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"data file {data / 'usps' / FILE} is corrupt" in out.stderr
    assert not [p for p in store.rglob("*") if p.is_file() and "objects" in p.parts]
    shutil.copy(SHARED_DATA / "usps" / FILE, data / "usps" / FILE)
    out = rbench(*args, env=env)
    assert out.returncode == 0, out.stderr
    assert 'ev: usps({"framing": "mnist"}) test, 20 images' in (tmp_path / "run" / "tables.md").read_text()


def test_a_suite_asking_for_usps_training_images_is_refused_before_any_work(tmp_path):
    """Only the test split is offered: training on USPS, or evaluating on its train split, is a validation error."""
    for old, new, field in (('dataset = "mnist"\nn_train', 'dataset = "usps"\nn_train', "models.mlp.split"),
                            ('dataset = "usps"\nn = 20', 'dataset = "usps"\nsplit = "train"\nn = 20',
                             "evaluations.ev.split")):
        suite = tmp_path / "bad.toml"
        suite.write_text(SUITE.replace(old, new))
        out = rbench("validate", str(suite))
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert f"{suite}: {field}: dataset 'usps' has no split 'train'; known: test" in out.stderr
