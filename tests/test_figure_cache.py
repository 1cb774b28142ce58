"""The figure cache (rbench.report.figure_cache): a figure drawn from the same inputs by the same code is copied,
anything else is drawn; a cached file that fails its checksum is never copied."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rbench.report import figure_cache
from rbench.report.figure_cache import CACHE_VARIABLE, NotDigestible, inputs_digest, save_figure

DRAWN: list[tuple] = []


def bars(values, title="t"):
    """A small figure, counting its builds."""
    from matplotlib.figure import Figure

    DRAWN.append((tuple(np.asarray(values).tolist()), title))
    fig = Figure(figsize=(2, 2), dpi=50)
    fig.subplots().bar(range(len(values)), values)
    fig.suptitle(title)
    return fig


@pytest.fixture(autouse=True)
def _sources_unchanged(monkeypatch):
    """The figure cache keys nothing while rbench's files are newer than the process (figure_cache._started):
    these tests must not fail for an edit made while they run, except the one about it, which sets its own."""
    monkeypatch.setattr(figure_cache, "_started", lambda: 2**62)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_VARIABLE, str(folder))
    DRAWN.clear()
    return folder


def test_the_same_inputs_are_copied_and_other_inputs_drawn(cache, tmp_path):
    first = save_figure(tmp_path / "a.png", bars, np.array([1.0, 2.0]), title="x")
    second = save_figure(tmp_path / "b.png", bars, np.array([1.0, 2.0]), title="x")
    assert len(DRAWN) == 1 and first.read_bytes() == second.read_bytes()
    assert first.read_bytes().startswith(b"\x89PNG")
    save_figure(tmp_path / "c.png", bars, np.array([1.0, 2.5]), title="x")
    save_figure(tmp_path / "d.png", bars, np.array([1.0, 2.0]), title="y")
    save_figure(tmp_path / "e.png", bars, np.array([1.0, 2.0], dtype=np.float32), title="x")
    assert len(DRAWN) == 4
    assert len(list(cache.glob("*.png"))) == 4 == len(list(cache.glob("*.sha256")))


def test_a_tampered_or_half_kept_figure_is_drawn_again_and_replaced(cache, tmp_path):
    good = save_figure(tmp_path / "a.png", bars, [3.0, 1.0]).read_bytes()
    (kept,) = cache.glob("*.png")
    kept.write_bytes(good[:-20] + b"\0" * 20)  # its checksum no longer matches
    assert save_figure(tmp_path / "b.png", bars, [3.0, 1.0]).read_bytes() == good
    assert len(DRAWN) == 2 and kept.read_bytes() == good
    kept.with_suffix(".sha256").unlink()  # a figure without its checksum (a writer stopped between the two)
    assert save_figure(tmp_path / "c.png", bars, [3.0, 1.0]).read_bytes() == good
    assert len(DRAWN) == 3
    save_figure(tmp_path / "d.png", bars, [3.0, 1.0])
    assert len(DRAWN) == 3


def test_without_a_cache_folder_every_figure_is_drawn(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_VARIABLE, raising=False)
    DRAWN.clear()
    save_figure(tmp_path / "a.png", bars, [1.0])
    save_figure(tmp_path / "b.png", bars, [1.0])
    assert len(DRAWN) == 2 and (tmp_path / "b.png").is_file()


def test_a_cache_that_cannot_be_written_costs_only_the_drawing(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_VARIABLE, str(blocker / "cache"))
    DRAWN.clear()
    save_figure(tmp_path / "a.png", bars, [1.0])
    save_figure(tmp_path / "b.png", bars, [1.0])
    assert len(DRAWN) == 2 and (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_the_folder_keeps_the_figures_used_last(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(figure_cache, "MAX_FIGURES", 2)
    for i, value in enumerate([1.0, 2.0]):
        save_figure(tmp_path / f"{i}.png", bars, [value])
        for path in cache.glob("*.png"):  # file times a second apart, whatever the file system's resolution
            os.utime(path, (path.stat().st_mtime - 1, path.stat().st_mtime - 1))
    save_figure(tmp_path / "again.png", bars, [1.0])  # a hit: the first figure is now the one used last
    save_figure(tmp_path / "third.png", bars, [3.0])
    assert len(list(cache.glob("*.png"))) == 2 and len(list(cache.glob("*.sha256"))) == 2
    DRAWN.clear()
    save_figure(tmp_path / "x.png", bars, [1.0])
    save_figure(tmp_path / "y.png", bars, [3.0])
    assert DRAWN == []
    save_figure(tmp_path / "z.png", bars, [2.0])  # the one trimmed
    assert DRAWN == [((2.0,), "t")]


def test_an_input_it_cannot_walk_is_drawn_not_cached(cache, tmp_path):
    save_figure(tmp_path / "a.png", bars, [1.0], title=object())  # type: ignore[arg-type]
    save_figure(tmp_path / "b.png", bars, [1.0], title=object())  # type: ignore[arg-type]
    assert len(DRAWN) == 2 and not cache.exists()


@dataclass
class Point:
    x: float
    label: str


def test_the_digest_tells_apart_what_a_figure_shows():
    base = inputs_digest([Point(1.0, "a")], {("r", "c"): np.arange(3.0)})
    assert base == inputs_digest([Point(1.0, "a")], {("r", "c"): np.arange(3.0)})
    others = [
        inputs_digest([Point(1.0, "b")], {("r", "c"): np.arange(3.0)}),
        inputs_digest([Point(1.5, "a")], {("r", "c"): np.arange(3.0)}),
        inputs_digest([Point(1.0, "a")], {("r", "c"): np.arange(3.0).reshape(1, 3)}),
        inputs_digest([Point(1.0, "a")], {("r", "c"): np.arange(3)}),
        inputs_digest([Point(1.0, "a")], {("c", "r"): np.arange(3.0)}),
        inputs_digest((Point(1.0, "a"),), {("r", "c"): np.arange(3.0)}),
        inputs_digest(["1.0", "a"], {}),
        inputs_digest([1, "a"], {}),
    ]
    assert len({base, *others}) == len(others) + 1
    assert inputs_digest({"a": 1, "b": 2}) != inputs_digest({"b": 2, "a": 1})  # the order a legend is drawn in
    with pytest.raises(NotDigestible):
        inputs_digest(np.array([object()]))


def test_the_key_follows_the_code_and_matplotlib_settings(monkeypatch):
    import matplotlib

    key = figure_cache.figure_key(bars, ([1.0],), {})
    with monkeypatch.context() as patched:
        patched.setitem(matplotlib.rcParams, "lines.linewidth", 7.0)
        assert figure_cache.figure_key(bars, ([1.0],), {}) != key
    assert figure_cache.figure_key(bars, ([1.0],), {}) == key is not None
    monkeypatch.setattr(figure_cache, "_code_digest", lambda extra: "another version")
    assert figure_cache.figure_key(bars, ([1.0],), {}) != key


def test_the_key_is_the_same_in_another_process():
    """Nothing in a key may depend on the process (an object's address, string hashing's seed): a warm run
    would find none of its figures."""
    import subprocess
    import sys

    code = ("from rbench.report.figures import draw_heatmap; from rbench.report import figure_cache; "
            "figure_cache._started = lambda: 2**62; import numpy as np; "
            "print(figure_cache.figure_key(draw_heatmap, ({'a': 2}, np.eye(2)), {}))")
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(keys) == 1 and len(keys.pop().strip()) == 64


def test_the_code_digest_reads_the_drawing_plugin_s_own_files():
    """rbench.plugins lives in its own folder in an editable install: its reporters' files count too."""
    import rbench.plugins.reporters.reliability as reliability

    files = figure_cache._source_files(reliability.__name__)
    assert Path(reliability.__file__).resolve() in files
    assert Path(figure_cache.__file__).resolve() in figure_cache._source_files(figure_cache.__name__)


