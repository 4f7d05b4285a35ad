#!/usr/bin/env bash
# Runs the CUDA backend's GPU tests and benchmarks in one command on a machine with an NVIDIA
# GPU, its driver and NVRTC.
#   scripts/gpu/check.sh            builds with cargo (toolchain needed), then runs
#   scripts/gpu/check.sh BUNDLE     runs prebuilt binaries from scripts/gpu/bundle.sh (no Rust,
#                                   no network needed)
# Steps: kernel tests against the references (under compute-sanitizer when it is installed),
# end-to-end greedy tokens CUDA = CPU on the tiny and large presets, kernel timings beside a
# read-bandwidth probe, a bf16 GEMV of the same shapes through PyTorch/cuBLAS (when torch is
# installed), and `bitnetc bench` of a generated 2B4T model on the GPU and on the CPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0
step() { echo; echo "== $*"; }
fail() { echo "FAILED: $*"; status=1; }

if [ $# -ge 1 ]; then
  bin="$(cd "$1" && pwd)"
else
  scripts/gpu/bundle.sh .gpu-bundle || exit 1
  bin="$(pwd)/.gpu-bundle"
fi
export BITNETC_BIN="$bin/bitnetc"

step "GPU"
if ! nvidia-smi -L; then
  echo "no NVIDIA GPU visible (nvidia-smi failed): nothing to check here"
  exit 1
fi

step "kernel tests (generated CUDA vs references)"
"$bin/cuda_kernels" --include-ignored --test-threads 1 || fail "kernel tests"
if command -v compute-sanitizer >/dev/null; then
  step "kernel tests under compute-sanitizer (memcheck)"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$bin/cuda_kernels" --include-ignored --test-threads 1 \
    || fail "compute-sanitizer memcheck"
else
  echo "compute-sanitizer not installed: skipped"
fi

step "end to end: CUDA greedy tokens = CPU greedy tokens (tiny and large presets, 3 types)"
"$bin/cuda_e2e" --include-ignored --exact cuda_gives_the_cpu_backends_greedy_tokens || fail "end-to-end test"

step "kernel timings at the 2B4T shapes (median of 5 rounds) beside a read probe"
"$bin/cuda_bench" || fail "cuda_bench"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  step "bf16 GEMV of the same shapes through PyTorch (cuBLAS)"
  python3 scripts/gpu/bf16_gemv.py || fail "bf16 baseline"
else
  echo "torch with CUDA not available: bf16 baseline skipped"
fi

step "bitnetc bench on a generated 2B4T model (GPU, then CPU with all cores)"
model="$(mktemp -d)/2b4t.gguf"
"$bin/bitnetc" gen-model --preset 2b4t --type i2_s --embedding-type f16 -o "$model" || fail "gen-model"
"$bin/bitnetc" bench -m "$model" --device cuda -p 128 -n 64 -r 3 || fail "bench cuda"
"$bin/bitnetc" bench -m "$model" -p 128 -n 16 -r 1 || fail "bench cpu"
rm -f "$model"

echo
[ $status -eq 0 ] && echo "GPU checks: all passed" || echo "GPU checks: some steps FAILED"
exit $status
