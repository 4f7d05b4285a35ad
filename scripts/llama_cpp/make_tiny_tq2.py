#!/usr/bin/env python3
"""Write a tiny, seeded, random BitNet (arch `bitnet`) GGUF that mainline llama.cpp loads.

Linear weights are exact ternary matrices times one per-tensor scale, stored as TQ2_0 with
gguf-py's reference quantizer (every TQ2_0 block then has d = that scale, so the quantization is
lossless). token_embd is F16 (also the tied output head), norms are F32. The tokenizer is a minimal
SentencePiece (`llama`) vocabulary: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> and
unique filler pieces up to --vocab.

    python make_tiny_tq2.py -o /tmp/tiny.gguf [--seed 1] [--vocab 512] [--embd 256] [--ff 512]
                            [--layers 2] [--heads 4] [--scale-tensors] [--ctx 256]

Only what mainline needs for arch `bitnet` is written (see README.md "What mainline requires").
Runs with the venv from setup.sh (needs numpy and the PyPI `gguf` package).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError:  # pragma: no cover
    sys.exit("the `gguf` package is missing; run scripts/llama_cpp/setup.sh and use its venv")

ARCH = "bitnet"


def f16_exact(x: float) -> float:
    """Round a scale to the nearest f16 so that the TQ2_0 block scale stores it exactly."""
    return float(np.float16(x))


def ternary(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    """rows x cols (numpy order = GGUF ne [cols, rows]) matrix of {-s, 0, +s}.

    Every 256-element block holds at least one non-zero, so TQ2_0's d = max|x| = s for all blocks.
    """
    t = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
    blocks = t.reshape(rows, cols // 256, 256)
    empty = ~np.any(blocks != 0, axis=2)
    blocks[empty, 0] = 1
    return (t.astype(np.float32) * np.float32(scale))


def norm_weight(rng: np.random.Generator, n: int) -> np.ndarray:
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def spm_vocab(n_vocab: int):
    """<unk>, <s>, </s>, <0x00>..<0xFF>, then unique filler pieces."""
    if n_vocab < 3 + 256 + 1:
        raise SystemExit("--vocab must be at least 260")
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [
        gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    fillers: list[str] = ["\u2581"] + list(letters) + ["\u2581" + c for c in letters]
    fillers += ["\u2581" + a + b for a in letters for b in letters]
    need = n_vocab - len(tokens)
    if need > len(fillers):
        fillers += [f"\u2581w{i}" for i in range(need - len(fillers))]
    tokens += fillers[:need]
    types += [gguf.TokenType.NORMAL] * need
    # SPM scores: higher merges first; specials/bytes 0.
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(need)]
    assert len(set(tokens)) == len(tokens) == n_vocab
    return tokens, scores, [int(t) for t in types]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--ff", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--heads-kv", type=int, default=None,
                    help="default = --heads (mainline's loader sizes wk/wv as n_embd x n_embd_gqa, "
                         "so GQA loads too; wq/wo must be n_embd x n_embd)")
    ap.add_argument("--ctx", type=int, default=256, help="bitnet.context_length")
    ap.add_argument("--rope-base", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--embd-std", type=float, default=0.1)
    ap.add_argument("--scale-tensors", action="store_true",
                    help="also write the optional per-matrix `.scale` F32[1] tensors (mainline "
                         "multiplies them onto the matmul output); weights then use scale 1 "
                         "inside TQ2_0")
    ap.add_argument("--embd-type", choices=["f16", "f32", "q8_0"], default="f16",
                    help="token_embd storage type (default f16)")
    # Loader probes (used to find out what mainline requires; see README.md):
    ap.add_argument("--drop-key", action="append", default=[], metavar="KEY",
                    help="omit this metadata key (repeatable), e.g. bitnet.feed_forward_length")
    ap.add_argument("--drop-tensor", action="append", default=[], metavar="NAME",
                    help="omit this tensor (repeatable), e.g. blk.0.attn_sub_norm.weight")
    ap.add_argument("--hidden-activation", default=None,
                    help="write bitnet.hidden_activation (e.g. relu2); mainline 0c1e5709 ignores it")
    ap.add_argument("--add-output", action="store_true",
                    help="also write an untied `output.weight` (copy of token_embd)")
    args = ap.parse_args()

    E, F, L, H = args.embd, args.ff, args.layers, args.heads
    HKV = args.heads_kv or H
    if E % 256 or F % 256:
        raise SystemExit("--embd and --ff must be multiples of 256 (TQ2_0 block size)")
    if E % H or H % HKV:
        raise SystemExit("--heads must divide --embd and be a multiple of --heads-kv")
    hd = E // H
    rng = np.random.default_rng(args.seed)

    w = gguf.GGUFWriter(args.out, ARCH)
    w.add_name(f"bitnetc-tiny-tq2-seed{args.seed}")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_TQ2_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(args.vocab)
    w.add_context_length(args.ctx)
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(args.rope_base)
    w.add_layer_norm_rms_eps(args.eps)

    if args.hidden_activation:
        w.add_string(f"{ARCH}.hidden_activation", args.hidden_activation)

    tokens, scores, types = spm_vocab(args.vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def add_tq2(name: str, rows: int, cols: int) -> None:
        # scale ~ 1/sqrt(fan_in) * U(0.5, 1.5), made f16-exact
        s = f16_exact(rng.uniform(0.5, 1.5) / np.sqrt(cols))
        if args.scale_tensors:
            m = ternary(rng, rows, cols, 1.0)
            w.add_tensor(name.replace(".weight", ".scale"), np.array([s], dtype=np.float32))
        else:
            m = ternary(rng, rows, cols, s)
        q = gguf.quants.quantize(m, QT.TQ2_0)
        w.add_tensor(name, q, raw_dtype=QT.TQ2_0)  # q is the byte shape [rows, cols/256*66]

    emb = (args.embd_std * rng.standard_normal((args.vocab, E))).astype(np.float16)
    if args.embd_type == "f16":
        w.add_tensor("token_embd.weight", emb)
    elif args.embd_type == "f32":
        w.add_tensor("token_embd.weight", emb.astype(np.float32))
    else:
        w.add_tensor("token_embd.weight", gguf.quants.quantize(emb.astype(np.float32), QT.Q8_0),
                     raw_dtype=QT.Q8_0)
    if args.add_output:
        w.add_tensor("output.weight", emb)
    w.add_tensor("output_norm.weight", norm_weight(rng, E))
    for i in range(L):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm_weight(rng, E))
        add_tq2(p + "attn_q.weight", H * hd, E)
        add_tq2(p + "attn_k.weight", HKV * hd, E)
        add_tq2(p + "attn_v.weight", HKV * hd, E)
        w.add_tensor(p + "attn_sub_norm.weight", norm_weight(rng, E))
        add_tq2(p + "attn_output.weight", E, H * hd)
        w.add_tensor(p + "ffn_norm.weight", norm_weight(rng, E))
        add_tq2(p + "ffn_gate.weight", F, E)
        add_tq2(p + "ffn_up.weight", F, E)
        w.add_tensor(p + "ffn_sub_norm.weight", norm_weight(rng, F))
        add_tq2(p + "ffn_down.weight", E, F)

    for key in args.drop_key:
        if key not in w.kv_data[0]:
            raise SystemExit(f"--drop-key {key}: no such key")
        del w.kv_data[0][key]
    for name in args.drop_tensor:
        if name not in w.tensors[0]:
            raise SystemExit(f"--drop-tensor {name}: no such tensor")
        del w.tensors[0][name]

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}: arch={ARCH} vocab={args.vocab} embd={E} ff={F} layers={L} "
          f"heads={H} heads_kv={HKV} head_dim={hd} seed={args.seed} "
          f"scale_tensors={args.scale_tensors}")


if __name__ == "__main__":
    main()
