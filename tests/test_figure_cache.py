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


_KEY = ("import sys; from rbench.report.figures import draw_heatmap; from rbench.report import figure_cache; "
        "figure_cache._started = lambda: 2**62; import numpy as np; "
        "key = lambda: figure_cache.figure_key(draw_heatmap, ({'a': 2}, np.eye(2)), {}); first = key(); "
        "imported = 'matplotlib' in sys.modules; import matplotlib; "
        "print(first, imported, key() == first, matplotlib.rcParams['lines.linewidth'])")


def _in_process(code: str, cwd: Path, **env: str) -> list[str]:
    """``code``'s printed words, run by Python in ``cwd`` with ``env`` over this one's (MPLCONFIGDIR at an empty
    folder beside ``cwd`` unless given: matplotlib's font cache is not the user's)."""
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("MATPLOTLIBRC", "MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    clean["MPLCONFIGDIR"] = str(cwd.parent / "matplotlib")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd,
                          env={**clean, **env}).stdout.split()


def test_a_key_made_without_matplotlib_is_its_defaults_and_any_rc_file_imports_it(tmp_path):
    """With no rc file anywhere matplotlib looks, a key is made without importing it, and is the key it makes once
    imported; an rc file (in the working folder, named by MATPLOTLIBRC, in a configuration folder) imports it and
    keys its settings, whatever the place; a configuration folder's place is not in the key (a store's, copied)."""
    folder = tmp_path / "work"
    folder.mkdir()
    first, imported, same, width = _in_process(_KEY, folder)
    assert imported == "False" and len(first) == 64 and same == "True" and width == "1.5"
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        assert _in_process(_KEY, folder, MPLCONFIGDIR=str(tmp_path / name))[:2] == [first, "False"]
    keys = {}
    (folder / "matplotlibrc").write_text("lines.linewidth: 3\n")
    keys["local"], imported, same, width = _in_process(_KEY, folder)
    assert imported == "True" and same == "True" and width == "3.0"
    (folder / "matplotlibrc").write_text("lines.linewidth: 4\n")
    keys["edited"] = _in_process(_KEY, folder)[0]
    (folder / "matplotlibrc").write_text("lines.linewidth: 1.5\n")  # the default, written out: drawn the same
    assert _in_process(_KEY, folder)[0] == first
    (folder / "matplotlibrc").unlink()
    (tmp_path / "named").write_text("lines.linewidth: 5\n")
    keys["named"] = _in_process(_KEY, folder, MATPLOTLIBRC=str(tmp_path / "named"))[0]
    (tmp_path / "two" / "matplotlibrc").write_text("lines.linewidth: 5\n")
    assert _in_process(_KEY, folder, MPLCONFIGDIR=str(tmp_path / "two"))[0] == keys["named"]  # same settings
    assert len({first, *keys.values()}) == 4


def test_a_configuration_folder_that_hides_another_is_keyed_by_what_matplotlib_reads(tmp_path):
    """MPLCONFIGDIR (or XDG_CONFIG_HOME) hides ~/.config/matplotlib/matplotlibrc: the same files, other settings,
    other keys (a review found both once keyed as one)."""
    folder, home, empty = tmp_path / "work", tmp_path / "home", tmp_path / "empty"
    for path in (folder, home / ".config" / "matplotlib", empty):
        path.mkdir(parents=True)
    (home / ".config" / "matplotlib" / "matplotlibrc").write_text("lines.linewidth: 7\n")
    read, _, _, width = _in_process(_KEY, folder, HOME=str(home), MPLCONFIGDIR="")
    assert width == "7.0"
    hidden, _, _, width = _in_process(_KEY, folder, HOME=str(home), MPLCONFIGDIR=str(empty))
    assert width == "1.5" and hidden != read
    assert _in_process(_KEY, folder, HOME=str(home), MPLCONFIGDIR="", XDG_CONFIG_HOME=str(empty))[0] == hidden


def test_settings_changed_in_the_process_are_keyed_also_in_place_and_after_a_chdir(tmp_path, monkeypatch):
    """rcParamsOrig and rcParamsDefault share their lists with rcParams: a change in place is still a change; a
    matplotlib imported under a working folder's rc file keeps those settings after leaving the folder."""
    import matplotlib

    defaults = figure_cache.figure_key(bars, ([1.0],), {})
    size = matplotlib.rcParams["figure.figsize"]
    before = list(size)
    try:
        size[0] = 12.0
        assert figure_cache.figure_key(bars, ([1.0],), {}) not in (defaults, None)
    finally:
        size[:] = before
    assert figure_cache.figure_key(bars, ([1.0],), {}) == defaults
    first, second = tmp_path / "a", tmp_path / "b"
    for path in (first, second):
        path.mkdir()
    (first / "matplotlibrc").write_text("lines.linewidth: 9\n")
    code = ("import os, sys; import matplotlib; os.chdir(sys.argv[1]); from rbench.report.figures import draw_heatmap; "
            "from rbench.report import figure_cache; figure_cache._started = lambda: 2**62; import numpy as np; "
            "print(figure_cache.figure_key(draw_heatmap, ({'a': 2}, np.eye(2)), {}))")
    moved = _in_process(code.replace("sys.argv[1]", repr(str(second))), first)[0]
    stayed = _in_process(code.replace("sys.argv[1]", repr(str(second))), second)[0]
    assert moved != stayed


