#!/usr/bin/env bash
# End-to-end benchmark on a CUDA machine: ours vs unconstrained vs llama.cpp GBNF, with every layer of
# the realistic-shape model on the GPU (n_gpu_layers=-1). On a GPU a token costs a few milliseconds
# instead of ~40 ms, so a processor's per-token time weighs far more than on the CPU.
#
#   bash benchmarks/bench_gpu.sh [OUT.md]        # default docs/bench/gpu.md (a Markdown fragment)
#
# It makes a fresh virtual environment (VENV, default .venv-gpu), compiles llama-cpp-python with
# CMAKE_ARGS="-DGGML_CUDA=on" (nvcc and a CUDA toolkit must be on the PATH; 10-30 minutes), builds the
# test models including models/realistic-qwen2.gguf (kept if already there), and runs
# benchmarks/bench.py --gpu. Extra arguments for bench.py go in BENCH_ARGS, e.g. BENCH_ARGS="--rounds 10".
# Without network access, point pip at a folder of wheels/sdists with PIP_FIND_LINKS and
# PIP_NO_INDEX=1, and bring models/vocab/ and models/realistic-qwen2.gguf along.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
OUT=${1:-docs/bench/gpu.md}
PYTHON=${PYTHON:-python3}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
command -v nvcc >/dev/null || { echo "bench_gpu.sh: nvcc not found (a CUDA toolkit is needed to build llama.cpp)" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
if ! "$VENV/bin/python" - <<'EOF'
import sys
import llama_cpp
sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)
EOF
then
    # the CUDA build of the version the project pins; never a cached CPU wheel
    CMAKE_ARGS="-DGGML_CUDA=on -DLLAVA_BUILD=OFF" FORCE_CMAKE=1 \
        "$VENV/bin/python" -m pip install --no-cache-dir --force-reinstall --no-binary llama-cpp-python \
        -c constraints.txt llama-cpp-python
fi
# the library, and what bench.py needs for the engines it runs here (ours, GBNF) and its report
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e . "gguf>=0.10" "jsonschema>=4" "matplotlib>=3.7"
"$VENV/bin/python" - <<'EOF'
import llama_cpp
assert llama_cpp.llama_supports_gpu_offload(), "llama-cpp-python was built without GPU offload"
print("llama-cpp-python", llama_cpp.__version__, "with GPU offload")
EOF

"$VENV/bin/python" scripts/build_test_models.py --realistic
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words on purpose
"$VENV/bin/python" benchmarks/bench.py --gpu --engines ours,gbnf --out "$OUT" \
    --plots "$(dirname "$OUT")/gpu" ${BENCH_ARGS:-}
echo "bench_gpu.sh: wrote $OUT"
