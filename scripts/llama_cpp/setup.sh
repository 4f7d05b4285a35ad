#!/usr/bin/env bash
# Set up a Python venv with llama-cpp-python (mainline llama.cpp built from
# source, CPU-only) plus numpy and gguf, for cross-checking bitnetc's logits.
#
#   scripts/llama_cpp/setup.sh            # idempotent; fast once the wheel is cached
#
# Environment overrides:
#   LLAMA_CPP_PYTHON_VERSION  pin a llama-cpp-python version (default: latest on PyPI)
#   PYTHON                    interpreter used to create the venv (default: python3)
#   NICE                      nice level for the build (default: 10)
#   JOBS                      parallel compile jobs (default: nproc)
#   FORCE_REBUILD=1           ignore the cached wheel and rebuild
#
# Layout (repo-relative, .cache/ is git-ignored):
#   .cache/llama-cpp/venv     the virtual environment
#   .cache/llama-cpp/wheels   the built llama_cpp_python wheel (reused on re-runs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache/llama-cpp"
VENV="$CACHE/venv"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-python3}"
NICE_LVL="${NICE:-10}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
SPEC="llama-cpp-python${LLAMA_CPP_PYTHON_VERSION:+==$LLAMA_CPP_PYTHON_VERSION}"

mkdir -p "$WHEELS"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating venv at $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
fi
VPY="$VENV/bin/python"

# numpy + gguf (pure Python / binary wheels, quick).
echo "[setup] installing numpy and gguf"
"$VPY" -m pip install --quiet --upgrade numpy gguf

# Reuse a cached llama_cpp_python wheel when there is one (matching the pin if given).
find_wheel() {
    local pat="llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION:-*}-*.whl"
    # newest first
    ls -t "$WHEELS"/$pat 2>/dev/null | head -n 1 || true
}

WHEEL="$(find_wheel)"
if [ -n "$WHEEL" ] && [ "${FORCE_REBUILD:-0}" != "1" ]; then
    echo "[setup] using cached wheel $WHEEL"
else
    echo "[setup] building $SPEC from source (CPU-only; this takes a while)"
    # CPU-only: no BLAS/CUDA/Metal/Vulkan/OpenMP-less options are left default;
    # skip examples/tests/server/tools and curl so only libllama + ggml get built.
    export CMAKE_ARGS="${CMAKE_ARGS:-} \
        -DGGML_NATIVE=ON \
        -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
        -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF -DGGML_KOMPUTE=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF \
        -DLLAVA_BUILD=OFF"
    export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
    echo "[setup] CMAKE_ARGS=$(echo $CMAKE_ARGS)"
    # Build isolation is kept (needs scikit-build-core + cmake + ninja from PyPI);
    # --no-deps because the runtime deps are installed below from the wheel's metadata.
    nice -n "$NICE_LVL" "$VPY" -m pip wheel --no-deps --no-binary llama-cpp-python \
        -w "$WHEELS" "$SPEC" -v 2>&1 | tee "$CACHE/build.log" \
        | sed -nuE 's#^\s*(\[[0-9]+/[0-9]+\]).* -c (/[^ ]*/)?([^ /]+)$#  \1 \3#p; /Successfully built|ERROR|error:/p' || true
    WHEEL="$(find_wheel)"
    if [ -z "$WHEEL" ]; then
        echo "[setup] build failed; see $CACHE/build.log" >&2
        exit 1
    fi
fi

echo "[setup] installing $WHEEL"
"$VPY" -m pip install --quiet --force-reinstall --no-deps "$WHEEL"
# Runtime deps of llama-cpp-python (typing-extensions, numpy, diskcache, jinja2).
"$VPY" -m pip install --quiet typing-extensions diskcache jinja2

"$VPY" - <<'EOF'
import llama_cpp, numpy, gguf, importlib.metadata as md
print("[setup] llama-cpp-python", llama_cpp.__version__, "| numpy", numpy.__version__,
      "| gguf", md.version("gguf"))
try:
    info = llama_cpp.llama_print_system_info()
    print("[setup] system info:", info.decode() if isinstance(info, bytes) else info)
except Exception as e:  # pragma: no cover
    print("[setup] (no system info:", e, ")")
EOF

echo "[setup] venv:   $VENV"
echo "[setup] wheels: $WHEELS"
echo "[setup] python: $VPY"
echo "[setup] next:   $VPY $ROOT/scripts/llama_cpp/logits.py --model M.gguf --ids 1,2,3 --out llama.bin"
