#!/usr/bin/env bash
# End-to-end cross-check: bitnetc vs mainline llama.cpp on the same GGUF and prompt ids.
#
#   scripts/llama_cpp/crosscheck.sh [MODEL.gguf] [IDS] [TOL]
#
#   MODEL  default: generated with `bitnetc gen-model --arch bitnet --preset tiny --type tq2_0
#          --seed 1` into $WORK/t.gguf
#   IDS    default: 1,100,200,300,400,500,7,8,42,301,13,99
#   TOL    max relative logit error allowed (default 0.05; see README.md "Tolerances")
# Environment: BITNETC (command prefix, default "cargo run --release -q --"), WORK (scratch dir,
# default a mktemp -d), THREADS (default 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/llama_cpp"
PY="$ROOT/.cache/llama-cpp/venv/bin/python"
BITNETC="${BITNETC:-cargo run --release -q --}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
THREADS="${THREADS:-2}"
MODEL="${1:-}"
IDS="${2:-1,100,200,300,400,500,7,8,42,301,13,99}"
TOL="${3:-0.05}"

[ -x "$PY" ] || "$HERE/setup.sh"
cd "$ROOT"
if [ -z "$MODEL" ]; then
    MODEL="$WORK/t.gguf"
    $BITNETC gen-model --arch bitnet --preset tiny --type tq2_0 --seed 1 -o "$MODEL"
fi
echo "== model $MODEL, ids $IDS, work $WORK"

$BITNETC run -m "$MODEL" --prompt-ids "$IDS" -n 0 --temp 0 --dump-logits "$WORK/ours.bin" >/dev/null
OUT=$("$PY" "$HERE/logits.py" -m "$MODEL" --ids "$IDS" -o "$WORK/llama.bin" -t "$THREADS" \
      2>"$WORK/llama.log")
echo "$OUT" | head -n 1
NV=$(echo "$OUT" | sed -nE 's/^n_vocab=([0-9]+) .*/\1/p')

echo "== numpy reference (ggml rounding mimic) vs llama.cpp  [sanity: both sides of the harness]"
"$PY" "$HERE/ref_forward.py" -m "$MODEL" --ids "$IDS" -o "$WORK/ref.bin" --ggml >/dev/null \
    && "$PY" "$HERE/compare.py" "$WORK/ref.bin" "$WORK/llama.bin" --n-vocab "$NV" | grep '^overall' \
    || echo "(ref_forward failed; see above)"
echo "== bitnetc vs llama.cpp"
"$PY" "$HERE/compare.py" "$WORK/ours.bin" "$WORK/llama.bin" --n-vocab "$NV" --tol "$TOL"
