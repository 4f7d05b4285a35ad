#!/usr/bin/env python3
"""Evaluate token ids with mainline llama.cpp (via llama-cpp-python) and dump all logits.

    .cache/llama-cpp/venv/bin/python scripts/llama_cpp/logits.py \
        --model M.gguf --ids 1,2,3 --out llama.bin [--threads 2] [--kv-type f16|f32] [--quiet]

The ids are decoded in ONE llama_decode batch (n_batch = n_ubatch >= len(ids)) starting at
position 0, with logits requested for every position. No BOS is added: pass it yourself if you
want it (e.g. `--ids 1,...` for an SPM vocab). OUT is little-endian f32, row-major
[positions x n_vocab] — the same layout `bitnetc run --dump-logits` writes.
Prints `n_vocab=V positions=P` (and a JSON line) on stdout; llama.cpp's loader log goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def parse_ids(s: str) -> list[int]:
    s = s.strip()
    if not s:
        raise SystemExit("--ids is empty")
    return [int(x) for x in s.replace(" ", ",").split(",") if x != ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated token ids, e.g. 1,2,3")
    ap.add_argument("--out", "-o", required=True)
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=0, help="default: max(len(ids), 64)")
    ap.add_argument("--kv-type", choices=["f16", "f32"], default="f16",
                    help="KV cache type (llama.cpp default f16; f32 removes one rounding source)")
    ap.add_argument("--quiet", "-q", action="store_true", help="silence llama.cpp's log")
    args = ap.parse_args()

    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama_cpp is missing; run scripts/llama_cpp/setup.sh and use "
                 ".cache/llama-cpp/venv/bin/python")

    ids = parse_ids(args.ids)
    n = len(ids)
    n_ctx = args.n_ctx or max(n, 64)
    if n_ctx < n:
        sys.exit(f"--n-ctx {n_ctx} < number of ids {n}")

    kw = {}
    if args.kv_type == "f32":
        kw["type_k"] = llama_cpp.GGML_TYPE_F32
        kw["type_v"] = llama_cpp.GGML_TYPE_F32

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=n_ctx,
        n_batch=max(n, 1),
        n_ubatch=max(n, 1),
        logits_all=True,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=0,
        flash_attn=False,
        use_mmap=True,
        verbose=not args.quiet,
        **kw,
    )
    n_vocab = llm.n_vocab()
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        sys.exit(f"token ids out of range [0, {n_vocab}): {bad}")

    llm.reset()
    llm.eval(ids)  # n_batch >= len(ids): a single llama_decode call
    logits = np.asarray(llm.scores[:n, :], dtype="<f4")
    if logits.shape != (n, n_vocab):
        sys.exit(f"unexpected logits shape {logits.shape}")
    if not np.all(np.isfinite(logits)):
        print("warning: non-finite logits", file=sys.stderr)
    logits.tofile(args.out)

    print(f"n_vocab={n_vocab} positions={n}")
    summary = {
        "model": args.model,
        "out": args.out,
        "n_vocab": n_vocab,
        "positions": n,
        "argmax": [int(i) for i in logits.argmax(axis=1)],
        "finite": bool(np.all(np.isfinite(logits))),
        "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