def test_an_rc_file_that_appears_before_the_drawing_imports_matplotlib_keeps_nothing(tmp_path):
    """The key said "defaults" before matplotlib was imported; an rc file written before the drawing imported it
    changed the settings: the figure is not kept under that key."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "racing.py").write_text(
        "from pathlib import Path\n\n\ndef build(values):\n"
        "    Path('matplotlibrc').write_text('lines.linewidth: 9\\n')\n"
        "    from matplotlib.figure import Figure\n\n"
        "    fig = Figure(figsize=(2, 2), dpi=50)\n    fig.subplots().plot(values)\n    return fig\n")
    code = ("import sys; sys.path.insert(0, '.'); import racing; from pathlib import Path; "
            "from rbench.report import figure_cache; figure_cache._started = lambda: 2**62; "
            "figure_cache.save_figure(Path('out.png'), racing.build, [1.0, 2.0]); "
            "print(len(list(Path('cache').glob('*.png'))), 'matplotlib' in sys.modules)")
    assert _in_process(code, folder, RBENCH_FIGURE_CACHE=str(folder / "cache")) == ["0", "True"]
    assert (folder / "out.png").read_bytes().startswith(b"\x89PNG")


def test_the_defaults_are_keyed_by_the_installed_files_of_the_matplotlib_imported(tmp_path, monkeypatch):
    """Two installations alike in version and defaults but not in what draws (a FreeType, a patched backend) must
    not share keys: the key holds the install's RECORD and each listed file's size and time. A copy without a
    RECORD (on PYTHONPATH) is not keyed as defaults at all; an install changed during the run neither."""
    import shutil

    import matplotlib

    installed = Path(matplotlib.__file__).parent
    copy = tmp_path / "site" / "matplotlib"
    (copy / "mpl-data").mkdir(parents=True)
    for name in ("__init__.py", "_version.py", "rcsetup.py", "mpl-data/matplotlibrc"):
        shutil.copy2(installed / name, copy / name)
    shadow = type("Module", (), {"__file__": str(copy / "__init__.py")})
    assert figure_cache._defaults_digest(shadow) is None  # no RECORD beside it
    (record,) = installed.parent.glob("matplotlib-*.dist-info/RECORD")
    (tmp_path / "site" / record.parent.name).mkdir()
    listed = "".join(f"matplotlib/{name},,\n" for name in ("__init__.py", "_version.py", "rcsetup.py"))
    (tmp_path / "site" / record.parent.name / "RECORD").write_text(listed)
    digest = figure_cache._installed_digest.__wrapped__(str(copy))
    assert digest is not None and digest != figure_cache._defaults_digest(matplotlib)
    os.utime(copy / "rcsetup.py", ns=(1, 1))  # another file, as far as the key can tell
    touched = figure_cache._installed_digest.__wrapped__(str(copy))
    assert touched not in (digest, None)
    version = copy / "_version.py"
    text, stat = version.read_text(), version.stat()
    version.write_text(text.replace("3", "4"))  # the same size and, restored, the same modification time
    os.utime(version, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert version.stat().st_size == stat.st_size
    assert figure_cache._installed_digest.__wrapped__(str(copy)) not in (touched, None)
    monkeypatch.setattr(figure_cache, "_started", lambda: 0)  # every file newer than the process: upgraded
    assert figure_cache._installed_digest.__wrapped__(str(copy)) is None


def test_a_drawing_after_matplotlib_changed_during_the_run_is_not_kept(cache, tmp_path, monkeypatch):
    """The install's digest is kept for the process; after drawing it is read again, and a figure drawn after an
    upgrade (here: the install no longer tells its digest) is not kept under the key made before."""
    key = figure_cache.figure_key(bars, ([1.0],), {})
    assert key is not None and figure_cache._same_key(key, bars, ([1.0],), {})
    monkeypatch.setattr(figure_cache._installed_digest, "__wrapped__", lambda folder: None)
    assert figure_cache.figure_key(bars, ([1.0],), {}) == key  # the process's kept answer
    assert not figure_cache._same_key(key, bars, ([1.0],), {})
    save_figure(tmp_path / "a.png", bars, [1.0])
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG") and not list(cache.glob("*.png"))


def test_an_rcparam_equal_to_its_default_by_value_but_not_type_is_a_change():
    """1 == True, but an int offset is not a bool to matplotlib's formatter."""
    import matplotlib

    defaults = figure_cache.figure_key(bars, ([1.0],), {})
    try:
        matplotlib.rcParams._set("axes.formatter.useoffset", 1)
        assert figure_cache.figure_key(bars, ([1.0],), {}) not in (defaults, None)
    finally:
        matplotlib.rcParams._set("axes.formatter.useoffset", True)
    assert figure_cache.figure_key(bars, ([1.0],), {}) == defaults


@pytest.mark.parametrize("where", ["working folder", "MATPLOTLIBRC file", "MATPLOTLIBRC folder", "MPLCONFIGDIR",
                                   "XDG_CONFIG_HOME", "HOME", "none"])
def test_every_rc_file_matplotlib_reads_is_seen_without_importing_it(tmp_path, where):
    """Wherever the user put an rc file matplotlib reads, the places looked at without importing it hold it (so
    its settings are never taken for the defaults); with none, matplotlib reads its installed defaults."""
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
    code = ("from rbench.report import figure_cache; seen = figure_cache._any_rc_file(); "
            "hashed = [str(p) for _, p in figure_cache.rc_candidates()]; import matplotlib, os; "
            "chosen = os.path.abspath(matplotlib.matplotlib_fname()); "
            "print(seen, chosen in hashed, chosen, matplotlib.rcParams['font.size'])")
    seen, found, chosen, size = _in_process(code, work, **env)
    if where == "none":
        assert (seen, found, size) == ("False", "False", "10.0") and chosen.endswith("mpl-data/matplotlibrc")
    else:
        assert (seen, found, size) == ("True", "True", "9.0"), chosen
