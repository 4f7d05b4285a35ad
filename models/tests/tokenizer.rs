//! Tokenizer tests on the built-in vocabularies and hand-built ones (§4 of bitnet-gguf.md).

use bitnetc_models::tokenizer::builtin::{byte_level_bpe_spec, sentencepiece_spec};
use bitnetc_models::tokenizer::{
    token_type, ChatFormat, ChatMessage, PreSplit, StreamDecoder, Tokenizer, TokenizerError,
    TokenizerSpec,
};

/// Decodes the escapes of `tests/data/tokenizer_strings.txt`: `\n \t \r \\ \u{HEX}`.
fn unescape(line: &str) -> String {
    let mut out = String::new();
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.peek().copied() {
            Some('n') => {
                it.next();
                out.push('\n')
            }
            Some('t') => {
                it.next();
                out.push('\t')
            }
            Some('r') => {
                it.next();
                out.push('\r')
            }
            Some('\\') => {
                it.next();
                out.push('\\')
            }
            Some('u') => {
                let rest: String = it.clone().collect();
                let parsed = rest.strip_prefix("u{").and_then(|r| {
                    let end = r.find('}')?;
                    let cp = u32::from_str_radix(&r[..end], 16)
                        .ok()
                        .and_then(char::from_u32)?;
                    Some((cp, end + 3))
                });
                match parsed {
                    Some((cp, n)) => {
                        for _ in 0..n {
                            it.next();
                        }
                        out.push(cp);
                    }
                    None => out.push('\\'),
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

fn strings() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer_strings.txt"
    );
    let text = std::fs::read_to_string(path).expect("read tokenizer_strings.txt");
    let v: Vec<String> = text
        .strip_suffix('\n')
        .unwrap_or(&text)
        .split('\n')
        .map(unescape)
        .collect();
    assert!(v.len() >= 200, "only {} strings", v.len());
    v
}

fn bpe(pre: Option<PreSplit>) -> Tokenizer {
    Tokenizer::from_spec(&byte_level_bpe_spec(2048, 1200).unwrap(), pre).unwrap()
}

fn spm() -> Tokenizer {
    Tokenizer::from_spec(&sentencepiece_spec(4096, 1200).unwrap(), None).unwrap()
}

/// `s` with every control-token text removed (what decoding a parse_special encoding yields).
fn strip_controls(tok: &Tokenizer, s: &str) -> String {
    let mut texts: Vec<&str> = (0..tok.n_vocab() as u32)
        .filter(|&id| tok.token_type(id) == Some(token_type::CONTROL))
        .filter_map(|id| tok.token_text(id))
        .collect();
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let mut s = s.to_string();
    for t in texts {
        s = s.replace(t, "");
    }
    s
}

#[test]
fn tokenizer_unescape_rules() {
    assert_eq!(
        unescape(r"a\nb\tc\r\\d\u{1F600}e\u{20}"),
        "a\nb\tc\r\\d😀e "
    );
}

#[test]
fn tokenizer_roundtrip_bpe_both_splits() {
    let strs = strings();
    for pre in [PreSplit::Default, PreSplit::Llama3] {
        let tok = bpe(Some(pre));
        assert_eq!(tok.pre_split(), Some(pre));
        for s in &strs {
            let ids = tok.encode(s, false, false);
            assert_eq!(&tok.decode(&ids), s, "{pre:?} round trip of {s:?}: {ids:?}");
            let with_bos = tok.encode(s, true, false);
            assert_eq!(with_bos[0], tok.bos_id().unwrap());
            assert_eq!(&with_bos[1..], &ids[..]);
            let special = tok.encode(s, false, true);
            assert_eq!(
                tok.decode(&special),
                strip_controls(&tok, s),
                "{pre:?} parse_special {s:?}"
            );
        }
    }
}

#[test]
fn tokenizer_roundtrip_spm() {
    let tok = spm();
    assert_eq!(tok.pre_split(), None);
    for s in &strings() {
        let ids = tok.encode(s, true, false);
        assert_eq!(ids[0], 1);
        assert_eq!(&tok.decode(&ids), s, "SPM round trip of {s:?}: {ids:?}");
        assert_eq!(&tok.decode(&ids[1..]), s);
    }
}

#[test]
fn tokenizer_streaming_matches_decode() {
    for tok in [
        bpe(Some(PreSplit::Default)),
        bpe(Some(PreSplit::Llama3)),
        spm(),
    ] {
        for s in &strings() {
            let ids = tok.encode(s, true, true);
            let mut d = StreamDecoder::new();
            let mut out = String::new();
            for &id in &ids {
                out += &d.push(&tok, id);
            }
            out += &d.flush();
            assert_eq!(out, tok.decode(&ids), "{s:?}");
        }
    }
}

#[test]
fn tokenizer_streaming_emoji_split_across_byte_tokens() {
    // built-in BPE: byte b has id b
    let tok = bpe(None);
    let mut d = StreamDecoder::new();
    let bytes = "😀".as_bytes();
    assert_eq!(bytes.len(), 4);
    for &b in &bytes[..3] {
        assert_eq!(d.push(&tok, b as u32), "");
    }
    assert_eq!(d.push(&tok, bytes[3] as u32), "😀");
    assert_eq!(d.flush(), "");
    // SPM: <0xHH> = 3 + HH; the first piece's leading space (space prefix) is dropped
    let tok = spm();
    let mut d = StreamDecoder::new();
    let ids = tok.encode("🦀 ok", true, false); // not in the corpus: byte fallback
    let pieces: Vec<String> = ids.iter().map(|&id| d.push(&tok, id)).collect();
    assert_eq!(pieces.concat() + &d.flush(), "🦀 ok");
    assert!(
        pieces.iter().filter(|p| p.is_empty()).count() >= 3,
        "{pieces:?}"
    );
    let emoji_ids: Vec<u32> = "🦀".bytes().map(|b| 3 + b as u32).collect();
    assert!(ids.windows(4).any(|w| w == emoji_ids), "{ids:?}");
    // a dangling partial sequence flushes as U+FFFD
    let mut d = StreamDecoder::new();
    assert_eq!(d.push(&tok, 3 + 0xF0), "");
    assert_eq!(d.flush(), "\u{FFFD}");
}

/// Byte offsets at which consecutive tokens of `s` start.
fn boundaries(tok: &Tokenizer, s: &str) -> Vec<usize> {
    let mut pos = 0;
    let mut out = vec![];
    for id in tok.encode(s, false, false) {
        out.push(pos);
        pos += tok.token_bytes(id).len();
    }
    assert_eq!(pos, s.len());
    out
}

#[test]
fn tokenizer_presplit_boundaries() {
    let d = bpe(Some(PreSplit::Default));
    let l = bpe(Some(PreSplit::Llama3));
    // default: digits in groups of three from the left
    for b in [3, 6] {
        assert!(boundaries(&d, "1234567").contains(&b));
    }
    // llama-bpe: 1–3 digits
    assert!(boundaries(&l, "1234567").contains(&3));
    assert!(boundaries(&l, "1234567").contains(&6));
    // default isolates the apostrophe; llama-bpe keeps 't / 'T together
    assert!(boundaries(&d, "don't").contains(&3) && boundaries(&d, "don't").contains(&4));
}

/// 256 byte tokens (id = byte) + extra tokens, with merges.
fn hand_spec(extra: &[&str], merges: &[&str], pre: Option<&str>) -> TokenizerSpec {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| gpt2_char(b).to_string()).collect();
    tokens.extend(extra.iter().map(|s| s.to_string()));
    TokenizerSpec {
        model: "gpt2".into(),
        pre: pre.map(str::to_string),
        tokens,
        merges: merges.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn gpt2_char(b: u8) -> char {
    let keep =
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if keep {
        return b as char;
    }
    let n = (0..b)
        .filter(|&x| {
            !((b'!'..=b'~').contains(&x)
                || (0xA1..=0xAC).contains(&x)
                || (0xAE..=0xFF).contains(&x))
        })
        .count() as u32;
    char::from_u32(256 + n).unwrap()
}

#[test]
fn tokenizer_hand_checked_bpe_ids() {
    // 256 he, 257 ll, 258 llo, 259 hello, 260 Ġw, 261 or, 262 Ġwor, 263 Ġworl, 264 Ġworld, 265 abc
    let extra = [
        "he", "ll", "llo", "hello", "Ġw", "or", "Ġwor", "Ġworl", "Ġworld", "abc",
    ];
    let merges = [
        "h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
    ];
    for pre in [None, Some("llama-bpe")] {
        let tok = Tokenizer::from_spec(&hand_spec(&extra, &merges, pre), None).unwrap();
        assert_eq!(tok.encode("hello world", false, false), vec![259, 264]);
        assert_eq!(tok.encode("hello  world", false, false), vec![259, 32, 264]);
        assert_eq!(tok.encode("12345", false, false), vec![49, 50, 51, 52, 53]);
    }
    // ignore_merges: "abc" has no merge path; only the Llama-3 split emits it whole
    let d = Tokenizer::from_spec(&hand_spec(&extra, &merges, None), None).unwrap();
    let l = Tokenizer::from_spec(&hand_spec(&extra, &merges, Some("llama-bpe")), None).unwrap();
    assert_eq!(d.encode("abc", false, false), vec![97, 98, 99]);
    assert_eq!(l.encode("abc", false, false), vec![265]);
    assert_eq!(d.pre_split(), Some(PreSplit::Default));
    assert_eq!(l.pre_split(), Some(PreSplit::Llama3));
    // pre_override wins over the spec
    let o =
        Tokenizer::from_spec(&hand_spec(&extra, &merges, None), Some(PreSplit::Llama3)).unwrap();
    assert_eq!(o.encode("abc", false, false), vec![265]);
    // default split: "world's" → " world" | "'" | "s"; llama-bpe → " world" | "'s"
    assert_eq!(d.encode(" world's", false, false), vec![264, 39, 115]);
    assert_eq!(l.encode(" world's", false, false), vec![264, 39, 115]);
    assert_eq!(d.decode(&[259, 264]), "hello world");
    // upper-case contraction: llama-bpe keeps "'T" (a vocab word, emitted whole), default isolates "'"
    let d = Tokenizer::from_spec(&hand_spec(&["'T"], &[], None), None).unwrap();
    let l = Tokenizer::from_spec(&hand_spec(&["'T"], &[], Some("llama-bpe")), None).unwrap();
    assert_eq!(d.encode("DON'T", false, false), vec![68, 79, 78, 39, 84]);
    assert_eq!(l.encode("DON'T", false, false), vec![68, 79, 78, 256]);
}

#[test]
fn tokenizer_special_tokens_and_bos_eos() {
    let tok = bpe(None);
    let eot = tok.token_id("<|eot_id|>").unwrap();
    let bos = tok.bos_id().unwrap();
    assert!(tok.add_bos());
    assert_eq!(tok.encode("<|eot_id|>", false, true), vec![eot]);
    assert!(!tok.encode("<|eot_id|>", false, false).contains(&eot));
    assert_eq!(tok.encode("", true, true), vec![bos]);
    assert_eq!(tok.encode("", false, true), Vec::<u32>::new());
    let ids = tok.encode("User: hi<|eot_id|>Assistant: ", true, true);
    assert_eq!(ids[0], bos);
    assert_eq!(ids.iter().filter(|&&i| i == eot).count(), 1);
    assert_eq!(tok.token_bytes(eot), Vec::<u8>::new());
    assert_eq!(tok.token_text(eot), Some("<|eot_id|>"));
    assert_eq!(tok.token_text(tok.n_vocab() as u32), None);
    assert_eq!(tok.decode(&[tok.n_vocab() as u32 + 5]), "");
    // add_eos
    let mut spec = byte_level_bpe_spec(1024, 100).unwrap();
    spec.add_eos = Some(true);
    let t = Tokenizer::from_spec(&spec, None).unwrap();
    let ids = t.encode("x", true, true);
    assert_eq!(*ids.last().unwrap(), t.eos_id().unwrap());
    // SPM: a raw fragment after a special token gets the space prefix again
    let s = spm();
    let a = s.encode("a", false, false);
    let b = s.encode("b", false, false);
    let ab = s.encode("a</s>b", false, true);
    assert_eq!(ab, [a.clone(), vec![2], b].concat());
    assert_ne!(s.encode("a</s>b", false, false), ab);
    assert_eq!(s.decode(&s.encode(" lead", true, false)), " lead");
}

#[test]
fn tokenizer_user_defined_tokens_always_split() {
    let mut spec = byte_level_bpe_spec(1024, 100).unwrap();
    let id = 1000;
    spec.tokens[id] = "<tool>".into();
    spec.token_types.as_mut().unwrap()[id] = token_type::USER_DEFINED;
    let tok = Tokenizer::from_spec(&spec, None).unwrap();
    assert_eq!(tok.encode("a<tool>b", false, false)[1], id as u32);
    assert_eq!(
        tok.decode(&tok.encode("a<tool>b", false, false)),
        "a<tool>b"
    );
}

#[test]
fn tokenizer_is_eog() {
    let tok = bpe(None);
    let eos = tok.eos_id().unwrap();
    let eot = tok.token_id("<|eot_id|>").unwrap();
    assert!(tok.is_eog(eos));
    assert!(tok.is_eog(eot));
    assert!(!tok.is_eog(tok.bos_id().unwrap()));
    assert!(!tok.is_eog(tok.token_id("<|start_header_id|>").unwrap()));
    assert!(!tok.is_eog(b'a' as u32));
    // EOG texts count even without ids, and become control tokens
    let mut spec = byte_level_bpe_spec(1024, 100).unwrap();
    spec.tokens[1000] = "<|im_end|>".into();
    spec.token_types.as_mut().unwrap()[1000] = token_type::NORMAL;
    spec.eot_id = None;
    let t = Tokenizer::from_spec(&spec, None).unwrap();
    assert!(t.is_eog(1000));
    assert_eq!(t.token_type(1000), Some(token_type::CONTROL));
    assert_eq!(t.eot_id(), t.token_id("<|eot_id|>"));
    let s = spm();
    assert!(s.is_eog(2));
    assert!(!s.is_eog(1));
    assert!(!s.is_eog(0));
}

#[test]
fn tokenizer_error_cases() {
    let good = byte_level_bpe_spec(1024, 100).unwrap();
    let err = |f: &dyn Fn(&mut TokenizerSpec)| {
        let mut s = good.clone();
        f(&mut s);
        let e = Tokenizer::from_spec(&s, None).expect_err("must fail");
        let msg = e.to_string();
        assert!(!msg.is_empty());
        e
    };
    assert!(
        matches!(err(&|s| s.model = "bert".into()), TokenizerError::UnknownModel(m) if m == "bert")
    );
    assert!(matches!(
        err(&|s| s.pre = Some("qwen2".into())),
        TokenizerError::UnknownPreTokenizer(_)
    ));
    assert!(matches!(
        err(&|s| s.tokens.clear()),
        TokenizerError::EmptyVocab
    ));
    assert!(matches!(
        err(&|s| s
            .token_types
            .as_mut()
            .unwrap()
            .pop()
            .map(drop)
            .unwrap_or(())),
        TokenizerError::LengthMismatch {
            what: "tokenizer.ggml.token_type",
            ..
        }
    ));
    assert!(matches!(
        err(&|s| s.scores = Some(vec![0.0; 3])),
        TokenizerError::LengthMismatch { .. }
    ));
    let e = err(&|s| s.bos_id = Some(5000));
    assert!(matches!(
        e,
        TokenizerError::IdOutOfRange {
            what: "BOS",
            id: 5000,
            n_vocab: 1024
        }
    ));
    assert!(e.to_string().contains("5000"));
    let e = err(&|s| s.merges.push("zzzq qqqz".into()));
    assert!(matches!(&e, TokenizerError::MergeMissingToken { token, .. } if token == "zzzq"));
    assert!(e.to_string().contains("zzzq"));
    assert!(matches!(
        err(&|s| s.merges.push("nospace".into())),
        TokenizerError::MalformedMerge { .. }
    ));
    assert!(matches!(
        err(&|s| s.token_types.as_mut().unwrap()[0] = 9),
        TokenizerError::BadTokenType { .. }
    ));
    assert!(matches!(
        err(&|s| s.bos_id = None),
        TokenizerError::Missing(..)
    ));
    assert!(matches!(
        byte_level_bpe_spec(300, 100),
        Err(TokenizerError::VocabTooSmall { .. })
    ));
    // out-of-range padding id is ignored like llama.cpp does
    let mut s = good.clone();
    s.pad_id = Some(99_999);
    assert!(Tokenizer::from_spec(&s, None).is_ok());
}

#[test]
fn tokenizer_chat_formats() {
    let tok = bpe(None);
    let fmt = ChatFormat::detect(tok.chat_template());
    assert!(matches!(fmt, ChatFormat::BitNet));
    let sys = ChatMessage {
        role: "system".into(),
        content: "Be brief.".into(),
    };
    let user = ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    };
    let asst = ChatMessage {
        role: "assistant".into(),
        content: "hello".into(),
    };
    assert_eq!(fmt.render_turn(&sys, &tok), "System: Be brief.");
    assert_eq!(
        fmt.render_turn(&user, &tok),
        "User: hi<|eot_id|>Assistant: "
    );
    assert_eq!(fmt.render_turn(&asst, &tok), "hello");
    assert_eq!(fmt.generation_prompt(), "");
    let l3 = ChatFormat::detect(Some("{{ '<|start_header_id|>' + role }}"));
    assert!(matches!(l3, ChatFormat::Llama3));
    assert_eq!(
        l3.render_turn(&user, &tok),
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    );
    assert_eq!(
        l3.generation_prompt(),
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert!(matches!(ChatFormat::detect(None), ChatFormat::Generic));
    // Generic on SPM (no <|eot_id|> token): the EOS text ends user turns
    let s = spm();
    let g = ChatFormat::detect(s.chat_template());
    assert!(matches!(g, ChatFormat::Generic));
    assert_eq!(g.render_turn(&user, &s), "User: hi</s>Assistant: ");
    assert_eq!(
        ChatFormat::Generic.render_turn(&user, &tok),
        "User: hi<|eot_id|>Assistant: "
    );
}

#[test]
fn tokenizer_merges_compress_corpus_text() {
    // sanity: a trained vocabulary actually merges frequent words
    let tok = bpe(None);
    let ids = tok.encode("the small town and the river", false, false);
    assert!(ids.len() <= 8, "{ids:?}");
    let s = spm();
    let ids = s.encode("the small town and the river", false, false);
    assert!(ids.len() <= 8, "{ids:?}");
}
