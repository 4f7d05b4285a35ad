#!/usr/bin/env python3
"""Plain-numpy forward pass of a `bitnet`-arch GGUF (a third opinion next to llama.cpp/bitnetc).

    python ref_forward.py --model M.gguf --ids 1,2,3 --out ref.bin [--ggml]

Written from /work/shared/reference/bitnet-gguf.md §3.4 (SiLU-gated FFN, attn/ffn sub-norms,
NeoX RoPE, tied output = token_embd, optional `.scale` tensors). Weights are dequantized with the
`gguf` package. Default arithmetic is f64 (the "ideal" model). With --ggml it additionally mimics
mainline's CPU rounding points: activations quantized to Q8_K (per 256 values, scale from the
signed extreme) before every TQ matmul, Q/K/V and softmax probabilities rounded to f16, and the
final normed state rounded to f16 before the F16 output head. Output layout as logits.py.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover
    sys.exit("the `gguf` package is missing; run scripts/llama_cpp/setup.sh and use its venv")


def kv(reader: "gguf.GGUFReader", key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def q8k(x: np.ndarray) -> np.ndarray:
    """Round-trip rows of x through Q8_K (256-blocks; iscale = -127/signed extreme)."""
    x = x.astype(np.float32)
    n = x.shape[-1]
    if n % 256:
        return x
    b = x.reshape(*x.shape[:-1], n // 256, 256)
    idx = np.abs(b).argmax(axis=-1)
    ext = np.take_along_axis(b, idx[..., None], axis=-1)  # signed extreme
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(ext != 0, np.float32(-127.0) / ext, np.float32(0.0)).astype(np.float32)
    q = np.clip(np.rint(iscale * b), -128, 127).astype(np.float32)
    d = np.where(iscale != 0, np.float32(1.0) / iscale, np.float32(0.0)).astype(np.float32)
    return (q * d).reshape(x.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", "-o", required=True)
    ap.add_argument("--ggml", action="store_true", help="mimic mainline CPU rounding points")
    args = ap.parse_args()
    ids = [int(t) for t in args.ids.replace(" ", ",").split(",") if t]

    r = gguf.GGUFReader(args.model)
    arch = kv(r, "general.architecture")
    if arch != "bitnet":
        print(f"warning: architecture {arch!r}; computing the `bitnet` graph anyway", file=sys.stderr)
    A = arch
    E = int(kv(r, f"{A}.embedding_length"))
    L = int(kv(r, f"{A}.block_count"))
    H = int(kv(r, f"{A}.attention.head_count"))
    HKV = int(kv(r, f"{A}.attention.head_count_kv", H))
    eps = float(kv(r, f"{A}.attention.layer_norm_rms_epsilon"))
    base = float(kv(r, f"{A}.rope.freq_base", 10000.0))
    hd = E // H
    n_rot = int(kv(r, f"{A}.rope.dimension_count", hd))

    T = {}
    embd_f16 = False
    for t in r.tensors:
        if t.name == "token_embd.weight":
            embd_f16 = t.tensor_type == gguf.GGMLQuantizationType.F16
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        T[t.name] = np.asarray(a, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])

    ggml = args.ggml
    f16 = (lambda x: x.astype(np.float16).astype(np.float64)) if ggml else (lambda x: x)

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def lin(name, x):
        xi = q8k(x).astype(np.float64) if ggml and name != "token_embd" else x
        y = xi @ T[name + ".weight"].T
        s = T.get(name + ".scale")
        return y * s.reshape(()) if s is not None else y

    P = len(ids)
    pos = np.arange(P, dtype=np.float64)
    half = n_rot // 2
    inv = base ** (-2.0 * np.arange(half) / n_rot)
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(x, nh):  # x [P, nh*hd]
        x = x.reshape(P, nh, hd).copy()
        x0, x1 = x[:, :, :half].copy(), x[:, :, half:n_rot].copy()
        x[:, :, :half] = x0 * cos[:, None, :] - x1 * sin[:, None, :]
        x[:, :, half:n_rot] = x0 * sin[:, None, :] + x1 * cos[:, None, :]
        return x

    emb = T["token_embd.weight"]
    x = emb[ids].copy()
    mask = np.triu(np.full((P, P), -np.inf), 1)
    g = H // HKV
    for i in range(L):
        p = f"blk.{i}."
        a = rms(x, T[p + "attn_norm.weight"])
        q = rope(lin(p + "attn_q", a), H)
        k = rope(lin(p + "attn_k", a), HKV)
        v = lin(p + "attn_v", a).reshape(P, HKV, hd)
        q, k, v = f16(q), f16(k), f16(v)
        o = np.empty((P, H, hd))
        for h in range(H):
            s = q[:, h, :] @ k[:, h // g, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s = f16(s / s.sum(axis=1, keepdims=True))
            o[:, h, :] = s @ v[:, h // g, :]
        o = rms(o.reshape(P, E), T[p + "attn_sub_norm.weight"])
        x = x + lin(p + "attn_output", o)
        f = rms(x, T[p + "ffn_norm.weight"])
        gt, up = lin(p + "ffn_gate", f), lin(p + "ffn_up", f)
        z = gt / (1.0 + np.exp(-gt)) * up
        z = rms(z, T[p + "ffn_sub_norm.weight"])
        x = x + lin(p + "ffn_down", z)
    x = rms(x, T["output_norm.weight"])
    if embd_f16:  # ggml converts the activation to the F16 weight's vec_dot type
        x = f16(x)
    logits = (x @ emb.T).astype("<f4")
    logits.tofile(args.out)
    print(f"n_vocab={logits.shape[1]} positions={P}")
    print(json.dumps({"out": args.out, "n_vocab": int(logits.shape[1]), "positions": P,
                      "ggml": ggml, "argmax": [int(t) for t in logits.argmax(axis=1)]}))


if __name__ == "__main__":
    main()
