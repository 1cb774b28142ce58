"""Reading a suite's files: the TOML of the suite and of everything it includes (cycles are errors, a file included
twice is read once), the chosen profile applied, each checked against the schema (:mod:`rbench.suite_schema`) and
merged, every entry remembering the file that defined it; the published-table files they name are read too.

A suite, included or published file must be a regular file of at most :data:`rbench.tomlfile.MAX_FILE_BYTES`;
documents nest at most :data:`rbench.tomlfile.MAX_DEPTH` levels, includes at most :data:`MAX_INCLUDE_DEPTH`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rbench.compare import Published, load_published
from rbench.errors import RbenchError, SuiteError
from rbench.suite_schema import (
    MAX_NAME,
    SAFE_RULE,
    SECTIONS,
    SuiteDoc,
    SuiteMeta,
    brief,
    name_problem,
    pydantic_problem,
)
from rbench.tomlfile import key_part, read_toml, shown

#: includes nest at most this deep (a file included twice is read once)
MAX_INCLUDE_DEPTH = 32


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base``: tables merge recursively, other values replace."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_names(file: str, raw: dict[str, Any]) -> None:
    """The suite name and every section entry name, checked before pydantic sees them (so that no other
    message ever shows an unprintable key)."""
    meta = raw.get("suite")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        problem = name_problem(meta["name"], safe=True)
        if problem:
            raise SuiteError(f"{file}: suite.name: {problem} (got {shown(meta['name'])}); it names the run folder: "
                             f"use {SAFE_RULE}")
    for section in (*SECTIONS, "profiles"):
        body = raw.get(section)
        if not isinstance(body, dict):
            continue
        for name in body:
            safe = section == "tables"
            problem = name_problem(name, safe=safe)
            if problem:
                rule = f"; table names become file names: use {SAFE_RULE}" if safe else (
                    f"; use at most {MAX_NAME} printable characters")
                raise SuiteError(f"{file}: {section}.{shown(name)}: name {problem}{rule}")


@dataclass
class Merged:
    """Documents merged across includes, remembering which file defined each entry."""

    sections: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    #: each published file, read: (the suite file naming it first, its index there, its path, its content)
    published_docs: list[tuple[str, int, str, Published]] = field(default_factory=list)
    profile_seen: bool = False
    #: the names of the profiles the files define
    profiles: set[str] = field(default_factory=set)
    #: the first file's ``[suite]`` table: it governs the run
    top: SuiteMeta | None = None
    #: one line per run setting an included file sets to another value than the first file's (not used)
    overridden: list[str] = field(default_factory=list)
    #: the model a replica of a model with ``seeds`` was expanded from (:mod:`rbench.suite_seeds`)
    replica_of: dict[str, str] = field(default_factory=dict)


def _load_tree(path: Path, profile: str | None, merged: Merged, stack: list[Path], referrer: str | None
               ) -> SuiteMeta | None:
    try:
        path = path.resolve() if path.exists() else path
    except (OSError, ValueError, RuntimeError):  # a path the OS rejects: read_toml says why
        pass
    if path in stack:
        chain = " -> ".join(p.name for p in [*stack, path])
        raise SuiteError(f"{stack[-1]}: suite.include: include cycle: {chain}")
    if str(path) in merged.files:  # included twice (a diamond): merged once, read once
        return None
    if len(stack) > MAX_INCLUDE_DEPTH:
        raise SuiteError(f"{referrer}: {path}: includes nest deeper than {MAX_INCLUDE_DEPTH} levels "
                         f"(from {stack[0]})")
    raw = read_toml(path, referrer)
    file = str(path)
    profiles = raw.get("profiles", {})
    if isinstance(profiles, dict):
        merged.profiles.update(str(name) for name in profiles)
        for name, overlay in profiles.items():  # merged into the suite, a nested one would be silently ignored
            if isinstance(overlay, dict) and "profiles" in overlay:
                raise SuiteError(f"{file}: profiles.{key_part(name)}.profiles: a profile cannot define profiles")
    if profile is not None and isinstance(profiles, dict) and profile in profiles:
        overlay = profiles[profile]
        if not isinstance(overlay, dict):
            raise SuiteError(f"{file}: profiles.{key_part(profile)}: must be a table (got {brief(overlay)})")
        raw = deep_merge(raw, overlay)
        merged.profile_seen = True
    _check_names(file, raw)
    try:
        doc = SuiteDoc.model_validate(raw)
    except ValidationError as err:
        raise pydantic_problem(file, "", err, SuiteDoc) from None
    merged.files.append(file)
    _note_overridden(file, doc.suite, merged)
    listed: dict[str, int] = {}
    for i, pub in enumerate(doc.suite.published):
        pub_path = path.parent / pub
        try:
            pub_path = pub_path.resolve()
        except (OSError, ValueError, RuntimeError):
            pass
        if str(pub_path) in listed:
            first = listed[str(pub_path)]
            raise SuiteError(f"{file}: suite.published[{i}]: {pub!r} is listed twice (also published[{first}])")
        listed[str(pub_path)] = i
        try:
            published = load_published(pub_path)
        except RbenchError as exc:
            raise SuiteError(f"{file}: suite.published[{i}]: {exc}") from None
        if str(pub_path) not in merged.published:
            merged.published.append(str(pub_path))
            merged.published_docs.append((file, i, str(pub_path), published))
    for i, inc in enumerate(doc.suite.include):
        _load_tree(path.parent / inc, profile, merged, [*stack, path], f"{file}: suite.include[{i}]")
    for section in SECTIONS:
        for name, spec in getattr(doc, section).items():
            prev = merged.sections[section].get(name)
            if prev is not None and prev != spec:
                other = merged.origin[(section, name)]
                raise SuiteError(f"{file}: {section}.{name}: already defined differently in {other}")
            merged.sections[section][name] = spec
            merged.origin[(section, name)] = file
    return doc.suite


#: the ``[suite]`` settings that apply to the whole run (the first file's; an included file's are not read), each
#: with the command-line option that overrides it
RUN_SETTINGS = {"seed": None, "precision": "--precision", "job_timeout": "--job-timeout"}


def _note_overridden(file: str, meta: SuiteMeta, merged: Merged) -> None:
    """Remember ``meta`` as the governing table when it is the first file's; otherwise note each run setting it
    sets to another value than the first file's: an included suite run on its own would seed (or compute) its jobs
    otherwise, so its numbers here are not the ones it gives alone. A warning, not an error: including a suite and
    giving another seed is how a seed sweep is written."""
    top = merged.top
    if top is None:
        merged.top = meta
        return
    for key, flag in RUN_SETTINGS.items():
        mine, governing = getattr(meta, key), getattr(top, key)
        if key in meta.model_fields_set and mine != governing:
            merged.overridden.append(f"{file}: suite.{key} = {mine!r} is not read: the first file's [suite] "
                                     f"table governs the run ({merged.files[0]}: {key} = {governing!r}"
                                     f"{f'; {flag} overrides both' if flag else ''})")


#: the name of the suite as written, without a profile, where the suite defines no profile of that name (reports
#: call it so: ``--profile default`` runs, and ``cache gc --profile default`` keeps, the base alone)
BASE_PROFILE = "default"


def merge_files(path: str | Path, profile: str | None = None) -> tuple[SuiteMeta, Merged]:
    """The suite at ``path`` and its includes, read, checked for structure and merged (``profile`` applied), before
    any plugin is resolved: the first file's ``[suite]`` table and every section's entries with their origin."""
    merged = Merged()
    meta = _load_tree(Path(path), profile, merged, [], None)
    assert meta is not None  # the first file is never a repeat
    if profile is not None and not merged.profile_seen and profile != BASE_PROFILE:
        raise SuiteError(f"{path}: profiles.{key_part(profile)}: no such profile in this suite or its includes")
    return meta, merged


def suite_profiles(path: str | Path) -> list[str]:
    """The names of the profiles the suite at ``path`` and its includes define."""
    return sorted(merge_files(path)[1].profiles)
