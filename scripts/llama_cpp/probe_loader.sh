#!/usr/bin/env bash
# Probe which metadata keys / tensors mainline llama.cpp requires for arch `bitnet` (TQ2_0):
# writes variants of the tiny model with make_tiny_tq2.py (one key/tensor dropped or added) and
# reports whether logits.py loads and evaluates each one, with llama.cpp's first error line.
#
#   scripts/llama_cpp/probe_loader.sh [WORKDIR]      (default WORKDIR: a fresh mktemp -d)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$ROOT/.cache/llama-cpp/venv/bin/python"
HERE="$ROOT/scripts/llama_cpp"
W="${1:-$(mktemp -d)}"
mkdir -p "$W"
IDS=1,100,200,300,400,500,7,8

"$PY" "$HERE/make_tiny_tq2.py" -o "$W/base.gguf" >/dev/null
"$PY" "$HERE/logits.py" -m "$W/base.gguf" --ids $IDS -o "$W/base.bin" >/dev/null 2>&1

probe() {  # name, extra make_tiny_tq2 args...
    local name="$1"; shift
    local f="$W/$name.gguf"
    if ! "$PY" "$HERE/make_tiny_tq2.py" -o "$f" "$@" >/dev/null 2>"$W/$name.gen.err"; then
        printf '%-40s GEN-FAIL %s\n' "$name" "$(tail -n 1 "$W/$name.gen.err")"; return
    fi
    if "$PY" "$HERE/logits.py" -m "$f" --ids $IDS -o "$W/$name.bin" >"$W/$name.out" 2>"$W/$name.log"; then
        local cmp
        cmp=$("$PY" "$HERE/compare.py" "$W/$name.bin" "$W/base.bin" --n-vocab 512 -q 2>&1 \
              | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print("max_rel_vs_base=%.3g top1=%s/8" % (d["max_rel"], d["top1_agree"]) if "max_rel" in d else "different shape")' 2>/dev/null || echo "shape differs")
        local warn
        warn=$(grep -m1 -iE 'warn|missing|not found' "$W/$name.log" | cut -c1-110)
        printf '%-40s LOADS    %s %s\n' "$name" "$cmp" "${warn:+| $warn}"
    else
        local err
        err=$(grep -m1 -iE 'error|exception|failed|assert|invalid|missing|wrong|cannot' "$W/$name.log" | cut -c1-150)
        printf '%-40s FAILS    %s\n' "$name" "${err:-$(tail -n 1 "$W/$name.log" | cut -c1-150)}"
    fi
}

echo "== metadata keys (dropped one at a time) =="
for k in general.name general.file_type general.quantization_version \
         bitnet.vocab_size bitnet.context_length bitnet.embedding_length bitnet.block_count \
         bitnet.feed_forward_length bitnet.attention.head_count bitnet.attention.head_count_kv \
         bitnet.rope.dimension_count bitnet.rope.freq_base bitnet.attention.layer_norm_rms_epsilon \
         tokenizer.ggml.model tokenizer.ggml.pre tokenizer.ggml.tokens tokenizer.ggml.scores \
         tokenizer.ggml.token_type tokenizer.ggml.bos_token_id tokenizer.ggml.eos_token_id \
         tokenizer.ggml.unknown_token_id tokenizer.ggml.add_bos_token tokenizer.ggml.add_eos_token; do
    probe "nokey-$k" --drop-key "$k"
done
echo "== tensors (dropped one at a time) =="
for t in token_embd output_norm blk.0.attn_norm blk.0.attn_q blk.0.attn_k blk.0.attn_v \
         blk.0.attn_sub_norm blk.0.attn_output blk.0.ffn_norm blk.0.ffn_gate blk.0.ffn_up \
         blk.0.ffn_sub_norm blk.0.ffn_down; do
    probe "notensor-$t" --drop-tensor "$t.weight"
done
echo "== variants =="
probe "with-output.weight"      --add-output
probe "with-.scale-tensors"     --scale-tensors
probe "gqa-heads_kv-2"          --heads-kv 2
probe "token_embd-f32"          --embd-type f32
probe "token_embd-q8_0"         --embd-type q8_0
probe "rope-base-500000"        --rope-base 500000
probe "ctx-64"                  --ctx 64
echo "(files and logs in $W)"
