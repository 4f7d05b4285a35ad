#!/usr/bin/env python3
"""Token ids from mainline llama.cpp (llama-cpp-python) for a list of strings.

Two modes:

  tokenize_ids.py --model M.gguf --strings FILE [--log LOG]
      Loads M.gguf with `Llama(model_path, vocab_only=True)` and prints one JSON array with, per
      string, the ids of `llama.tokenize(text.encode(), add_bos=False, special=True)`
      (llama_tokenize with add_special = false, parse_special = true).
      FILE is either a JSON array of strings (name ends in `.json`) or one string per line with
      the escapes of models/tests/data/tokenizer_strings.txt: \\n \\t \\r \\\\ \\u{HEX}.
      llama.cpp's load log (stderr of the C library) is copied to LOG when given; the last line
      printed to stderr is `pre-tokenizer: <name>` as far as the log tells.

  tokenize_ids.py --make-vocab-only SRC.gguf OUT.gguf [--keep-pre]
      Writes a vocab-only GGUF that mainline llama.cpp accepts: `general.architecture = "llama"`,
      a few placeholder llama hyper-parameters, no tensors, and every `tokenizer.*` key of SRC
      except `tokenizer.ggml.pre` (unless --keep-pre), so llama.cpp falls back to its `default`
      pre-tokenizer. Only SRC's metadata is parsed, so SRC may hold tensor types that gguf-py
      does not know (I2_S).
"""

import argparse
import json
import os
import re
import struct
import sys
import tempfile


def unescape(line):
    out = []
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = line[i + 1]
        if nxt in "ntr\\":
            out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[nxt])
            i += 2
            continue
        if nxt == "u":
            m = re.match(r"u\{([0-9A-Fa-f]+)\}", line[i + 1 :])
            if m:
                cp = int(m.group(1), 16)
                if cp <= 0x10FFFF and not (0xD800 <= cp <= 0xDFFF):
                    out.append(chr(cp))
                    i += 1 + m.end()
                    continue
        out.append("\\")
        i += 1
    return "".join(out)


def read_strings(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        v = json.loads(text)
        assert isinstance(v, list) and all(isinstance(s, str) for s in v), "expected a JSON array of strings"
        return v
    if text.endswith("\n"):
        text = text[:-1]
    return [unescape(l) for l in text.split("\n")]


# --- minimal GGUF metadata reader (keys only; stops before the tensor infos) -------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_metadata(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos = 24

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def rd_str():
        nonlocal pos
        n = rd("<Q")
        s = data[pos : pos + n].decode("utf-8", errors="surrogateescape")
        pos += n
        return s

    def rd_val(t):
        if t in _SCALARS:
            return rd(_SCALARS[t])
        if t == 8:
            return rd_str()
        if t == 9:
            et = rd("<I")
            n = rd("<Q")
            return (et, [rd_val(et) for _ in range(n)])
        raise SystemExit(f"{path}: unknown GGUF value type {t}")

    kvs = []
    for _ in range(n_kv):
        key = rd_str()
        t = rd("<I")
        kvs.append((key, t, rd_val(t)))
    return kvs


def make_vocab_only(src, out, keep_pre):
    import gguf  # only needed here

    kvs = read_metadata(src)
    w = gguf.GGUFWriter(out, "llama")
    # placeholder hyper-parameters; vocab_only loads read but never use them
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    w.add_name("bitnetc-vocab-only")
    gv = gguf.GGUFValueType
    for key, t, val in kvs:
        if not key.startswith("tokenizer."):
            continue
        if key == "tokenizer.ggml.pre" and not keep_pre:
            continue
        if t == 9:
            et, items = val
            if et == 8:
                items = [s.encode("utf-8", errors="surrogateescape") for s in items]
            w.add_key_value(key, items, gv.ARRAY, sub_type=gv(et))
        else:
            if t == 8:
                val = val.encode("utf-8", errors="surrogateescape")
            w.add_key_value(key, val, gv(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --- tokenization ---------------------------------------------------------------------------------


def tokenize(model, strings, log_path):
    import llama_cpp

    # capture the C library's stderr (load log) to learn which pre-tokenizer it chose
    tmp = tempfile.TemporaryFile(mode="w+b")
    saved = os.dup(2)
    sys.stderr.flush()
    os.dup2(tmp.fileno(), 2)
    try:
        llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=True)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    tmp.seek(0)
    log = tmp.read().decode("utf-8", errors="replace")
    if log_path:
        with open(log_path, "w", encoding="utf-8") as f:
            f.write(log)
    pre = None
    m = re.search(r"missing pre-tokenizer type, using: '([^']*)'", log)
    if m:
        pre = m.group(1)
    else:
        m = re.search(r"tokenizer\.ggml\.pre\s+str\s*=\s*(\S+)", log)
        if m:
            pre = m.group(1)
    out = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=True) for s in strings]
    print(json.dumps(out))
    print(f"pre-tokenizer: {pre}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--strings")
    ap.add_argument("--log")
    ap.add_argument("--make-vocab-only", nargs=2, metavar=("SRC", "OUT"))
    ap.add_argument("--keep-pre", action="store_true")
    a = ap.parse_args()
    if a.make_vocab_only:
        make_vocab_only(a.make_vocab_only[0], a.make_vocab_only[1], a.keep_pre)
        return
    if not a.model or not a.strings:
        ap.error("--model and --strings are required (or use --make-vocab-only)")
    tokenize(a.model, read_strings(a.strings), a.log)


if __name__ == "__main__":
    main()
