//! Tokenizers built from GGUF metadata (reference: `bitnet-gguf.md` §4).
//!
//! Two vocabulary kinds are supported, mirroring what llama.cpp / bitnet.cpp run:
//!
//! * `gpt2` — byte-level BPE (BitNet-b1.58-2B-4T, Llama-3 vocabularies). Text is split around
//!   special tokens, pre-split into words ([`PreSplit::Default`]: the four-pass split llama.cpp
//!   uses when `tokenizer.ggml.pre` is absent; [`PreSplit::Llama3`]: the Llama-3 regex that
//!   Hugging Face `tokenizers` uses), each word's bytes are mapped through the GPT-2
//!   byte→unicode table and merged by lowest merge rank (ties: leftmost).
//! * `llama` — SentencePiece (1bitLLM models): score-priority merges over characters with
//!   `<0xHH>` byte fallback and the `▁` space marker.
//!
//! Implementation choice: the BPE and SentencePiece merge loops are hand-written here (a
//! priority queue over a linked list of symbols, see `bpe.rs` / `spm.rs`) instead of using the
//! `tokenizers` crate: the crate cannot express llama.cpp's four-pass `default` split, and the
//! merge loop is small. Pre-splitting uses `fancy-regex` with the exact patterns of §4.2
//! (Unicode general categories come from the regex crate's tables).
//!
//! Submodules: [`builtin`] (small synthetic vocabularies for test models) and [`hf`] (reading a
//! Hugging Face `tokenizer.json`).

mod bpe;
pub mod builtin;
mod chat;
pub mod hf;
mod presplit;
mod spm;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

pub use chat::{ChatFormat, ChatMessage};

/// Token type values of `tokenizer.ggml.token_type`.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Tokenizer description as stored in GGUF metadata (`tokenizer.ggml.*`), plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`; `None` means the `default` rules.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    pub scores: Option<Vec<f32>>,
    /// `"left right"`, rank = index.
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

/// Byte-level BPE pre-tokenizer split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreSplit {
    /// llama.cpp's four-pass split used when `tokenizer.ggml.pre` is absent or `default`
    /// (what bitnet.cpp does with the official 2B4T file).
    Default,
    /// The Llama-3 regex (`llama-bpe`, `llama3`, `llama-v3`), as Hugging Face tokenizers split;
    /// also enables `ignore_merges`.
    Llama3,
}

impl PreSplit {
    /// Parses a `tokenizer.ggml.pre` value.
    pub fn parse(name: &str) -> Result<PreSplit, TokenizerError> {
        match name {
            "default" => Ok(PreSplit::Default),
            "llama-bpe" | "llama3" | "llama-v3" => Ok(PreSplit::Llama3),
            other => Err(TokenizerError::UnknownPreTokenizer(other.to_string())),
        }
    }

    /// The canonical `tokenizer.ggml.pre` name.
    pub fn name(self) -> &'static str {
        match self {
            PreSplit::Default => "default",
            PreSplit::Llama3 => "llama-bpe",
        }
    }
}

impl FromStr for PreSplit {
    type Err = TokenizerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PreSplit::parse(s)
    }
}

/// Errors building a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unknown tokenizer model {0:?} (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)")]
    UnknownModel(String),
    #[error("unknown pre-tokenizer {0:?} (supported: \"default\", \"llama-bpe\", \"llama3\", \"llama-v3\")")]
    UnknownPreTokenizer(String),
    #[error("the tokenizer has no tokens")]
    EmptyVocab,
    #[error("{what} has {got} entries but there are {n_vocab} tokens")]
    LengthMismatch {
        what: &'static str,
        got: usize,
        n_vocab: usize,
    },
    #[error("{what} id {id} is out of range (vocabulary has {n_vocab} tokens)")]
    IdOutOfRange {
        what: &'static str,
        id: u32,
        n_vocab: usize,
    },
    #[error("token {id} has invalid token type {ty} (expected 1..=6)")]
    BadTokenType { id: usize, ty: i32 },
    #[error("merge #{rank} {merge:?} is malformed (expected \"left right\")")]
    MalformedMerge { rank: usize, merge: String },
    #[error("merge #{rank} {merge:?} references {token:?}, which is not in the vocabulary")]
    MergeMissingToken {
        rank: usize,
        merge: String,
        token: String,
    },
    #[error("{0} requires {1}")]
    Missing(&'static str, &'static str),
    #[error("vocabulary too small: {needed} entries are needed but n_vocab = {n_vocab}")]
    VocabTooSmall { needed: usize, n_vocab: usize },
    #[error("invalid tokenizer.json: {0}")]
    HfJson(String),
}

