"""Property-based: every malformed suite (hypothesis generates them from a valid one) ends in one SuiteError
that names the file and the key path, never another exception; a sample also goes through the CLI."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import rbench

from rbench.errors import SuiteError
from rbench.suite import load_suite

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
# (path of a reference, key path)
REFERENCES = [(("models", "mlp", "dataset"), "models.mlp.dataset"),
              (("tables", "t", "evaluation"), "tables.t.evaluation"),
              (("evaluations", "ev", "dataset"), "evaluations.ev.dataset")]
TABLES = [("suite",), ("models", "mlp"), ("models", "mlp", "params"), ("attacks", "pgd", "params"),
          ("evaluations", "ev"), ("tables", "t"), ("models", "mlp", "trainer"), ()]

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)
not_numbers = st.one_of(st.text(min_size=1, max_size=8), st.lists(st.integers(), max_size=2),
                        st.dictionaries(names, st.integers(), min_size=1, max_size=2))


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


@st.composite
def malformed(draw) -> tuple[dict, str, list[dict]]:
    """(a malformed suite document, a fragment its error must contain, extra files to write)."""
    doc = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["missing", "type", "negative", "unknown_key", "plugin", "reference",
                                 "table_ref", "cycle", "bad_grid", "bad_where"]))
    extra: list[dict] = []
    if kind == "missing":
        path, where = draw(st.sampled_from(REQUIRED))
        del _get(doc, path[:-1])[path[-1]]
        return doc, where, extra
    if kind == "type":
        path, where = draw(st.sampled_from(NUMERIC))
        _get(doc, path[:-1])[path[-1]] = draw(not_numbers)
        return doc, where, extra
    if kind == "negative":
        path, where = draw(st.sampled_from(NUMERIC))
        _get(doc, path[:-1])[path[-1]] = draw(st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-3,
                                                                                               min_value=-1e6)))
        return doc, where, extra
    if kind == "unknown_key":
        path = draw(st.sampled_from(TABLES))
        key = draw(names.filter(lambda k: k not in _get(VALID, path) and k not in ("profiles",)))
        _get(doc, path)[key] = draw(st.integers())
        return doc, ".".join([*path, key]), extra
    if kind == "plugin":
        path, where = draw(st.sampled_from(PLUGINS))
        _get(doc, path[:-1])[path[-1]] = draw(names.filter(lambda n: n not in {"mlp", "lenet", "pgd", "fgsm", "bim",
                                                                                  "fgv", "mnist", "standard", "lbfgs"}))
        return doc, where, extra
    if kind == "reference":
        path, where = draw(st.sampled_from(REFERENCES))
        _get(doc, path[:-1])[path[-1]] = draw(names.filter(lambda n: n not in ("mnist", "ev")))
        return doc, where, extra
    if kind == "table_ref":
        i = draw(st.integers(0, 1))
        doc["evaluations"]["ev"]["sources"][i] = draw(names.filter(lambda n: n not in ("mlp", "cnn")))
        return doc, f"evaluations.ev.sources[{i}]", extra
    if kind == "cycle":
        doc["suite"]["include"] = ["other.toml"]
        extra.append({"name": "other.toml", "doc": {"suite": {"name": "o", "include": ["suite.toml"]}}})
        return doc, "include cycle", extra
    if kind == "bad_grid":
        key = draw(names.filter(lambda n: n not in ("eps",)))
        doc["attacks"]["fgsm"]["grid"][key] = [1]
        return doc, f"attacks.fgsm.grid.{key}", extra
    doc["tables"]["t"]["rows"] = "model"
    doc["tables"]["t"]["columns"] = "metric"
    doc["tables"]["t"]["metrics"] = ["error", "accuracy"]
    del doc["tables"]["t"]["metric"]
    doc["tables"]["t"]["where"] = {"attack": draw(names.filter(lambda n: n not in ("pgd",)))}
    return doc, "tables.t.where.attack", extra


def test_the_valid_document_is_valid(tmp_path):
    (tmp_path / "suite.toml").write_text(dump(VALID))
    assert load_suite(tmp_path / "suite.toml").name == "fuzz"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed())
def test_every_malformed_suite_is_one_clear_error(tmp_path_factory, case):
    doc, fragment, extra = case
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "suite.toml"
    path.write_text(dump(doc))
    for other in extra:
        (folder / other["name"]).write_text(dump(other["doc"]))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message and message.split(": ", 1)[0].endswith(".toml"), message
    assert fragment in message, (fragment, message)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed())
def test_cli_on_generated_malformed_suites(tmp_path_factory, case):
    doc, fragment, extra = case
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "suite.toml"
    path.write_text(dump(doc))
    for other in extra:
        (folder / other["name"]).write_text(dump(other["doc"]))
    out = rbench("validate", str(path))
    assert out.returncode == 2 and fragment in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr
