# Two commands on a fresh machine: `make run` (creates .venv, installs, runs the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed
# Offline machines: point the data loader at a folder holding the canonical files (default ../shared/data
# when it exists); with internet and no such folder, the loader downloads them (checksummed) into the cache.
SHARED_DATA := $(wildcard $(CURDIR)/../shared/data)
ifneq ($(SHARED_DATA),)
export RBENCH_DATA ?= $(SHARED_DATA)
endif

# Python keeps its bytecode caches (__pycache__, git-ignored) for every command below: where the environment sets
# PYTHONDONTWRITEBYTECODE (these machines do), each rbench process compiled rbench's modules again, 0.2-0.3 s of
# every warm run and of each of the test suite's hundreds of rbench starts.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test typecheck system-packages check-full bench gpu-prepare clean

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch first, pinned: an unpinned torch pulls several GB of CUDA packages. The pin alone gives the CPU build only
	# where pip is configured to serve it (as on our machines: pip's find-links hold torch-2.13.0+cpu); elsewhere
	# pass TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
	$(BIN)/pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e ".[test,adapters,ray]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/rbench run suites/mnist_full.toml --profile quick

# Two pytest-xdist workers, one test file each at a time (module fixtures stay in one process): most tests wait on
# rbench subprocesses, so two at once use the 2 cores better (13 min 44 s serially against 10 min 21 s so, measured
# on 2026-11-30; tests/conftest.py splits torch's threads between the workers). Measured times: CONTRIBUTING.md,
# "Setting up and testing".
test: $(STAMP) system-packages
	$(BIN)/ruff check benchmark plugins tests perf examples
	$(BIN)/python tests/typecheck.py
	$(BIN)/pytest -q -p no:cacheprovider -m "not full" -n 2 --dist loadfile tests

# mypy over benchmark/ (rbench) and plugins/ (rbench.plugins), configured in pyproject.toml [tool.mypy]; the script
# names each file's module (mypy cannot follow the editable install's package-dir mapping). Cache: .mypy_cache/.
typecheck: $(STAMP)
	$(BIN)/python tests/typecheck.py

# Best effort, never failing: the Debian packages two tests use, each installed once where it is missing, only as root
# or with password-less sudo: headless Chromium and its driver (tests/test_html_report.py) and a minimal TeX Live with
# booktabs (tests/test_latex_report.py compiles tables.tex with pdflatex; about 1 min and 80 MB). Both tests skip,
# saying why, without them.
system-packages:
	@missing=; command -v chromium >/dev/null && command -v chromedriver >/dev/null || missing=chromium; \
	command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null 2>&1 || missing="$$missing latex"; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  SUDO="sudo -n"; else echo "not installed (needs root or sudo): $$missing; their tests will skip"; exit 0; fi; \
	$$SUDO apt-get update >/dev/null || { echo "apt-get update failed: $$missing not installed"; exit 0; }; \
	case "$$missing" in *chromium*) $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
	  chromium-driver || echo "chromium not installed: the browser test will skip";; esac; \
	case "$$missing" in *latex*) $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y \
	  --no-install-recommends texlive-latex-base texlive-latex-recommended \
	  || echo "TeX Live not installed: the LaTeX compile test will skip";; esac

# The heavier end-to-end variants (marked `full`) and a kill-stress run: SIGKILL at random points and inside
# writes, SIGTERM to one- and two-worker runs, entry swaps (bench/kill_stress.json).
check-full: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m full tests
	$(BIN)/python tests/stress_kill.py --kills 30

# The wheels and data perf/gpu_check.py needs on a lent GPU machine, in .gpu/ (perf/README.md, "GPU checks").
gpu-prepare: $(STAMP)
	PY=$(BIN)/python perf/gpu_prepare.sh

bench: $(STAMP)
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1  # a baseline of bench_attacks (--no-deps: it pins torch)
	$(BIN)/python perf/bench_attacks.py
	$(BIN)/python perf/bench_lbfgs.py
	$(BIN)/python perf/bench_adapters.py
	$(BIN)/python perf/bench_defenses.py
	$(BIN)/python perf/bench_eval.py
	$(BIN)/python perf/bench_fooling.py
	$(BIN)/python perf/bench_precision.py
	$(BIN)/python perf/bench_suite.py
	$(BIN)/python perf/bench_suite.py --suite suites/szegedy2013.toml --profile quick --out bench/suite_szegedy_quick.json
	$(BIN)/python perf/bench_scheduling.py

clean:
	rm -rf $(VENV) build *.egg-info runs  # bench/ holds the committed speed records: kept
