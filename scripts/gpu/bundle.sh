#!/usr/bin/env bash
# Builds everything the GPU checks run into one folder, for a machine with an NVIDIA GPU but no
# Rust toolchain or network: the bitnetc binary, the GPU test binaries, the kernel benchmark
# and the scripts. Usage: scripts/gpu/bundle.sh [OUT_DIR]   (default: .gpu-bundle)
# Then, on the GPU machine, from the repository root: scripts/gpu/check.sh OUT_DIR
# (stripped, the bundle is about 17 MB; keep it inside the repository, ignored by git, to send
# it along with the working tree).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.gpu-bundle}"
mkdir -p "$out"
cargo build --release -p bitnetc --bin bitnetc
cargo build --release -p bitnetc-runtime --example cuda_bench
cp target/release/bitnetc target/release/examples/cuda_bench "$out/"
# The test executables, located from cargo's JSON messages.
cargo test --release --no-run --message-format=json --test cuda -p bitnetc 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda":
        print(m["executable"])' | while read -r exe; do cp "$exe" "$out/cuda_e2e"; done
cargo test --release --no-run --message-format=json --test cuda_gpu -p bitnetc-runtime 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_gpu":
        print(m["executable"])' | while read -r exe; do cp "$exe" "$out/cuda_kernels"; done
# Without debug info the four binaries fit the 64 MiB a device machine's upload takes.
if command -v strip >/dev/null; then
  strip "$out"/bitnetc "$out"/cuda_bench "$out"/cuda_e2e "$out"/cuda_kernels
fi
ls -l "$out"
du -sh "$out"
