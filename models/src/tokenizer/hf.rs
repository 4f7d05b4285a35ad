//! Reading a Hugging Face `tokenizer.json` (BPE model) into a [`TokenizerSpec`].

use serde_json::Value;

use super::presplit::LLAMA3_PATTERN;
use super::{token_type, TokenizerError, TokenizerSpec};

fn err(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::HfJson(msg.into())
}

/// True when some `Split` pre-tokenizer in `v` uses the Llama-3 regex.
fn has_llama3_split(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("Split") {
                if let Some(p) = m
                    .get("pattern")
                    .and_then(|p| p.get("Regex"))
                    .and_then(Value::as_str)
                {
                    if p == LLAMA3_PATTERN {
                        return true;
                    }
                }
            }
            m.values().any(has_llama3_split)
        }
        Value::Array(a) => a.iter().any(has_llama3_split),
        _ => false,
    }
}

/// Builds a `gpt2` spec from a `tokenizer.json` whose model is BPE: the vocabulary plus the
/// `added_tokens` (special → control type, others → user-defined), merges given either as
/// `"a b"` strings or `["a", "b"]` pairs, `pre = "llama-bpe"` when the pre-tokenizer uses the
/// Llama-3 regex (else `None`), BOS/EOS = `<|begin_of_text|>`/`<|end_of_text|>` and EOT =
/// `<|eot_id|>` when present. Ids must be contiguous from 0.
pub fn spec_from_hf_tokenizer_json(json: &str) -> Result<TokenizerSpec, TokenizerError> {
    let root: Value = serde_json::from_str(json).map_err(|e| err(format!("not JSON: {e}")))?;
    let model = root
        .get("model")
        .ok_or_else(|| err("no \"model\" section"))?;
    let ty = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if ty != "BPE" {
        return Err(err(format!(
            "model type {ty:?} is not supported (only BPE)"
        )));
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| err("model.vocab is not an object"))?;
    let mut entries: Vec<(u32, String, i32)> = Vec::with_capacity(vocab.len() + 256);
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .filter(|&i| i <= u32::MAX as u64)
            .ok_or_else(|| err(format!("bad id for {text:?}")))?;
        entries.push((id as u32, text.clone(), token_type::NORMAL));
    }
    if let Some(added) = root.get("added_tokens").and_then(Value::as_array) {
        for a in added {
            let id = a
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| err("added token without id"))? as u32;
            let content = a
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| err("added token without content"))?;
            let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
            let ty = if special {
                token_type::CONTROL
            } else {
                token_type::USER_DEFINED
            };
            entries.push((id, content.to_string(), ty));
        }
    }
    entries.sort_by_key(|e| e.0);
    let mut tokens: Vec<String> = Vec::with_capacity(entries.len());
    let mut types: Vec<i32> = Vec::with_capacity(entries.len());
    for (id, text, ty) in entries {
        let id = id as usize;
        if id < tokens.len() {
            if tokens[id] != text {
                return Err(err(format!(
                    "id {id} is both {:?} and {text:?}",
                    tokens[id]
                )));
            }
            types[id] = ty; // an added token re-declaring a vocab entry sets its type
        } else if id == tokens.len() {
            tokens.push(text);
            types.push(ty);
        } else {
            return Err(err(format!(
                "token ids are not contiguous: id {} is missing",
                tokens.len()
            )));
        }
    }
    if tokens.is_empty() {
        return Err(TokenizerError::EmptyVocab);
    }

    let merges = match model.get("merges") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ms)) => ms
            .iter()
            .enumerate()
            .map(|(i, m)| match m {
                Value::String(s) => Ok(s.clone()),
                Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                    (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                    _ => Err(err(format!("merge #{i} is not a pair of strings"))),
                },
                _ => Err(err(format!("merge #{i} is neither \"a b\" nor [a, b]"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err("model.merges is not an array")),
    };

    let find = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);
    let bos_id = find("<|begin_of_text|>");
    let eos_id = find("<|end_of_text|>");
    let eot_id = find("<|eot_id|>");
    let eom_id = find("<|eom_id|>");
    let pre = root
        .get("pre_tokenizer")
        .filter(|p| has_llama3_split(p))
        .map(|_| "llama-bpe".to_string());
    let scores = types
        .iter()
        .map(|&t| {
            if t == token_type::NORMAL {
                0.0
            } else {
                -1000.0
            }
        })
        .collect();
    Ok(TokenizerSpec {
        model: "gpt2".into(),
        pre,
        tokens,
        token_types: Some(types),
        scores: Some(scores),
        merges,
        bos_id,
        eos_id,
        unk_id: None,
        pad_id: None,
        eot_id,
        eom_id,
        add_bos: Some(bos_id.is_some()),
        add_eos: Some(false),
        add_space_prefix: Some(false),
        chat_template: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_hf_minimal() {
        let j = r#"{"added_tokens":[{"id":4,"content":"<|begin_of_text|>","special":true},
            {"id":5,"content":"<|eot_id|>","special":true},{"id":6,"content":"<x>","special":false}],
            "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}]},
            "model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3},"merges":[["a","b"]]}}"#;
        let s = spec_from_hf_tokenizer_json(j).unwrap();
        assert_eq!(s.tokens.len(), 7);
        assert_eq!(s.merges, ["a b"]);
        assert_eq!(s.pre.as_deref(), Some("llama-bpe"));
        assert_eq!(s.bos_id, Some(4));
        assert_eq!(s.eos_id, None);
        assert_eq!(s.eot_id, Some(5));
        assert_eq!(s.token_types.as_ref().unwrap()[6], token_type::USER_DEFINED);
        let bad = r#"{"model":{"type":"BPE","vocab":{"a":0,"b":2},"merges":[]}}"#;
        assert!(spec_from_hf_tokenizer_json(bad).is_err());
        let bad = r#"{"model":{"type":"Unigram","vocab":[]}}"#;
        assert!(spec_from_hf_tokenizer_json(bad).is_err());
    }
}