def test_arrays_that_look_alike_get_other_digests_and_subclasses_none():
    assert inputs_digest(np.zeros(3)) != inputs_digest(np.zeros(3, dtype=np.int64))  # same bytes
    assert inputs_digest(np.array(5.0)) != inputs_digest(np.array([5.0]))
    pair = np.dtype([("a", "<i4"), ("b", "<f4")])
    other = np.dtype([("b", "<i4"), ("a", "<f4")])
    assert inputs_digest(np.zeros(2, dtype=pair)) != inputs_digest(np.zeros(2, dtype=other))
    with pytest.raises(NotDigestible):
        inputs_digest(np.ma.masked_array([1.0, 2.0], mask=[True, False]))


class Bins:
    def __init__(self, bins: int):
        self.bins = bins

    def draw(self, values):
        DRAWN.append(("method", self.bins))
        return bars(np.histogram(values, bins=self.bins)[0])


def test_only_module_level_functions_are_cached(cache, tmp_path):
    """A method, a closure, a lambda or a partial carries state the key would not see: drawn every time."""
    import functools

    def closure(values):
        return bars(values, title="closure")

    for i, build in enumerate([Bins(3).draw, Bins(30).draw, closure, lambda v: bars(v), functools.partial(bars)]):
        save_figure(tmp_path / f"{i}.png", build, [1.0, 2.0, 2.5])
    assert sum(1 for d in DRAWN if d[0] != "method") == 5 and not cache.exists()
    assert (tmp_path / "0.png").read_bytes() != (tmp_path / "1.png").read_bytes()  # not one copied for the other
    assert figure_cache.cacheable(bars) and not figure_cache.cacheable(Bins(3).draw)


