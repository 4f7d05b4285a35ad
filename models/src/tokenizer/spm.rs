//! SentencePiece (`llama` model) encoding as llama.cpp runs it (§4.3): characters are merged
//! greedily, highest-scoring vocabulary token first (ties: leftmost), then every final symbol
//! that is not a token falls back to `<0xHH>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        // max-heap: higher score first, then the smaller left index
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Parses `<0xHH>`.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Encodes an already escaped (`▁` for space, prefix applied) fragment.
pub(crate) fn encode(
    text: &str,
    token_to_id: &HashMap<String, u32>,
    scores: &[f32],
    byte_ids: &[Option<u32>; 256],
    unk: Option<u32>,
    out: &mut Vec<u32>,
) {
    if text.is_empty() {
        return;
    }
    // symbols: byte ranges [start, start+len)
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let n = starts.len();
    let mut len: Vec<usize> = (0..n)
        .map(|i| starts.get(i + 1).copied().unwrap_or(text.len()) - starts[i])
        .collect();
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, len: &[usize], l: usize, r: usize| {
        let size = len[l] + len[r];
        let s = &text[starts[l]..starts[l] + size];
        if let Some(&id) = token_to_id.get(s) {
            heap.push(Bigram {
                score: scores[id as usize],
                left: l,
                right: r,
                size,
            });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &len, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left, b.right);
        if len[l] == 0 || len[r] == 0 || len[l] + len[r] != b.size || next[l] != r {
            continue;
        }
        len[l] += len[r];
        len[r] = 0;
        next[l] = next[r];
        if next[r] < n {
            prev[next[r]] = l;
        }
        if prev[l] != usize::MAX {
            try_add(&mut heap, &len, prev[l], l);
        }
        if next[l] < n {
            try_add(&mut heap, &len, l, next[l]);
        }
    }
    let mut i = 0;
    while i < n {
        let s = &text[starts[i]..starts[i] + len[i]];
        match token_to_id.get(s) {
            Some(&id) => out.push(id),
            None => {
                // Every merge result is a token, so only single characters end up here.
                for b in s.bytes() {
                    if let Some(id) = byte_ids[b as usize].or(unk) {
                        out.push(id);
                    }
                }
            }
        }
        i = next[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_spm_score_priority() {
        let toks = ["▁", "a", "b", "ab", "▁a", "▁ab"];
        let map: HashMap<String, u32> = toks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = Some(100 + b as u32);
        }
        // "▁a" scores higher than "ab": ▁ab reached via ▁a + b
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let mut out = vec![];
        encode("▁ab", &map, &scores, &byte_ids, None, &mut out);
        assert_eq!(out, vec![5]);
        // unknown character → its UTF-8 bytes
        out.clear();
        encode("é", &map, &scores, &byte_ids, None, &mut out);
        assert_eq!(out, vec![100 + 0xC3, 100 + 0xA9]);
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
    }
}
