//! Byte-level BPE: the GPT-2 byte↔unicode alphabet and the rank-ordered merge loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::OnceLock;

use super::TokenizerError;

/// GPT-2 byte → unicode code point: `!`..`~`, `¡`..`¬`, `®`..`ÿ` map to themselves, the other
/// 68 bytes (in increasing order) to U+0100, U+0101, …
pub(crate) fn byte_to_char(b: u8) -> char {
    byte_table().0[b as usize]
}

struct Tables([char; 256], HashMap<char, u8>);

fn byte_table() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut fwd = ['\0'; 256];
        let mut inv = HashMap::with_capacity(256);
        let mut n = 0u32;
        for b in 0..=255u8 {
            let keep = (b'!'..=b'~').contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let c = if keep {
                b as char
            } else {
                n += 1;
                char::from_u32(255 + n).expect("valid code point")
            };
            fwd[b as usize] = c;
            inv.insert(c, b);
        }
        Tables(fwd, inv)
    })
}

/// Maps raw bytes to their GPT-2 unicode spelling.
pub(crate) fn bytes_to_unicode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

/// Inverse of [`bytes_to_unicode`]; characters outside the alphabet pass through as UTF-8.
pub(crate) fn unicode_to_bytes(text: &str) -> Vec<u8> {
    let inv = &byte_table().1;
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match inv.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// Queue entry: (rank, left index, right index, left id, right id); min-heap via `Reverse`.
type HeapEntry = Reverse<(u32, usize, usize, u32, u32)>;

/// Merge table keyed by token-id pairs.
#[derive(Debug)]
pub(crate) struct Bpe {
    /// (left id, right id) → (rank, merged id)
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// id of the token spelling each single byte, if present.
    byte_ids: [Option<u32>; 256],
    ignore_merges: bool,
}

impl Bpe {
    pub(crate) fn new(
        tokens: &[String],
        token_to_id: &HashMap<String, u32>,
        merges: &[String],
        ignore_merges: bool,
    ) -> Result<Bpe, TokenizerError> {
        let _ = tokens;
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // split at the first space after position 0
            let pos = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| TokenizerError::MalformedMerge {
                    rank,
                    merge: m.clone(),
                })?;
            let (l, r) = (&m[..pos], &m[pos + 1..]);
            if r.is_empty() {
                return Err(TokenizerError::MalformedMerge {
                    rank,
                    merge: m.clone(),
                });
            }
            let lookup = |t: &str| {
                token_to_id
                    .get(t)
                    .copied()
                    .ok_or_else(|| TokenizerError::MergeMissingToken {
                        rank,
                        merge: m.clone(),
                        token: t.to_string(),
                    })
            };
            let (li, ri) = (lookup(l)?, lookup(r)?);
            let merged = lookup(&format!("{l}{r}"))?;
            // the first (lowest-rank) occurrence of a pair wins
            table.entry((li, ri)).or_insert((rank as u32, merged));
        }
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = token_to_id
                .get(byte_to_char(b as u8).to_string().as_str())
                .copied();
        }
        Ok(Bpe {
            merges: table,
            byte_ids,
            ignore_merges,
        })
    }

    /// Encodes one pre-split word (raw bytes), appending ids to `out`.
    pub(crate) fn encode_word(
        &self,
        word: &[u8],
        token_to_id: &HashMap<String, u32>,
        out: &mut Vec<u32>,
    ) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges || word.len() == 1 {
            if let Some(&id) = token_to_id.get(&bytes_to_unicode(word)) {
                out.push(id);
                return;
            }
        }
        let n = word.len();
        // One symbol per byte; `None` = no token for this byte (never merges, dropped on output).
        let mut ids: Vec<Option<u32>> = word.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).collect(); // n = end
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect(); // usize::MAX = none
        let mut heap: BinaryHeap<HeapEntry> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, ids: &[Option<u32>], l: usize, r: usize| {
            if let (Some(a), Some(b)) = (ids[l], ids[r]) {
                if let Some(&(rank, _)) = self.merges.get(&(a, b)) {
                    heap.push(Reverse((rank, l, r, a, b)));
                }
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, &ids, i, i + 1);
        }
        while let Some(Reverse((_, l, r, a, b))) = heap.pop() {
            // skip stale entries
            if next[l] != r || ids[l] != Some(a) || ids[r] != Some(b) {
                continue;
            }
            let merged = self.merges[&(a, b)].1;
            ids[l] = Some(merged);
            ids[r] = None;
            next[l] = next[r];
            if next[r] < n {
                prev[next[r]] = l;
            }
            next[r] = usize::MAX; // dead
            if prev[l] != usize::MAX {
                push(&mut heap, &ids, prev[l], l);
            }
            if next[l] < n {
                push(&mut heap, &ids, l, next[l]);
            }
        }
        let mut i = 0;
        while i < n {
            if let Some(id) = ids[i] {
                out.push(id);
            }
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_byte_map_roundtrip() {
        let all: Vec<u8> = (0..=255).collect();
        let s = bytes_to_unicode(&all);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(unicode_to_bytes(&s), all);
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(byte_to_char(0), '\u{100}');
    }

    fn vocab(tokens: &[&str]) -> (Vec<String>, HashMap<String, u32>) {
        let t: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        let m = t
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        (t, m)
    }

    #[test]
    fn tokenizer_bpe_rank_order_and_leftmost_ties() {
        let (t, m) = vocab(&["a", "b", "ab", "ba", "aba", "c"]);
        // "b a" has the lower rank, so "aba" → a + ba, not ab + a
        let merges = vec!["b a".to_string(), "a b".to_string()];
        let bpe = Bpe::new(&t, &m, &merges, false).unwrap();
        let mut out = vec![];
        bpe.encode_word(b"aba", &m, &mut out);
        assert_eq!(out, vec![0, 3]);
        // ties: "abab" with only "a b": leftmost first → ab ab
        let bpe = Bpe::new(&t, &m, &["a b".to_string()], false).unwrap();
        out.clear();
        bpe.encode_word(b"abab", &m, &mut out);
        assert_eq!(out, vec![2, 2]);
        // "aaa" with "a a" merge missing from vocab would error; here no merge: per byte
        out.clear();
        bpe.encode_word(b"xa", &m, &mut out); // 'x' has no token: dropped
        assert_eq!(out, vec![0]);
        // ignore_merges: whole word in vocab wins
        let bpe = Bpe::new(&t, &m, &["b a".to_string(), "a b".to_string()], true).unwrap();
        out.clear();
        bpe.encode_word(b"aba", &m, &mut out);
        assert_eq!(out, vec![4]);
    }

    #[test]
    fn tokenizer_bpe_merge_errors() {
        let (t, m) = vocab(&["a", "b", "ab"]);
        assert!(matches!(
            Bpe::new(&t, &m, &["a c".into()], false),
            Err(TokenizerError::MergeMissingToken { .. })
        ));
        assert!(matches!(
            Bpe::new(&t, &m, &["b a".into()], false),
            Err(TokenizerError::MergeMissingToken { .. })
        ));
        assert!(matches!(
            Bpe::new(&t, &m, &["ab".into()], false),
            Err(TokenizerError::MalformedMerge { .. })
        ));
    }
}
