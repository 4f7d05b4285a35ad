//! Small built-in vocabularies for synthetic test models, trained deterministically on an
//! embedded corpus (`corpus.txt`: English prose, code-ish text, accented, Cyrillic, Greek,
//! CJK and other scripts, emoji).

use std::collections::{BTreeMap, HashMap};

use super::bpe::bytes_to_unicode;
use super::presplit::Splitter;
use super::{token_type, PreSplit, TokenizerError, TokenizerSpec};

/// The embedded training corpus.
pub const CORPUS: &str = include_str!("corpus.txt");

/// Control tokens of the byte-level vocabulary, in id order after the merges.
pub const BPE_CONTROL_TOKENS: [&str; 5] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];

/// Chat template stored with the byte-level vocabulary. Like the placeholder the BitNet
/// converter writes, it contains `BITNET`, so the fork's formatter is selected.
pub const BITNET_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}\
{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] }}\
{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '<|eot_id|>' + 'BITNETAssistant: ' }}\
{% else %}{{ message['content'] }}{% endif %}{% endfor %}";

/// Learns up to `n_merges` merges on `words` (symbol sequences with counts). Each step merges
/// the most frequent adjacent pair (ties: the smallest pair of ids). `texts` holds the symbol
/// strings and grows with each new symbol; returns the merges as (left, right) ids.
fn train(
    words: &mut [(Vec<u32>, u64)],
    texts: &mut Vec<String>,
    n_merges: usize,
) -> Vec<(u32, u32)> {
    let mut merges = Vec::new();
    let mut index: HashMap<String, u32> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    while merges.len() < n_merges {
        let mut counts: HashMap<(u32, u32), u64> = HashMap::new();
        for (w, c) in words.iter() {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += c;
            }
        }
        let Some((&best, _)) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        else {
            break; // every word is a single symbol
        };
        let text = format!("{}{}", texts[best.0 as usize], texts[best.1 as usize]);
        let id = *index.entry(text.clone()).or_insert_with(|| {
            texts.push(text);
            (texts.len() - 1) as u32
        });
        for (w, _) in words.iter_mut() {
            let mut i = 0;
            let mut out = Vec::with_capacity(w.len());
            while i < w.len() {
                if i + 1 < w.len() && (w[i], w[i + 1]) == best {
                    out.push(id);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *w = out;
        }
        merges.push(best);
    }
    merges
}

/// A small byte-level BPE vocabulary (model `gpt2`, GPT-2 byte-to-unicode alphabet): the 256
/// byte symbols (id = byte value), then one token per merge learned on [`CORPUS`] (pre-split with
/// the `default` rules), then the control tokens [`BPE_CONTROL_TOKENS`], then
/// `<|reserved_special_token_N|>` control tokens up to exactly `n_vocab` entries. Training stops
/// early if the corpus runs out of pairs. Errors if `n_vocab` is too small.
pub fn byte_level_bpe_spec(
    n_vocab: usize,
    n_merges: usize,
) -> Result<TokenizerSpec, TokenizerError> {
    let needed = 256 + n_merges + BPE_CONTROL_TOKENS.len();
    if n_vocab < needed {
        return Err(TokenizerError::VocabTooSmall { needed, n_vocab });
    }
    let mut texts: Vec<String> = (0..=255u8).map(|b| bytes_to_unicode(&[b])).collect();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for w in Splitter::new(PreSplit::Default).split(CORPUS) {
        *counts.entry(w).or_default() += 1;
    }
    let mut words: Vec<(Vec<u32>, u64)> = counts
        .into_iter()
        .map(|(w, c)| (w.bytes().map(u32::from).collect(), c))
        .collect();
    let merges = train(&mut words, &mut texts, n_merges);
    let merges: Vec<String> = merges
        .iter()
        .map(|&(a, b)| format!("{} {}", texts[a as usize], texts[b as usize]))
        .collect();

    let mut tokens = texts;
    let mut types = vec![token_type::NORMAL; tokens.len()];
    let first_control = tokens.len() as u32;
    for t in BPE_CONTROL_TOKENS {
        tokens.push(t.to_string());
        types.push(token_type::CONTROL);
    }
    let mut n = 0;
    while tokens.len() < n_vocab {
        tokens.push(format!("<|reserved_special_token_{n}|>"));
        types.push(token_type::CONTROL);
        n += 1;
    }
    let scores = types
        .iter()
        .map(|&t| {
            if t == token_type::CONTROL {
                -1000.0
            } else {
                0.0
            }
        })
        .collect();
    Ok(TokenizerSpec {
        model: "gpt2".into(),
        pre: None,
        tokens,
        token_types: Some(types),
        scores: Some(scores),
        merges,
        bos_id: Some(first_control),
        eos_id: Some(first_control + 1),
        unk_id: None,
        pad_id: None,
        eot_id: Some(first_control + 4),
        eom_id: None,
        add_bos: Some(true),
        add_eos: Some(false),
        add_space_prefix: Some(false),
        chat_template: Some(BITNET_CHAT_TEMPLATE.into()),
    })
}

/// A small SentencePiece-style vocabulary (model `llama`): `<unk>` = 0 (unknown), `<s>` = 1 and
/// `</s>` = 2 (control), `<0x00>`..`<0xFF>` (byte, ids 3..=258), then `n_pieces` pieces learned by
/// BPE on the corpus' whitespace-separated words written `▁word` (scores 0, −1, −2, … in merge
/// order), then every single character of the corpus (lower scores), then `<unused_N>` unused
/// tokens up to `n_vocab`. `add_space_prefix` and `add_bos` are true.
pub fn sentencepiece_spec(
    n_vocab: usize,
    n_pieces: usize,
) -> Result<TokenizerSpec, TokenizerError> {
    // characters, most frequent first
    let mut char_counts: BTreeMap<char, u64> = BTreeMap::new();
    char_counts.insert('▁', 0);
    let mut word_counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in CORPUS.split_whitespace() {
        let w = format!("▁{w}");
        for c in w.chars() {
            *char_counts.entry(c).or_default() += 1;
        }
        *word_counts.entry(w).or_default() += 1;
    }
    let mut chars: Vec<(char, u64)> = char_counts.into_iter().collect();
    chars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let needed = 3 + 256 + n_pieces + chars.len();
    if n_vocab < needed {
        return Err(TokenizerError::VocabTooSmall { needed, n_vocab });
    }
    let mut texts: Vec<String> = chars.iter().map(|(c, _)| c.to_string()).collect();
    let n_chars = texts.len();
    let char_id: HashMap<char, u32> = chars
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (*c, i as u32))
        .collect();
    let mut words: Vec<(Vec<u32>, u64)> = word_counts
        .into_iter()
        .map(|(w, c)| (w.chars().map(|c| char_id[&c]).collect(), c))
        .collect();
    let merges = train(&mut words, &mut texts, n_pieces);
    // merged pieces in learning order (a merge may re-create an existing piece: skip those)
    let mut pieces: Vec<String> = Vec::new();
    for (a, b) in merges {
        let t = format!("{}{}", texts[a as usize], texts[b as usize]);
        if !pieces.contains(&t) && !texts[..n_chars].contains(&t) {
            pieces.push(t);
        }
    }

    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u32 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(token_type::BYTE);
        scores.push(0.0);
    }
    for (i, p) in pieces.into_iter().enumerate() {
        tokens.push(p);
        types.push(token_type::NORMAL);
        scores.push(-(i as f32));
    }
    for (i, c) in texts[..n_chars].iter().enumerate() {
        tokens.push(c.clone());
        types.push(token_type::NORMAL);
        scores.push(-1.0e6 - i as f32);
    }
    let mut n = 0;
    while tokens.len() < n_vocab {
        tokens.push(format!("<unused_{n}>"));
        types.push(token_type::UNUSED);
        scores.push(-1.0e9);
        n += 1;
    }
    Ok(TokenizerSpec {
        model: "llama".into(),
        pre: Some("default".into()),
        tokens,
        token_types: Some(types),
        scores: Some(scores),
        merges: Vec::new(),
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        pad_id: None,
        eot_id: None,
        eom_id: None,
        add_bos: Some(true),
        add_eos: Some(false),
        add_space_prefix: Some(true),
        chat_template: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_builtin_sizes_and_determinism() {
        let a = byte_level_bpe_spec(1024, 500).unwrap();
        assert_eq!(a.tokens.len(), 1024);
        assert_eq!(a.merges.len(), 500);
        assert_eq!(a, byte_level_bpe_spec(1024, 500).unwrap());
        assert!(matches!(
            byte_level_bpe_spec(700, 500),
            Err(TokenizerError::VocabTooSmall { .. })
        ));
        let s = sentencepiece_spec(1024, 300).unwrap();
        assert_eq!(s.tokens.len(), 1024);
        assert_eq!(s.tokens[3], "<0x00>");
        assert_eq!(s, sentencepiece_spec(1024, 300).unwrap());
        assert!(matches!(
            sentencepiece_spec(400, 300),
            Err(TokenizerError::VocabTooSmall { .. })
        ));
    }
}
