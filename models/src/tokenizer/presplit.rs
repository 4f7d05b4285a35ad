//! Pre-tokenizer splits (§4.2): each pass applies a regex inside every piece produced by the
//! previous pass; both the matches and the unmatched stretches between them become pieces
//! (llama.cpp's `unicode_regex_split`, Hugging Face's `Split` with `Isolated` behaviour).

use fancy_regex::Regex;

use super::PreSplit;

/// `default`, pass 1: runs of punctuation or `$ + < = > ^ ~ |`.
pub(crate) const DEFAULT_PASS1: &str = r"[\p{P}\$\+<=>\^~\|]+";
/// `default`, pass 2: the GPT-2 rules (plus the trailing plain `\s+` of the hand-written splitter).
pub(crate) const DEFAULT_PASS2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// `default`, pass 3: runs of Unicode digits.
pub(crate) const DEFAULT_PASS3: &str = r"\p{N}+";
/// `default`, pass 4: groups of three ASCII digits from the left.
pub(crate) const DEFAULT_PASS4: &str = r"[0-9][0-9][0-9]";
/// The Llama-3 pattern (`llama-bpe`).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug)]
pub(crate) struct Splitter {
    passes: Vec<Regex>,
}

impl Splitter {
    pub(crate) fn new(pre: PreSplit) -> Splitter {
        let pats: &[&str] = match pre {
            PreSplit::Default => &[DEFAULT_PASS1, DEFAULT_PASS2, DEFAULT_PASS3, DEFAULT_PASS4],
            PreSplit::Llama3 => &[LLAMA3_PATTERN],
        };
        let passes = pats
            .iter()
            .map(|p| Regex::new(p).expect("built-in pre-split pattern compiles"))
            .collect();
        Splitter { passes }
    }

    /// Splits `text` into words; the concatenation of the result is always `text`.
    pub(crate) fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut pieces = vec![text];
        for re in &self.passes {
            let mut out = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece) {
                    let Ok(m) = m else { break }; // backtrack limit: keep the rest as one piece
                    if m.start() > last {
                        out.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        out.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    out.push(&piece[last..]);
                }
            }
            pieces = out;
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: PreSplit, s: &str) -> Vec<String> {
        Splitter::new(pre)
            .split(s)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn tokenizer_default_split_cases() {
        let d = PreSplit::Default;
        assert_eq!(split(d, "Hello, world!"), ["Hello", ",", " world", "!"]);
        // apostrophes isolated by pass 1, so contractions never join
        assert_eq!(split(d, "don't"), ["don", "'", "t"]);
        assert_eq!(split(d, "it's OK"), ["it", "'", "s", " OK"]);
        // digits grouped by three from the left
        assert_eq!(split(d, "1234567"), ["123", "456", "7"]);
        assert_eq!(split(d, "x 12345"), ["x", " ", "123", "45"]);
        // whitespace run followed by a word leaves the last space to the word
        assert_eq!(split(d, "a   b"), ["a", "  ", " b"]);
        assert_eq!(split(d, "a  \n"), ["a", "  \n"]);
        // $ + < = > ^ ~ | join punctuation runs, backtick does not
        assert_eq!(split(d, "a+=b`c"), ["a", "+=", "b", "`", "c"]);
        assert_eq!(split(d, "<|eot_id|>"), ["<|", "eot", "_", "id", "|>"]);
    }

    #[test]
    fn tokenizer_llama3_split_cases() {
        let l = PreSplit::Llama3;
        assert_eq!(split(l, "Hello, world!"), ["Hello", ",", " world", "!"]);
        assert_eq!(split(l, "don't"), ["don", "'t"]);
        assert_eq!(split(l, "DON'T I'LL"), ["DON", "'T", " I", "'LL"]);
        assert_eq!(split(l, "1234567"), ["123", "456", "7"]);
        assert_eq!(split(l, "a   b"), ["a", "  ", " b"]);
        assert_eq!(split(l, "x\n\n  y"), ["x", "\n\n", " ", " y"]);
        assert_eq!(split(l, "(hi)\n"), ["(hi", ")\n"]);
        assert_eq!(split(l, "  "), ["  "]);
    }
}
