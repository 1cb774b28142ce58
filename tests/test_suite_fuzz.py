"""Property-based: every malformed suite (hypothesis generates them from a valid one) ends in one SuiteError
that names the file and the key path, never another exception; a sample also goes through the CLI.

Besides malformed keys and values, the generated suites hold unsafe names (path-like, absolute, too long, control
characters) for the suite and its entries, sizes beyond a split's, bad published files, includes of devices,
FIFOs, folders or oversized files, documents nested too deep and include chains too long."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import rbench

from rbench.errors import SuiteError
from rbench.manager import get_registry
from rbench.suite import load_suite
from rbench.suite_files import MAX_INCLUDE_DEPTH
from rbench.tomlfile import MAX_DEPTH, MAX_FILE_BYTES, MAX_NAME

VALID: dict[str, Any] = {
    "suite": {"name": "fuzz", "seed": 0},
    "datasets": {"mnist": {"plugin": "mnist"}},
    "models": {
        "mlp": {"plugin": "mlp", "dataset": "mnist", "params": {"widths": [16]},
                "trainer": {"plugin": "standard", "params": {"epochs": 1}}},
        "cnn": {"plugin": "lenet", "dataset": "mnist", "n_train": 100},
    },
    "attacks": {
        "pgd": {"plugin": "pgd", "params": {"eps": 0.1, "steps": 3}},
        "fgsm": {"plugin": "fgsm", "grid": {"eps": [0.1, 0.2]}},
    },
    "evaluations": {"ev": {"dataset": "mnist", "n": 10, "sources": ["mlp", "cnn"], "attacks": ["pgd", "fgsm"]}},
    "tables": {"t": {"evaluation": "ev", "rows": "attack", "columns": "model", "metric": "error"}},
}

# (path to a required key, the key path the error must name)
REQUIRED = [(("suite", "name"), "suite.name"), (("models", "mlp", "plugin"), "models.mlp.plugin"),
            (("models", "cnn", "dataset"), "models.cnn.dataset"), (("attacks", "pgd", "params", "eps"),
                                                                    "attacks.pgd.params.eps"),
            (("evaluations", "ev", "sources"), "evaluations.ev.sources"),
            (("tables", "t", "evaluation"), "tables.t.evaluation"), (("tables", "t", "rows"), "tables.t.rows")]
# (path of a numeric leaf, key path)
NUMERIC = [(("suite", "seed"), "suite.seed"), (("models", "cnn", "n_train"), "models.cnn.n_train"),
           (("attacks", "pgd", "params", "eps"), "attacks.pgd.params.eps"),
           (("attacks", "pgd", "params", "steps"), "attacks.pgd.params.steps"),
           (("evaluations", "ev", "n"), "evaluations.ev.n"),
           (("models", "mlp", "trainer", "params", "epochs"), "models.mlp.trainer.params.epochs")]
# (path of a plugin name, key path)
PLUGINS = [(("models", "mlp", "plugin"), "models.mlp.plugin"), (("attacks", "pgd", "plugin"), "attacks.pgd.plugin"),
           (("datasets", "mnist", "plugin"), "datasets.mnist.plugin"),
           (("models", "mlp", "trainer", "plugin"), "models.mlp.trainer.plugin")]
#: every plugin name of every kind ("none" is a trainer, "noise" one too): an unknown name is none of these
REGISTERED = {info.name for info in get_registry().all()}
# (path of a reference, key path)
REFERENCES = [(("models", "mlp", "dataset"), "models.mlp.dataset"),
              (("tables", "t", "evaluation"), "tables.t.evaluation"),
              (("evaluations", "ev", "dataset"), "evaluations.ev.dataset")]
TABLES = [("suite",), ("models", "mlp"), ("models", "mlp", "params"), ("attacks", "pgd", "params"),
          ("evaluations", "ev"), ("tables", "t"), ("models", "mlp", "trainer"), ()]

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)
not_numbers = st.one_of(st.text(min_size=1, max_size=8), st.lists(st.integers(), max_size=2),
                        st.dictionaries(names, st.integers(), min_size=1, max_size=2))
controls = st.characters(categories=["Cc"])  # NUL, newline, ESC, DEL, C1 ...
too_long = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=MAX_NAME + 1, max_size=300)
with_control = st.builds(lambda a, c, b: a + c + b, names, controls, st.text(alphabet="xyz", max_size=3))
#: names no file name may be: path-like, absolute, hidden, '..', too long, control characters
unsafe_names = st.one_of(
    st.builds(lambda a, b: f"{a}/{b}", names, names), st.builds(lambda a: f"../{a}", names),
    st.builds(lambda a: f"..\\{a}", names), st.builds(lambda a: f"/tmp/{a}", names),
    st.builds(lambda a: f".{a}", names), st.builds(lambda a: f"-{a}", names), st.builds(lambda a: f"{a}..x", names),
    st.just(".."), st.just(""), st.builds(lambda a: f"{a} {a}", names), too_long, with_control)
#: names no entry may have (any printable name up to MAX_NAME is fine)
bad_entry_names = st.one_of(too_long, with_control)
#: published files that are not one: (variant, what to write)
_TABLE = {"figure": "f", "why": "w", "tolerance": {}, "values": {}}
BAD_PUBLISHED_DOCS = [{"source": {}}, {"source": {"citation": "x"}, "tables": {"t": {"figure": "f"}}},
                      {"source": {"citation": "x"}, "tables": {"t": {**_TABLE, "tolerance": {"abs": -1}}}},
                      {"source": {"citation": "x"}, "tables": {"t": {**_TABLE, "values": {"r": {"c": "ten"}}}}},
                      {"source": {"citation": "x", "colour": "red"}, "tables": {}}]
DEEP = "__deep__"

def _get(doc: dict, path: tuple) -> dict:
    for key in path:
        doc = doc[key]
    return doc


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL, the one control character JSON leaves raw and TOML forbids."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{_string(k)} = {_toml(v)}" for k, v in value.items()) + " }"


def dump(doc: dict) -> str:
    """A TOML document: top-level tables as [a.b] headers, everything below as inline values."""
    lines = [f"{_string(k)} = {_toml(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for section, body in doc.items():
        if not isinstance(body, dict):
            continue
        if section in ("suite", "profiles") or not all(isinstance(v, dict) for v in body.values()):
            lines.append(f"[{_string(section)}]")
            lines += [f"{_string(k)} = {_toml(v)}" for k, v in body.items()]
        else:
            for name, item in body.items():
                lines.append(f"[{_string(section)}.{_string(name)}]")
                lines += [f"{_string(k)} = {_toml(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _nested(depth: int, inline_tables: bool) -> str:
    """A TOML value nested ``depth`` levels (arrays or inline tables), written without recursion."""
    return "{ a = " * depth + "1" + " }" * depth if inline_tables else "[" * depth + "]" * depth


@st.composite
def malformed(draw) -> tuple[str, list[str], list[dict]]:
    """(a malformed suite's text, fragments its error must contain, extra files to write: each a dict with a
    "name" and one of "doc", "text", "bytes", "fifo", "folder" or "size" (a sparse file of that many bytes))."""
    doc = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["missing", "type", "negative", "unknown_key", "plugin", "reference", "table_ref",
                                 "cycle", "bad_grid", "bad_where", "suite_name", "table_name", "entry_name",
                                 "too_many", "published", "include_special", "deep", "include_chain"]))
    extra: list[dict] = []
    if kind in ("missing", "type", "negative", "unknown_key", "plugin", "reference", "table_ref", "cycle",
                "bad_grid", "bad_where"):
        doc, fragment = _classic(draw, kind, doc, extra)
        return dump(doc), [fragment], extra
    if kind == "suite_name":
        doc["suite"]["name"] = draw(unsafe_names)
        return dump(doc), ["suite.name"], extra
    if kind == "table_name":
        doc["tables"] = {draw(unsafe_names): doc["tables"]["t"]}
        return dump(doc), ["tables.", "name"], extra
    if kind == "entry_name":
        section, old = draw(st.sampled_from([("datasets", "mnist"), ("models", "mlp"), ("attacks", "pgd"),
                                             ("evaluations", "ev"), ("profiles", None)]))
        name = draw(bad_entry_names)
        if old is None:
            doc["profiles"] = {name: {"evaluations": {"ev": {"n": 5}}}}
        else:
            doc[section] = {(name if k == old else k): v for k, v in doc[section].items()}
        return dump(doc), [f"{section}.", "name"], extra
    if kind == "too_many":
        case = draw(st.sampled_from(["n", "n_train", "parts", "part_n", "eval_parts"]))
        if case == "n":
            doc["evaluations"]["ev"]["n"] = draw(st.integers(10_001, 10**9))
            return dump(doc), ["evaluations.ev.n", "10000 images of mnist/test"], extra
        if case == "n_train":
            doc["models"]["cnn"]["n_train"] = draw(st.integers(60_001, 10**9))
            return dump(doc), ["models.cnn.n_train", "60000 images of mnist/train"], extra
        first = draw(st.integers(1, 60_000))
        if case == "parts":
            doc["models"]["mlp"]["parts"] = [first, 60_000 - first + draw(st.integers(1, 10**6))]
            return dump(doc), ["models.mlp.parts", "60000 images of mnist/train"], extra
        if case == "eval_parts":
            small = draw(st.integers(1, 10_000))
            doc["evaluations"]["ev"]["parts"] = [small, 10_000 - small + draw(st.integers(1, 10**6))]
            del doc["evaluations"]["ev"]["n"]
            return dump(doc), ["evaluations.ev.parts", "10000 images of mnist/test"], extra
        part = draw(st.integers(0, 1))
        doc["models"]["cnn"].update(parts=[first, 1 + (first % 1000)], part=part)
        doc["models"]["cnn"]["n_train"] = doc["models"]["cnn"]["parts"][part] + draw(st.integers(1, 10**6))
        return dump(doc), ["models.cnn.n_train", f"of part {part}"], extra
    if kind == "published":
        doc["suite"]["published"] = ["pub.toml"]
        variant = draw(st.sampled_from(["missing", "not_utf8", "bad_toml", "schema", "folder", "oversized"]))
        if variant == "not_utf8":
            extra.append({"name": "pub.toml", "bytes": b"\xff" + draw(st.binary(max_size=20))})
        elif variant == "bad_toml":
            extra.append({"name": "pub.toml", "text": draw(st.sampled_from(["[source\n", "a = \n", "a = 1\na = 2\n",
                                                                            "[tables.t]\nvalues = { r = 1\n"]))})
        elif variant == "schema":
            extra.append({"name": "pub.toml", "doc": draw(st.sampled_from(BAD_PUBLISHED_DOCS))})
        elif variant == "folder":
            extra.append({"name": "pub.toml", "folder": True})
        elif variant == "oversized":
            extra.append({"name": "pub.toml", "size": MAX_FILE_BYTES + draw(st.integers(1, 10**6))})
        return dump(doc), ["suite.published[0]", "pub.toml"], extra
    if kind == "include_special":
        variant = draw(st.sampled_from(["/dev/zero", "/dev/null", "/dev/urandom", "fifo", "folder", "oversized"]))
        target = variant if variant.startswith("/") else "other.toml"
        doc["suite"]["include"] = [target]
        if variant == "fifo":
            extra.append({"name": target, "fifo": True})
        elif variant == "folder":
            extra.append({"name": target, "folder": True})
        elif variant == "oversized":
            extra.append({"name": target, "size": MAX_FILE_BYTES + draw(st.integers(1, 10**9))})
        return dump(doc), ["suite.include[0]", target], extra
    if kind == "deep":
        depth = draw(st.one_of(st.integers(MAX_DEPTH, MAX_DEPTH + 30), st.integers(300, 3000)))
        inline_tables = draw(st.booleans())
        where = draw(st.sampled_from(["params", "profile", "header"]))
        if where == "header":  # [a.a.a...]: tables nested by a header, no recursion in the parser
            return dump(doc) + "[" + ".".join(["a"] * (depth + 1)) + "]\n", ["nests deeper than 32"], extra
        if where == "params":
            doc["models"]["mlp"]["params"]["widths"] = DEEP
        else:
            doc["profiles"] = {"quick": {"models": {"mlp": {"params": {"widths": DEEP}}}}}
        text = dump(doc).replace(json.dumps(DEEP), _nested(depth, inline_tables))
        return text, ["nests deeper than 32"], extra
    # include_chain: suite.toml -> c0.toml -> c1.toml -> ... longer than the limit
    length = draw(st.integers(MAX_INCLUDE_DEPTH + 1, MAX_INCLUDE_DEPTH + 8))
    doc["suite"]["include"] = ["c0.toml"]
    for i in range(length):
        extra.append({"name": f"c{i}.toml", "doc": {"suite": {"name": f"c{i}", "include": [f"c{i + 1}.toml"]}}})
    return dump(doc), ["suite.include[0]", "nest deeper than 32"], extra


def _classic(draw, kind: str, doc: dict, extra: list[dict]) -> tuple[dict, str]:
    """The malformed keys and values: (document, the key path its error must name)."""
    if kind == "missing":
        path, where = draw(st.sampled_from(REQUIRED))
        del _get(doc, path[:-1])[path[-1]]
        return doc, where
    if kind == "type":
        path, where = draw(st.sampled_from(NUMERIC))
        _get(doc, path[:-1])[path[-1]] = draw(not_numbers)
        return doc, where
    if kind == "negative":
        path, where = draw(st.sampled_from(NUMERIC))
        _get(doc, path[:-1])[path[-1]] = draw(st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-3,
                                                                                               min_value=-1e6)))
        return doc, where
    if kind == "unknown_key":
        path = draw(st.sampled_from(TABLES))
        key = draw(names.filter(lambda k: k not in _get(VALID, path) and k not in ("profiles",)))
        _get(doc, path)[key] = draw(st.integers())
        return doc, ".".join([*path, key])
    if kind == "plugin":
        path, where = draw(st.sampled_from(PLUGINS))
        _get(doc, path[:-1])[path[-1]] = draw(names.filter(lambda n: n not in REGISTERED))
        return doc, where
    if kind == "reference":
        path, where = draw(st.sampled_from(REFERENCES))
        _get(doc, path[:-1])[path[-1]] = draw(names.filter(lambda n: n not in ("mnist", "ev")))
        return doc, where
    if kind == "table_ref":
        i = draw(st.integers(0, 1))
        doc["evaluations"]["ev"]["sources"][i] = draw(names.filter(lambda n: n not in ("mlp", "cnn")))
        return doc, f"evaluations.ev.sources[{i}]"
    if kind == "cycle":
        doc["suite"]["include"] = ["other.toml"]
        extra.append({"name": "other.toml", "doc": {"suite": {"name": "o", "include": ["suite.toml"]}}})
        return doc, "include cycle"
    if kind == "bad_grid":
        key = draw(names.filter(lambda n: n not in ("eps",)))
        doc["attacks"]["fgsm"]["grid"][key] = [1]
        return doc, f"attacks.fgsm.grid.{key}"
    doc["tables"]["t"]["rows"] = "model"
    doc["tables"]["t"]["columns"] = "metric"
    doc["tables"]["t"]["metrics"] = ["error", "accuracy"]
    del doc["tables"]["t"]["metric"]
    doc["tables"]["t"]["where"] = {"attack": draw(names.filter(lambda n: n not in ("pgd",)))}
    return doc, "tables.t.where.attack"


def _write(folder, text: str, extra: list[dict]):
    path = folder / "suite.toml"
    path.write_text(text)
    for other in extra:
        target = folder / other["name"]
        if "doc" in other:
            target.write_text(dump(other["doc"]))
        elif "text" in other:
            target.write_text(other["text"])
        elif "bytes" in other:
            target.write_bytes(other["bytes"])
        elif "fifo" in other:
            os.mkfifo(target)
        elif "folder" in other:
            target.mkdir()
        elif "size" in other:
            with open(target, "wb") as f:
                f.truncate(other["size"])  # sparse: no time spent writing
    return path


def test_the_valid_document_is_valid(tmp_path):
    (tmp_path / "suite.toml").write_text(dump(VALID))
    assert load_suite(tmp_path / "suite.toml").name == "fuzz"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed())
def test_every_malformed_suite_is_one_clear_error(tmp_path_factory, case):
    text, fragments, extra = case
    path = _write(tmp_path_factory.mktemp("fuzz"), text, extra)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message and message.isprintable(), repr(message)
    assert message.split(": ", 1)[0].endswith(".toml"), message
    assert len(message) < 600, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed())
def test_cli_on_generated_malformed_suites(tmp_path_factory, case):
    text, fragments, extra = case
    path = _write(tmp_path_factory.mktemp("cli"), text, extra)
    out = rbench("validate", str(path), timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert all(fragment in out.stderr for fragment in fragments), (fragments, out.stderr)
    assert "Traceback" not in out.stderr
