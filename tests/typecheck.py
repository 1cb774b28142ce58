"""mypy over the rbench package (`make typecheck`, part of `make test`): benchmark/ is `rbench`, plugins/ is
`rbench.plugins`.

pyproject.toml maps the two folders onto the package through setuptools' package-dir, and the editable install
resolves them with an import hook, which mypy does not follow (`mypy -p rbench` finds no package, and `mypy
benchmark plugins` would name the modules `benchmark.*` and `plugins.*`). So this script lists the files itself,
names each one's module as the installed package does, and runs mypy's build on that list; messages keep the real
paths (benchmark/api.py:12: ...). The checks are configured in [tool.mypy] of pyproject.toml; extra arguments are
mypy options (python tests/typecheck.py --no-incremental). Exit code as mypy's: 0 clean, 1 errors, 2 blocking errors.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mypy import build, util
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent
# folder -> the package it is installed as (pyproject.toml, [tool.setuptools] package-dir)
PACKAGE_DIRS = {"benchmark": "rbench", "plugins": "rbench.plugins"}


def sources() -> list[BuildSource]:
    """One BuildSource per .py file under the mapped folders, with the module name the installed package has."""
    found = []
    for folder, package in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append(BuildSource(str(path.relative_to(ROOT)), ".".join((package, *parts))))
    return found


def main(argv: list[str]) -> int:
    os.chdir(ROOT)  # mypy reads its options from ./pyproject.toml; messages name paths relative to the root
    fscache = FileSystemCache()
    # the folders are named as targets only so that mypy reads its options; the sources are replaced below
    _, options = process_options([*argv, *PACKAGE_DIRS], fscache=fscache)
    targets = sources()
    formatter = util.FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    messages: list[str] = []

    def flush_errors(filename: str | None, new: list[str], serious: bool) -> None:
        messages.extend(new)
        for message in new:
            print(formatter.colorize(message) if options.color_output else message, file=sys.stdout)

    blockers = False
    try:  # build() hands every message to flush_errors, a blocking one (a syntax error) too, then raises
        result = build.build(targets, options, None, flush_errors, fscache, sys.stdout, sys.stderr)
        result.manager.metastore.close()
    except CompileError:
        blockers = True
    n_errors, n_notes, n_files = util.count_stats(messages)
    if n_errors:
        print(formatter.format_error(n_errors, n_files, len(targets), blockers=blockers,
                                     use_color=options.color_output))
        return 2 if blockers else 1
    print(formatter.format_success(len(targets), options.color_output))
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main(sys.argv[1:])
    print(f"mypy: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as mypy does: freeing its whole build graph at exit takes longer than the check on a warm cache