def tensor_bars(values):
    return bars(values.float().numpy())


def test_a_key_that_cannot_be_computed_costs_only_the_drawing(cache, tmp_path):
    import torch

    save_figure(tmp_path / "a.png", tensor_bars, torch.ones(2, dtype=torch.bfloat16))  # .numpy() refuses it
    assert len(DRAWN) == 1 and (tmp_path / "a.png").is_file() and not cache.exists()


def test_the_key_follows_a_plugin_s_own_files_and_none_changed_during_the_process(tmp_path, monkeypatch):
    """A build function's package files are in the key; a file changed after the process started (the code
    drawing may be older than the file) means no key at all."""
    import importlib
    import sys

    package = tmp_path / "figpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "draw.py").write_text("def build(values):\n    return values\n")
    (package / "helper.py").write_text("WIDTH = 1\n")
    (package / ".#draw.py").symlink_to(tmp_path / "gone")  # an editor's lock: a link to nothing
    monkeypatch.syspath_prepend(str(tmp_path))
    build = importlib.import_module("figpkg.draw").build
    try:
        key = figure_cache.figure_key(build, ([1.0],), {})  # every file older than the pinned start
        assert key is not None
        (package / "helper.py").write_text("WIDTH = 2\n")  # not imported by draw.py: still in the key
        figure_cache._digest_files.cache_clear()
        assert figure_cache.figure_key(build, ([1.0],), {}) not in (None, key)
        started = time.time_ns()
        monkeypatch.setattr(figure_cache, "_started", lambda: started)
        time.sleep(0.01)
        (package / "helper.py").write_text("WIDTH = 3\n")  # changed after this process "started"
        assert figure_cache.figure_key(build, ([1.0],), {}) is None
        (package / "helper.py").write_text("WIDTH = 1\n")
        os.utime(package / "helper.py", (1_000_000_000, 1_000_000_000))  # mtime set back: its ctime still tells
        assert figure_cache.figure_key(build, ([1.0],), {}) is None
    finally:
        figure_cache._digest_files.cache_clear()
        figure_cache._source_files.cache_clear()
        for name in ("figpkg.draw", "figpkg"):
            sys.modules.pop(name, None)


