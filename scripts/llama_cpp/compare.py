#!/usr/bin/env python3
"""Compare two logit dumps (little-endian f32, row-major [positions x n_vocab]).

    python compare.py A.bin B.bin --n-vocab V [--tol 1e-2] [--quiet]

B is the reference (relative error is normalised by B's row maximum):
  per row r:  rel_r = max_v |a - b| / max_v |b|,  mae_r = mean_v |a - b|,
              top1_r = argmax(a) == argmax(b)
  overall:    max_rel = max_r rel_r, mean abs error over everything, top-1 agreement count.

Exit status: 0 ok; 1 if --tol is given and max_rel > tol; 2 if the shapes differ or a file's size
is not a multiple of n_vocab; 3 if a file contains NaN/Inf. The last stdout line is a JSON summary.
Needs numpy only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def load(path: str, n_vocab: int) -> np.ndarray:
    size = os.path.getsize(path)
    if size % 4 or (size // 4) % n_vocab:
        print(f"error: {path}: {size} bytes is not a whole number of f32 rows of {n_vocab}",
              file=sys.stderr)
        sys.exit(2)
    return np.fromfile(path, dtype="<f4").reshape(-1, n_vocab).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="candidate (e.g. bitnetc's dump)")
    ap.add_argument("b", help="reference (e.g. llama.cpp's dump)")
    ap.add_argument("--n-vocab", type=int, required=True)
    ap.add_argument("--tol", type=float, default=None,
                    help="fail (exit 1) when the overall max relative error exceeds this")
    ap.add_argument("--quiet", "-q", action="store_true", help="only print the JSON line")
    args = ap.parse_args()

    a = load(args.a, args.n_vocab)
    b = load(args.b, args.n_vocab)
    if a.shape != b.shape:
        print(f"error: shape mismatch: {args.a} {a.shape} vs {args.b} {b.shape}", file=sys.stderr)
        print(json.dumps({"ok": False, "error": "shape mismatch",
                          "shape_a": list(a.shape), "shape_b": list(b.shape)}))
        sys.exit(2)
    if a.shape[0] == 0:
        print("error: no positions", file=sys.stderr)
        sys.exit(2)
    finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b)))

    diff = np.abs(a - b)
    denom = np.max(np.abs(b), axis=1)
    denom = np.where(denom > 0, denom, 1.0)
    rel = diff.max(axis=1) / denom
    mae = diff.mean(axis=1)
    am, bm = a.argmax(axis=1), b.argmax(axis=1)
    top1 = am == bm
    n = a.shape[0]

    if not args.quiet:
        print(f"{'pos':>4} {'max_rel':>11} {'max_abs':>11} {'mean_abs':>11} {'argmax_a':>8} "
              f"{'argmax_b':>8} top1")
        for r in range(n):
            print(f"{r:>4} {rel[r]:11.3e} {diff[r].max():11.3e} {mae[r]:11.3e} {am[r]:>8} "
                  f"{bm[r]:>8} {'ok' if top1[r] else 'DIFF'}")
        print(f"overall: positions={n} n_vocab={args.n_vocab} max_rel={rel.max():.3e} "
              f"max_abs={diff.max():.3e} mean_abs={diff.mean():.3e} "
              f"top1={int(top1.sum())}/{n}")

    ok = finite and (args.tol is None or rel.max() <= args.tol)
    print(json.dumps({
        "ok": bool(ok),
        "positions": n,
        "n_vocab": args.n_vocab,
        "max_rel": float(rel.max()) if n else 0.0,
        "max_abs": float(diff.max()) if n else 0.0,
        "mean_abs": float(diff.mean()) if n else 0.0,
        "top1_agree": int(top1.sum()),
        "finite": finite,
        "tol": args.tol,
        "per_pos_max_rel": [float(x) for x in rel],
    }))
    if not finite:
        sys.exit(3)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