#[derive(Debug)]
enum Kind {
    Bpe {
        pre: PreSplit,
        splitter: presplit::Splitter,
        bpe: bpe::Bpe,
    },
    Spm {
        byte_ids: [Option<u32>; 256],
    },
}

/// A ready tokenizer (`Send + Sync`; build once, share).
#[derive(Debug)]
pub struct Tokenizer {
    kind: Kind,
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    token_to_id: HashMap<String, u32>,
    /// Special-token partition candidates (control, user-defined, unknown), longest text first.
    specials: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: HashSet<u32>,
    chat_template: Option<String>,
}

/// Token texts that end generation (forced to control type), §4.4.
const EOG_TEXTS: [&str; 7] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
];
/// Texts auto-detected as the EOT token when `eot_token_id` is absent.
const EOT_TEXTS: [&str; 6] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
];

enum Fragment<'a> {
    Raw(&'a str),
    Token(u32),
}

impl Tokenizer {
    /// Builds a tokenizer. `pre_override` forces the BPE pre-split instead of `spec.pre`
    /// (ignored for SentencePiece).
    pub fn from_spec(
        spec: &TokenizerSpec,
        pre_override: Option<PreSplit>,
    ) -> Result<Tokenizer, TokenizerError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        let is_spm = match spec.model.as_str() {
            "gpt2" => false,
            "llama" => true,
            other => return Err(TokenizerError::UnknownModel(other.to_string())),
        };
        let mut types = match &spec.token_types {
            Some(t) if t.len() != n => {
                return Err(TokenizerError::LengthMismatch {
                    what: "tokenizer.ggml.token_type",
                    got: t.len(),
                    n_vocab: n,
                })
            }
            Some(t) => t.clone(),
            None => vec![token_type::NORMAL; n],
        };
        for (id, &ty) in types.iter().enumerate() {
            if !(1..=6).contains(&ty) {
                return Err(TokenizerError::BadTokenType { id, ty });
            }
        }
        let scores = match &spec.scores {
            Some(s) if s.len() != n => {
                return Err(TokenizerError::LengthMismatch {
                    what: "tokenizer.ggml.scores",
                    got: s.len(),
                    n_vocab: n,
                })
            }
            Some(s) => s.clone(),
            None => vec![0.0; n],
        };
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in spec.tokens.iter().enumerate() {
            // llama.cpp: a later duplicate overwrites an earlier one.
            token_to_id.insert(t.clone(), i as u32);
        }
        let check = |what: &'static str, id: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            match id {
                Some(id) if id as usize >= n => Err(TokenizerError::IdOutOfRange {
                    what,
                    id,
                    n_vocab: n,
                }),
                other => Ok(other),
            }
        };
        let default_id = |id: u32| {
            if is_spm && (id as usize) < n {
                Some(id)
            } else {
                None
            }
        };
        let bos = check("BOS", spec.bos_id)?.or_else(|| default_id(1));
        let eos = check("EOS", spec.eos_id)?.or_else(|| default_id(2));
        let unk = check("UNK", spec.unk_id)?.or_else(|| default_id(0));
        let eom = check("EOM", spec.eom_id)?;
        let mut eot = check("EOT", spec.eot_id)?;
        // llama.cpp ignores an out-of-range padding id (warning only); it is never used here.
        let pad = spec.pad_id.filter(|&id| (id as usize) < n);

        if eot.is_none() {
            eot = EOT_TEXTS.iter().find_map(|t| token_to_id.get(*t).copied());
        }
        let mut eog = HashSet::new();
        for id in [eos, eot, eom].into_iter().flatten() {
            eog.insert(id);
        }
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(t) {
                types[id as usize] = token_type::CONTROL;
                eog.insert(id);
            }
        }

        let pre = if is_spm {
            None
        } else {
            Some(match pre_override {
                Some(p) => p,
                None => match spec.pre.as_deref() {
                    None => PreSplit::Default,
                    Some(name) => PreSplit::parse(name)?,
                },
            })
        };
        // Defaults (SPM and Llama-3 add BOS) apply only when there is a BOS token.
        let add_bos = spec
            .add_bos
            .unwrap_or((is_spm || pre == Some(PreSplit::Llama3)) && bos.is_some());
        let add_eos = spec.add_eos.unwrap_or(false);
        let add_space_prefix = spec.add_space_prefix.unwrap_or(is_spm);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::Missing(
                "add_bos_token = true",
                "a BOS token id",
            ));
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::Missing(
                "add_eos_token = true",
                "an EOS token id",
            ));
        }

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                let ty = types[id as usize];
                matches!(
                    ty,
                    token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
                ) && !spec.tokens[id as usize].is_empty()
            })
            .collect();
        specials.sort_by(|&a, &b| {
            spec.tokens[b as usize]
                .len()
                .cmp(&spec.tokens[a as usize].len())
                .then(a.cmp(&b))
        });

        let kind = match pre {
            Some(pre) => {
                let bpe = bpe::Bpe::new(
                    &spec.tokens,
                    &token_to_id,
                    &spec.merges,
                    pre == PreSplit::Llama3,
                )?;
                Kind::Bpe {
                    pre,
                    splitter: presplit::Splitter::new(pre),
                    bpe,
                }
            }
            None => {
                let mut byte_ids = [None; 256];
                for (b, slot) in byte_ids.iter_mut().enumerate() {
                    *slot = token_to_id
                        .get(&format!("<0x{b:02X}>"))
                        .copied()
                        .or_else(|| {
                            if b < 128 {
                                token_to_id.get(&(b as u8 as char).to_string()).copied()
                            } else {
                                None
                            }
                        });
                }
                Kind::Spm { byte_ids }
            }
        };

        Ok(Tokenizer {
            kind,
            tokens: spec.tokens.clone(),
            types,
            scores,
            token_to_id,
            specials,
            bos,
            eos,
            unk,
            pad,
            eot,
            eom,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
            chat_template: spec.chat_template.clone(),
        })
    }

    /// Splits `text` around special tokens (§4.2 step 1).
    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut frags = vec![Fragment::Raw(text)];
        if text.is_empty() {
            return frags;
        }
        for &id in &self.specials {
            let ty = self.types[id as usize];
            if !parse_special && (ty == token_type::CONTROL || ty == token_type::UNKNOWN) {
                continue;
            }
            let pat = self.tokens[id as usize].as_str();
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Raw(r) if r.contains(pat)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Raw(mut r) => {
                        while let Some(pos) = r.find(pat) {
                            if pos > 0 {
                                next.push(Fragment::Raw(&r[..pos]));
                            }
                            next.push(Fragment::Token(id));
                            r = &r[pos + pat.len()..];
                        }
                        if !r.is_empty() {
                            next.push(Fragment::Raw(r));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }

    /// Encodes text. `add_special` adds BOS/EOS per `add_bos`/`add_eos`; `parse_special`
    /// turns control/unknown token texts typed in `text` into those tokens (user-defined
    /// tokens are always matched).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let frags = self.partition(text, parse_special);
        match &self.kind {
            Kind::Bpe { splitter, bpe, .. } => {
                for f in frags {
                    match f {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Raw(r) => {
                            for word in splitter.split(r) {
                                bpe.encode_word(word.as_bytes(), &self.token_to_id, &mut out);
                            }
                        }
                    }
                }
            }
            Kind::Spm { byte_ids } => {
                let mut prev_special = true;
                for f in frags {
                    match f {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Raw(r) => {
                            let mut s = String::with_capacity(r.len() + 3);
                            if self.add_space_prefix && prev_special {
                                s.push('▁');
                            }
                            for c in r.chars() {
                                s.push(if c == ' ' { '▁' } else { c });
                            }
                            spm::encode(
                                &s,
                                &self.token_to_id,
                                &self.scores,
                                byte_ids,
                                self.unk,
                                &mut out,
                            );
                            prev_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Raw bytes of one token: empty for control, unknown (BPE), unused and out-of-range ids.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        let ty = self.types[id as usize];
        match &self.kind {
            Kind::Bpe { .. } => match ty {
                token_type::NORMAL | token_type::BYTE => bpe::unicode_to_bytes(text),
                token_type::USER_DEFINED => text.as_bytes().to_vec(),
                _ => Vec::new(),
            },
            Kind::Spm { .. } => match ty {
                token_type::NORMAL => text.replace('▁', " ").into_bytes(),
                token_type::USER_DEFINED => text.as_bytes().to_vec(),
                token_type::BYTE => spm::parse_byte_token(text)
                    .map(|b| vec![b])
                    .unwrap_or_default(),
                token_type::UNKNOWN => "\u{2585}".as_bytes().to_vec(),
                _ => Vec::new(),
            },
        }
    }

    /// Raw bytes of a whole sequence (SentencePiece drops the one leading space that
    /// `add_space_prefix` introduced).
    fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at_start = true;
        for &id in ids {
            let b = self.token_bytes(id);
            if b.is_empty() {
                continue;
            }
            if at_start && self.strips_leading_space() && b[0] == b' ' {
                out.extend_from_slice(&b[1..]);
            } else {
                out.extend_from_slice(&b);
            }
            at_start = false;
        }
        out
    }

    fn strips_leading_space(&self) -> bool {
        matches!(self.kind, Kind::Spm { .. }) && self.add_space_prefix
    }

    /// Decodes ids to text (lossy UTF-8; control tokens render empty).
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// The vocabulary string of a token.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Looks a token up by its exact vocabulary string.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// The token type (after forcing EOG texts to control), `None` when out of range.
    pub fn token_type(&self, id: u32) -> Option<i32> {
        self.types.get(id as usize).copied()
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom_id(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// End-of-generation: EOS, EOT, EOM and every token whose text is one of
    /// `<|eot_id|> <|im_end|> <|end|> <end_of_turn> <|endoftext|> <|eom_id|> <EOT>` (§4.4).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The BPE pre-split in use; `None` for SentencePiece.
    pub fn pre_split(&self) -> Option<PreSplit> {
        match &self.kind {
            Kind::Bpe { pre, .. } => Some(*pre),
            Kind::Spm { .. } => None,
        }
    }
}

/// Streaming detokenizer: emits text as soon as it is complete UTF-8, buffering partial
/// multi-byte sequences across tokens.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    started: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token and returns the text that became complete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        let b = tok.token_bytes(id);
        if b.is_empty() {
            return String::new();
        }
        if !self.started && tok.strips_leading_space() && b[0] == b' ' {
            self.pending.extend_from_slice(&b[1..]);
        } else {
            self.pending.extend_from_slice(&b);
        }
        self.started = true;
        self.drain(false)
    }

    /// Returns whatever is still buffered (incomplete sequences become U+FFFD).
    pub fn flush(&mut self) -> String {
        self.drain(true)
    }

    fn drain(&mut self, all: bool) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).expect("valid prefix"));
                    match e.error_len() {
                        Some(len) => {
                            out.push('\u{FFFD}');
                            rest = &bad[len..];
                        }
                        None if all => {
                            out.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_bpe(pre: Option<&str>) -> TokenizerSpec {
        builtin::byte_level_bpe_spec(600, 200)
            .map(|mut s| {
                s.pre = pre.map(str::to_string);
                s
            })
            .unwrap()
    }

    #[test]
    fn tokenizer_is_send_sync() {
        fn assert_ss<T: Send + Sync>() {}
        assert_ss::<Tokenizer>();
    }

    #[test]
    fn tokenizer_pre_parse() {
        assert_eq!("default".parse::<PreSplit>().unwrap(), PreSplit::Default);
        assert_eq!("llama-bpe".parse::<PreSplit>().unwrap(), PreSplit::Llama3);
        assert_eq!("llama3".parse::<PreSplit>().unwrap(), PreSplit::Llama3);
        assert!("qwen2".parse::<PreSplit>().is_err());
    }

    #[test]
    fn tokenizer_partition_longest_first() {
        let t = Tokenizer::from_spec(&tiny_bpe(None), None).unwrap();
        let eot = t.token_id("<|eot_id|>").unwrap();
        let ids = t.encode("a<|eot_id|>b", false, true);
        assert!(ids.contains(&eot));
        let ids = t.encode("a<|eot_id|>b", false, false);
        assert!(!ids.contains(&eot));
    }

    #[test]
    fn tokenizer_stream_partial_utf8() {
        let t = Tokenizer::from_spec(&tiny_bpe(None), None).unwrap();
        let mut d = StreamDecoder::new();
        // "é" = C3 A9 as two single-byte tokens
        let ids: Vec<u32> = "é"
            .bytes()
            .map(|b| t.token_id(&bpe::bytes_to_unicode(&[b])).unwrap())
            .collect();
        assert_eq!(d.push(&t, ids[0]), "");
        assert_eq!(d.push(&t, ids[1]), "é");
        assert_eq!(d.push(&t, ids[0]), "");
        assert_eq!(d.flush(), "\u{FFFD}");
    }
}
