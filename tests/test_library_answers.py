"""rbench.library_answers: a library's answers kept in the library cache under the library's installed files, the
asking module's source and the question; a changed file, a failed checksum or a missing folder means asking again."""

from __future__ import annotations

import importlib.metadata
import json
import os

import pytest

from rbench import library_answers
from rbench.library_answers import CACHE_VARIABLE, library_digest, remembered


class Asked:
    """An answer that counts how often it was asked."""

    def __init__(self, value):
        self.value, self.count = value, 0

    def __call__(self):
        self.count += 1
        return self.value


@pytest.fixture
def cache(tmp_path, monkeypatch):
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
    for bad in ({**record, "answer": [1, 2, 4]}, {**record, "key": "0" * 64}, "not json"):
        path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        assert remembered("lib", "q", None, asked) == [1, 2, 3]
        assert json.loads(path.read_text()) == record
    assert asked.count == 4


def test_without_a_folder_a_library_or_json_arguments_every_question_is_asked(cache, monkeypatch):
    asked = Asked(True)
    remembered(None, "q", None, asked)  # the library is not installed
    remembered("lib", "q", [object()], asked)  # arguments that are not JSON
    remembered("lib", "q", None, Asked({1, 2}))  # an answer that is not JSON: returned, not kept
    monkeypatch.delenv(CACHE_VARIABLE)
    remembered("lib", "q", None, asked)
    remembered("lib", "q", None, asked)
    assert asked.count == 4 and not cache.exists()
    with pytest.raises(ZeroDivisionError):  # an answer that fails is not kept
        remembered("lib", "q2", None, lambda: 1 / 0)


def test_the_library_s_key_follows_its_files_and_the_asking_module(tmp_path, monkeypatch):
    package = tmp_path / "site" / "lib"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "sub" / "attacks.py").write_text("y = 2\n")
    asker = tmp_path / "adapter.py"
    asker.write_text("# the adapter\n")

    class Dist:
        def locate_file(self, name):
            return tmp_path / "site" / name

    def distribution(name):
        if name != "lib-dist":
            raise importlib.metadata.PackageNotFoundError(name)
        return Dist()

    monkeypatch.setattr(library_answers.importlib.metadata, "distribution", distribution)

    def key() -> str | None:
        library_digest.cache_clear()
        return library_digest("lib-dist", "lib", str(asker))

    base = key()
    assert base is not None and key() == base
    assert library_digest("missing-dist", "lib", str(asker)) is None
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