def test_a_function_of_a_module_without_a_file_is_drawn_every_time(cache, tmp_path, monkeypatch):
    """``python -c`` or a notebook: its code is in no file, so not in the key."""
    import sys
    import types

    module = types.ModuleType("fileless")
    exec("def build(values):\n    from test_figure_cache import bars\n    return bars(values)\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "fileless", module)
    assert figure_cache.figure_key(module.build, ([1.0],), {}) is None
    save_figure(tmp_path / "a.png", module.build, [1.0])
    save_figure(tmp_path / "b.png", module.build, [1.0])
    assert len(DRAWN) == 2 and not cache.exists()


def test_trimming_removes_lone_checksums_and_old_temporary_files(cache, tmp_path):
    save_figure(tmp_path / "a.png", bars, [1.0])
    (cache / f"{'0' * 64}.sha256").write_text("lone")
    stale, fresh = cache / "x.png.tmp-0123abcd", cache / "y.png.tmp-4567ef01"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    save_figure(tmp_path / "b.png", bars, [2.0])  # a miss: the folder is trimmed
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 5 and fresh.name in names and stale.name not in names
    assert not (cache / f"{'0' * 64}.sha256").exists()


_KEY_WITHOUT_MATPLOTLIB = (
    "import sys; from rbench.report.figures import draw_heatmap; from rbench.report import figure_cache; "
    "figure_cache._started = lambda: 2**62; import numpy as np; "
    "key = figure_cache.figure_key(draw_heatmap, ({'a': 2}, np.eye(2)), {}); "
    "imported = 'matplotlib' in sys.modules; import matplotlib; "
    "print(key, imported, figure_cache.figure_key(draw_heatmap, ({'a': 2}, np.eye(2)), {}) == key)")


def _in_process(code: str, cwd: Path, **env: str) -> str:
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("MATPLOTLIBRC", "MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    clean["MPLCONFIGDIR"] = str(cwd.parent / "matplotlib")  # its font cache, not the user's
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd,
                          env={**clean, **env}).stdout.strip()


def test_a_key_made_without_matplotlib_follows_its_rc_files(tmp_path):
    """A process that has not imported matplotlib keys its figures by the rc files matplotlib would read, without
    importing it: a matplotlibrc appearing in the working folder, edited, or named by MATPLOTLIBRC changes the key
    (a figure drawn under other settings is never served)."""
    folder = tmp_path / "work"
    folder.mkdir()
    first, imported, same_once_imported = _in_process(_KEY_WITHOUT_MATPLOTLIB, folder).split()
    assert imported == "False" and len(first) == 64 and same_once_imported == "True"
    assert _in_process(_KEY_WITHOUT_MATPLOTLIB, folder).split()[0] == first
    (folder / "matplotlibrc").write_text("lines.linewidth: 3\n")
    local = _in_process(_KEY_WITHOUT_MATPLOTLIB, folder).split()[0]
    (folder / "matplotlibrc").write_text("lines.linewidth: 4\n")
    edited = _in_process(_KEY_WITHOUT_MATPLOTLIB, folder).split()[0]
    (folder / "matplotlibrc").unlink()
    named = tmp_path / "named_rc"
    named.write_text("font.size: 20\n")
    by_variable = _in_process(_KEY_WITHOUT_MATPLOTLIB, folder, MATPLOTLIBRC=str(named)).split()[0]
    assert len({first, local, edited, by_variable}) == 4
    assert _in_process(_KEY_WITHOUT_MATPLOTLIB, folder).split()[0] == first
    # where the configuration folder lies is not in the key (a store's, copied elsewhere), what it holds is
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        assert _in_process(_KEY_WITHOUT_MATPLOTLIB, folder, MPLCONFIGDIR=str(tmp_path / name)).split()[0] == first
    (tmp_path / "two" / "matplotlibrc").write_text("font.size: 20\n")
    assert _in_process(_KEY_WITHOUT_MATPLOTLIB, folder, MPLCONFIGDIR=str(tmp_path / "two")).split()[0] not in (
        first, by_variable)


@pytest.mark.parametrize("where", ["working folder", "MATPLOTLIBRC file", "MATPLOTLIBRC folder", "MPLCONFIGDIR",
                                   "XDG_CONFIG_HOME", "HOME", "installed defaults"])
def test_the_rc_candidates_hold_the_file_matplotlib_reads(tmp_path, where):
    """matplotlib's own choice of rc file (matplotlib_fname) is always among the files a key without matplotlib
    hashes, wherever the user put theirs."""
    work, rc = tmp_path / "work", tmp_path / "rc"
    work.mkdir()
    rc.mkdir()
    env = {"HOME": str(tmp_path / "home")}
    if where in ("XDG_CONFIG_HOME", "HOME"):
        env["MPLCONFIGDIR"] = ""  # matplotlib's unset (it would come first); its font cache goes to HOME
    if where == "working folder":
        (work / "matplotlibrc").write_text("font.size: 9\n")
    elif where == "MATPLOTLIBRC file":
        (rc / "custom").write_text("font.size: 9\n")
        env["MATPLOTLIBRC"] = str(rc / "custom")
    elif where == "MATPLOTLIBRC folder":
        (rc / "matplotlibrc").write_text("font.size: 9\n")
        env["MATPLOTLIBRC"] = str(rc)
    elif where == "MPLCONFIGDIR":
        (rc / "matplotlibrc").write_text("font.size: 9\n")
        env["MPLCONFIGDIR"] = str(rc)
    elif where == "XDG_CONFIG_HOME":
        (rc / "matplotlib").mkdir()
        (rc / "matplotlib" / "matplotlibrc").write_text("font.size: 9\n")
        env["XDG_CONFIG_HOME"] = str(rc)
    elif where == "HOME":
        (tmp_path / "home" / ".config" / "matplotlib").mkdir(parents=True)
        (tmp_path / "home" / ".config" / "matplotlib" / "matplotlibrc").write_text("font.size: 9\n")
    code = ("from rbench.report import figure_cache; hashed = [str(p) for _, p in figure_cache.rc_candidates()]; "
            "import matplotlib, os; chosen = os.path.abspath(matplotlib.matplotlib_fname()); "
            "print(chosen in hashed, chosen, matplotlib.rcParams['font.size'])")
    found, chosen, size = _in_process(code, work, **env).split()
    assert found == "True", chosen
    assert (size == "9.0") == (where != "installed defaults"), (chosen, size)


def test_an_rc_file_changed_during_the_run_keys_nothing(tmp_path, monkeypatch):
    """A matplotlib imported before an rc file was edited holds the old settings: the file's digest would file
    a figure drawn with them under the new ones."""
    monkeypatch.chdir(tmp_path)
    assert figure_cache.figure_key(bars, ([1.0],), {}) is not None
    (tmp_path / "matplotlibrc").write_text("lines.linewidth: 3\n")
    monkeypatch.setattr(figure_cache, "_started", lambda: time.time_ns() - 10**9)
    assert figure_cache.figure_key(bars, ([1.0],), {}) is None
