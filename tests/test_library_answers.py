"""rbench.library_answers: a library's answers kept in the library cache under the library's installed files, the
asking module's source and the question; a changed file, a failed checksum or a missing folder means asking again."""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os

import pytest

from rbench import library_answers
from rbench.library_answers import CACHE_VARIABLE, Fleeting, library_digest, remembered


class Asked:
    """An answer that counts how often it was asked."""

    def __init__(self, value):
        self.value, self.count = value, 0

    def __call__(self):
        self.count += 1
        return self.value


@pytest.fixture
def cache(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()  # a store's library-cache/ (made with the store)
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    return tmp_path / "cache" / "answers"


def test_an_answer_is_kept_and_read_back_as_json(cache):
    asked = Asked({"kwargs": {"eps": 0.1, "norm": "inf", "steps": (1, 2)}})
    first = remembered("lib", "kwargs", ["PGD", {"eps": 0.1}], asked)
    again = remembered("lib", "kwargs", ["PGD", {"eps": 0.1}], asked)
    assert asked.count == 1 and first == again == {"kwargs": {"eps": 0.1, "norm": "inf", "steps": [1, 2]}}
    assert len(list(cache.iterdir())) == 1
    for other in (("lib", "kwargs", ["PGD", {"eps": 0.2}]), ("lib", "budget", ["PGD", {"eps": 0.1}]),
                  ("another version", "kwargs", ["PGD", {"eps": 0.1}])):
        remembered(*other, asked)
    assert asked.count == 4 and len(list(cache.iterdir())) == 4


def test_a_file_that_fails_its_checks_is_asked_again_and_replaced(cache):
    asked = Asked([1, 2, 3])
    remembered("lib", "q", None, asked)
    (path,) = cache.iterdir()
    record = json.loads(path.read_text())
    for bad in ({**record, "answer": [1, 2, 4]}, {**record, "key": "0" * 64}, "not json", "[" * 100_000):
        path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        assert remembered("lib", "q", None, asked) == [1, 2, 3]
        assert json.loads(path.read_text()) == record
    assert asked.count == 5


def test_without_a_folder_a_library_or_json_arguments_every_question_is_asked(cache, monkeypatch):
    asked = Asked(True)
    remembered(None, "q", None, asked)  # the library is not installed
    remembered("lib", "q", [object()], asked)  # arguments that are not JSON
    remembered("lib", "q", [(3,)], asked)  # nor exactly JSON: a tuple would come back a list
    remembered("lib", "q", None, Asked({1, 2}))  # an answer that is not JSON: returned, not kept
    assert remembered("lib", "q", None, Asked(Fleeting("no torchvision"))) == "no torchvision"  # not kept
    monkeypatch.setenv(CACHE_VARIABLE, str(cache.parent / "no store yet"))
    remembered("lib", "q", None, asked)
    monkeypatch.delenv(CACHE_VARIABLE)
    remembered("lib", "q", None, asked)
    remembered("lib", "q", None, asked)
    assert asked.count == 6 and not cache.exists() and not (cache.parent / "no store yet").exists()
    with pytest.raises(ZeroDivisionError):  # an answer that fails is not kept
        remembered("lib", "q2", None, lambda: 1 / 0)


def test_the_arguments_order_is_part_of_the_key(cache):
    """Two tables with the same kwargs in another order are two questions (a refusal names the first bad keyword
    as the suite wrote it)."""
    first = remembered("lib", "kwargs", {"b": 2, "a": 1}, Asked("b first"))
    assert (first, remembered("lib", "kwargs", {"a": 1, "b": 2}, Asked("a first"))) == ("b first", "a first")
    assert len(list(cache.iterdir())) == 2


def test_the_library_s_key_follows_its_files_and_the_asking_module(tmp_path, monkeypatch):
    package = tmp_path / "site" / "lib"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "sub" / "attacks.py").write_text("y = 2\n")
    asker = tmp_path / "adapter.py"
    asker.write_text("# the adapter\n")

    found = importlib.util.find_spec

    def find_spec(name, *args):
        return importlib.machinery.ModuleSpec(name, None, is_package=True) if name == "lib" else found(name, *args)

    real_requires = importlib.metadata.requires
    monkeypatch.setattr(library_answers.importlib.util, "find_spec",
                        lambda name, *a: _located(find_spec(name), package))
    monkeypatch.setattr(library_answers.importlib.metadata, "requires",
                        lambda name: [] if name == "lib-dist" else real_requires(name))

    def key() -> str | None:
        library_digest.cache_clear()
        return library_digest("lib-dist", "lib", str(asker))

    base = key()
    assert base is not None and key() == base
    assert library_digest("lib-dist", "no_such_package_here", str(asker)) is None
    edited = package / "sub" / "attacks.py"
    stat = edited.stat()
    edited.write_text("y = 3\n")  # the same size: the modification time tells
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert key() not in (None, base)
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert key() == base
    (package / "new.py").write_text("")
    assert key() != base
    (package / "new.py").unlink()
    asker.write_text("# the adapter, changed\n")
    assert key() != base
    asker.write_text("# the adapter\n")
    assert key() == base
    (package / "gone.py").symlink_to(tmp_path / "nowhere.py")  # a file that cannot be listed: nothing is kept
    assert key() is None


def _located(spec, package):
    """``spec`` of the fake package ``lib`` with its folder as its search location."""
    if spec is not None and spec.name == "lib":
        spec.submodule_search_locations = [str(package)]
    return spec
