#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers` for bitnetc's tokenizer tests.

Usage: hf_tokenizer_ids.py TOKENIZER_JSON STRINGS_TXT > ids.json

STRINGS_TXT holds one string per line with the escapes \\n \\t \\r \\\\ and \\u{HEX}
(same rules as models/tests/tokenizer.rs). Prints {"tokenizer": ..., "strings": [...],
"ids": [[...], ...]} where ids[i] = encode(strings[i], add_special_tokens=False).ids.

Needs: pip install tokenizers
"""
import json
import re
import sys


def unescape(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            if n == "n":
                out.append("\n"); i += 2; continue
            if n == "t":
                out.append("\t"); i += 2; continue
            if n == "r":
                out.append("\r"); i += 2; continue
            if n == "\\":
                out.append("\\"); i += 2; continue
            m = re.match(r"u\{([0-9A-Fa-f]{1,6})\}", line[i + 1:])
            if m:
                out.append(chr(int(m.group(1), 16))); i += 1 + m.end(); continue
        out.append(c)
        i += 1
    return "".join(out)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    strings = [unescape(l) for l in lines]
    ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    json.dump({"tokenizer": sys.argv[1], "strings": strings, "ids": ids}, sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
