//! Pre-tokenizer splits (§4.2): each pass applies a regex inside every piece produced by the
//! previous pass; both the matches and the unmatched stretches between them become pieces
//! (llama.cpp's `unicode_regex_split`, Hugging Face's `Split` with `Isolated` behaviour).

use fancy_regex::Regex;

use super::PreSplit;

// The `default` passes as §4.2 writes them. What is compiled are the `*_UCD15` forms below.

/// `default`, pass 1: runs of punctuation or `$ + < = > ^ ~ |`.
#[cfg_attr(not(test), allow(dead_code))] // reference form, checked by a test
pub(crate) const DEFAULT_PASS1: &str = r"[\p{P}\$\+<=>\^~\|]+";
/// `default`, pass 2: the GPT-2 rules (plus the trailing plain `\s+` of the hand-written splitter).
#[cfg_attr(not(test), allow(dead_code))] // reference form, checked by a test
pub(crate) const DEFAULT_PASS2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// `default`, pass 3: runs of Unicode digits.
#[cfg_attr(not(test), allow(dead_code))] // reference form, checked by a test
pub(crate) const DEFAULT_PASS3: &str = r"\p{N}+";
/// `default`, pass 4: groups of three ASCII digits from the left.
pub(crate) const DEFAULT_PASS4: &str = r"[0-9][0-9][0-9]";

// llama.cpp classifies code points with its own tables (`unicode-data.cpp`), which are Unicode
// 15.1; the regex crate's tables are newer. Checked against mainline llama.cpp's
// `unicode_cpt_flags_from_cpt` for every code point: the L/N/P/whitespace classes differ only on
// the 4,395 code points first assigned in Unicode 16.0 (e.g. U+1C89 Lu, U+1CCF0 Nd, U+1B4E Po),
// which llama.cpp treats as unassigned (neither letter, number, punctuation nor whitespace).
// So every category is intersected with `Age=15.1` (assigned in Unicode 15.1 or earlier).
// (`\s` needs nothing: no whitespace was added after 15.1.)

/// Pass 1 with Unicode-15.1 categories.
const DEFAULT_PASS1_UCD15: &str = r"[[\p{P}&&\p{Age=15.1}]\$\+<=>\^~\|]+";
/// Pass 2 with Unicode-15.1 categories.
const DEFAULT_PASS2_UCD15: &str = concat!(
    r"'s|'t|'re|'ve|'m|'ll|'d",
    r"| ?[\p{L}&&\p{Age=15.1}]+",
    r"| ?[\p{N}&&\p{Age=15.1}]+",
    r"| ?[^\s[\p{L}&&\p{Age=15.1}][\p{N}&&\p{Age=15.1}]]+",
    r"|\s+(?!\S)|\s+"
);
/// Pass 3 with Unicode-15.1 categories.
const DEFAULT_PASS3_UCD15: &str = r"[\p{N}&&\p{Age=15.1}]+";

/// The Llama-3 pattern (`llama-bpe`).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug)]
pub(crate) struct Splitter {
    passes: Vec<Regex>,
}

impl Splitter {
    pub(crate) fn new(pre: PreSplit) -> Splitter {
        let pats: &[&str] = match pre {
            PreSplit::Default => &[
                DEFAULT_PASS1_UCD15,
                DEFAULT_PASS2_UCD15,
                DEFAULT_PASS3_UCD15,
                DEFAULT_PASS4,
            ],
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
    fn tokenizer_default_passes_are_the_documented_ones() {
        // the compiled passes are §4.2's patterns with each category limited to Unicode 15.1
        let doc = |p: &str| {
            ["L", "N", "P"].iter().fold(p.to_string(), |p, c| {
                p.replace(
                    &format!("[\\p{{{c}}}&&\\p{{Age=15.1}}]"),
                    &format!("\\p{{{c}}}"),
                )
            })
        };
        assert_eq!(doc(DEFAULT_PASS1_UCD15), DEFAULT_PASS1);
        assert_eq!(doc(DEFAULT_PASS2_UCD15), DEFAULT_PASS2);
        assert_eq!(doc(DEFAULT_PASS3_UCD15), DEFAULT_PASS3);
    }

    #[test]
    fn tokenizer_default_split_unicode16_is_unassigned() {
        // Code points new in Unicode 16 are unassigned to llama.cpp (tables at Unicode 15.1).
        let d = PreSplit::Default;
        // U+1C89 (Lu in 16.0) does not join letters
        assert_eq!(split(d, "a\u{1C89}b"), ["a", "\u{1C89}", "b"]);
        // U+1CCF0 (Nd in 16.0) is not split off as a number, so the space stays with it
        assert_eq!(split(d, " \u{1CCF0}1"), [" \u{1CCF0}", "1"]);
        // U+1B4E (Po in 16.0) does not join a punctuation run
        assert_eq!(split(d, "x\u{1B4E}!"), ["x", "\u{1B4E}", "!"]);
        // Unicode 15.1 additions are classified (U+2EBF0, CJK Extension I, is a letter)
        assert_eq!(split(d, "a\u{2EBF0}b"), ["a\u{2EBF0}b"]);
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
