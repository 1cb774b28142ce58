#!/usr/bin/env bash
# Builds .gpu/ (ignored by git) for perf/gpu_check.py on a lent device machine (perf/README.md, "GPU checks").
# That machine reaches no package index and runs CPython 3.12 with its own torch, numpy, h5py, scipy, pyarrow and
# matplotlib; everything else rbench imports travels as wheels, pinned to this virtual environment's versions:
#   .gpu/wheels  rbench (built from this tree), its small dependencies and foolbox (every call)
#   .gpu/ray     Ray (slimmed, below) and what it needs beyond the image          (the Ray calls)
#   .gpu/data    copies of ../shared/data's MNIST, notMNIST and Fashion-MNIST (a link would travel as a link)
# A call carries at most 64 MiB with the tree, so the Ray wheel is repacked without ray/jars (for Java workers), the
# dashboard's JavaScript, and the libraries rbench does not use (RLlib, Serve, Tune, Train, LLM; Ray's core imports
# none of them: a local instance ran tasks without them, 2026-12-04); the script fails if a bundle is too large.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${RBENCH_DATA:-../shared/data}
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
download() {  # download DEST NAME... : cp312 wheels of the venv's versions of NAME...
    local dest=$1; shift
    local pins
    pins=$("$PY" -c 'import sys, importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
        -d "$dest" $pins
}
rm -rf .gpu
mkdir -p .gpu/wheels .gpu/ray .gpu/data
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .gpu/wheels .
download .gpu/wheels pydantic pydantic-core annotated-types typing-inspection typing-extensions typer \
    annotated-doc shellingham rich markdown-it-py mdurl pygments pluggy platformdirs pooch tomli-w tabulate \
    filelock jinja2 markupsafe safetensors foolbox eagerpy GitPython gitdb smmap
download .gpu/ray ray jsonschema jsonschema-specifications referencing rpds-py attrs
"$PY" - .gpu/ray/ray-*.whl <<'EOF'
import os
import sys
import zipfile

# Repack with every entry's bytes, mode bits (the raylet and gcs_server executables) and compression kept.
path = sys.argv[1]
slim = path + ".slim"
dropped = 0
UNUSED = tuple(f"ray/{d}/" for d in ("jars", "rllib", "serve", "tune", "train", "llm", "dashboard/client/build"))
with zipfile.ZipFile(path) as src, zipfile.ZipFile(slim, "w") as dst:
    for item in src.infolist():
        if item.filename.startswith(UNUSED) or item.filename.endswith(".js.map"):
            dropped += item.file_size
            continue
        dst.writestr(item, src.read(item), compress_type=item.compress_type)
os.replace(slim, path)
print(f"{os.path.basename(path)}: {dropped / 1e6:.0f} MB of Java jars, dashboard client and unused libraries left out")
EOF
for d in mnist notmnist fashion-mnist; do cp -r "$DATA/$d" .gpu/data/; done
(cd "$DATA" && grep -E ' (mnist|notmnist|fashion-mnist)/' SHA256SUMS) | (cd .gpu/data && sha256sum --quiet -c -)
tree_bytes=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
size() { du -cb "$@" | tail -1 | cut -f1; }
call1=$((tree_bytes + $(size .gpu/wheels .gpu/data)))
call2=$((tree_bytes + $(size .gpu/wheels .gpu/ray .gpu/data/mnist)))
echo "call 1 (local) carries $((call1 / 1048576)) MiB, call 2 (ray) $((call2 / 1048576)) MiB (limit 64 each)"
if [ "$call1" -gt 67108864 ] || [ "$call2" -gt 67108864 ]; then echo "a bundle is over 64 MiB" >&2; exit 1; fi
