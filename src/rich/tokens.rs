//! The search tokenizer: the same terms for the index and for queries, on every
//! database (see `store::search` for why the application tokenizes).
//!
//! Text is normalized (NFKC, lowercase, `ß` as `ss`), split into words by Unicode's word
//! boundaries (UAX #29). Scripts written without spaces between words (Chinese, Japanese,
//! Korean, Thai, Lao, Khmer, Myanmar) are indexed as every single character and every
//! pair of neighbouring characters: a query of one such character looks for it alone, a
//! longer one for all its pairs, which finds the phrase wherever it stands.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// The most terms a query looks for; the rest of a long query is not used.
pub const MAX_QUERY_TERMS: usize = 8;

/// Case and width folded: `Müller`, `MÜLLER` and `müller` are one word, `ｶﾀｶﾅ` is `カタカナ`.
pub fn normalize(s: &str) -> String {
    let folded: String = s.nfkc().flat_map(char::to_lowercase).collect();
    if folded.contains('ß') {
        folded.replace('ß', "ss")
    } else {
        folded
    }
}

/// Whether `c` belongs to a script written without spaces between words.
pub fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF        // Thai, Lao
        | 0x1000..=0x109F      // Myanmar
        | 0x1780..=0x17FF      // Khmer
        | 0x1100..=0x11FF      // Hangul Jamo
        | 0x2E80..=0x2FDF      // CJK radicals
        | 0x3005..=0x3007      // 々 〆 〇
        | 0x3040..=0x30FF      // Hiragana, Katakana (with ー)
        | 0x3130..=0x318F      // Hangul compatibility Jamo
        | 0x31F0..=0x31FF      // Katakana extensions
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xAC00..=0xD7AF      // Hangul syllables
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0x20000..=0x3FFFF    // CJK extensions B and later
    )
}

/// A piece of normalized text: a word, or a run of unspaced-script characters.
#[derive(Debug, PartialEq)]
enum Piece {
    Word(String),
    Run(Vec<char>),
}

fn pieces(normalized: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut run: Vec<char> = Vec::new();
    for segment in normalized.split_word_bounds() {
        if !segment.chars().any(char::is_alphanumeric) {
            if !run.is_empty() {
                out.push(Piece::Run(std::mem::take(&mut run)));
            }
            continue;
        }
        if segment.chars().all(is_unspaced) {
            run.extend(segment.chars());
        } else {
            if !run.is_empty() {
                out.push(Piece::Run(std::mem::take(&mut run)));
            }
            // A word mixing scripts (rare): its unspaced part still gets pairs.
            if segment.chars().any(is_unspaced) {
                let mut word = String::new();
                for c in segment.chars() {
                    if is_unspaced(c) {
                        run.push(c);
                    } else {
                        if !run.is_empty() {
                            out.push(Piece::Run(std::mem::take(&mut run)));
                        }
                        word.push(c);
                    }
                }
                if !run.is_empty() {
                    out.push(Piece::Run(std::mem::take(&mut run)));
                }
                if !word.is_empty() {
                    out.push(Piece::Word(word));
                }
            } else {
                out.push(Piece::Word(segment.to_string()));
            }
        }
    }
    if !run.is_empty() {
        out.push(Piece::Run(run));
    }
    out
}

fn push_unique(terms: &mut Vec<String>, term: String) {
    if !terms.contains(&term) {
        terms.push(term);
    }
}

/// The terms a message's text is indexed under.
pub fn index_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for piece in pieces(&normalize(text)) {
        match piece {
            Piece::Word(w) => push_unique(&mut terms, w),
            Piece::Run(chars) => {
                for (i, c) in chars.iter().enumerate() {
                    push_unique(&mut terms, c.to_string());
                    if let Some(next) = chars.get(i + 1) {
                        push_unique(&mut terms, format!("{c}{next}"));
                    }
                }
            }
        }
    }
    terms
}

/// The terms every match of a query has (at most [`MAX_QUERY_TERMS`]).
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for piece in pieces(&normalize(query)) {
        match piece {
            Piece::Word(w) => push_unique(&mut terms, w),
            Piece::Run(chars) if chars.len() == 1 => push_unique(&mut terms, chars[0].to_string()),
            Piece::Run(chars) => {
                for pair in chars.windows(2) {
                    push_unique(&mut terms, pair.iter().collect());
                }
            }
        }
    }
    terms.truncate(MAX_QUERY_TERMS);
    terms
}

/// A term's key in the index: FNV-1a, 64 bits, of its UTF-8. Fixed width and compared
/// as a number, so no collation, minimum word length or stop word list of a database
/// comes into play; a collision only costs a result that the highlighter then finds no
/// match in, and such a result is dropped.
pub fn term_key(term: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in term.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Where in `text` the query matches, as byte ranges in order (for highlighting): whole
/// words equal to a query word, and the query's unspaced runs wherever they appear.
pub fn match_ranges(text: &str, query: &str) -> Vec<Range<usize>> {
    let mut words: Vec<String> = Vec::new();
    let mut runs: Vec<Vec<char>> = Vec::new();
    for piece in pieces(&normalize(query)) {
        match piece {
            Piece::Word(w) => words.push(w),
            Piece::Run(r) => runs.push(r),
        }
    }
    let mut ranges: Vec<Range<usize>> = Vec::new();
    // The text's characters, each with its normalized form, for runs.
    let mut chars: Vec<(Range<usize>, String)> = Vec::new();
    for (start, segment) in text.split_word_bound_indices() {
        if segment.chars().any(char::is_alphanumeric)
            && !segment.chars().any(is_unspaced)
            && words.contains(&normalize(segment))
        {
            ranges.push(start..start + segment.len());
        }
        if !runs.is_empty() {
            for (offset, c) in segment.char_indices() {
                let at = start + offset;
                chars.push((at..at + c.len_utf8(), normalize(c.encode_utf8(&mut [0; 4]))));
            }
        }
    }
    for run in &runs {
        let wanted: Vec<String> = run.iter().map(|c| c.to_string()).collect();
        if wanted.is_empty() || chars.len() < wanted.len() {
            continue;
        }
        for i in 0..=chars.len() - wanted.len() {
            if chars[i..i + wanted.len()]
                .iter()
                .zip(&wanted)
                .all(|((_, have), want)| have == want)
            {
                ranges.push(chars[i].0.start..chars[i + wanted.len() - 1].0.end);
            }
        }
    }
    ranges.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_any_language() {
        assert_eq!(index_terms("Hello, World! hello"), ["hello", "world"]);
        assert_eq!(
            index_terms("Grüße aus MÜNCHEN"),
            ["grüsse", "aus", "münchen"]
        );
        // Decomposed umlaut (u + combining diaeresis) is the same word.
        assert_eq!(query_terms("Mu\u{308}nchen"), ["münchen"]);
        assert_eq!(query_terms("GRÜSSE"), ["grüsse"]);
        assert_eq!(
            index_terms("東京タワー"),
            ["東", "東京", "京", "京タ", "タ", "タワ", "ワ", "ワー", "ー"]
        );
        assert_eq!(query_terms("東京"), ["東京"]);
        assert_eq!(query_terms("京"), ["京"]);
        assert_eq!(query_terms("我爱北京"), ["我爱", "爱北", "北京"]);
        assert_eq!(query_terms("  ,.!  "), Vec::<String>::new());
        assert_eq!(query_terms("visit 北京 now"), ["visit", "北京", "now"]);
    }

    #[test]
    fn every_query_term_is_an_index_term() {
        let text = "Wir treffen uns im Café Müller. 明日は東京タワーに行きます。";
        let indexed = index_terms(text);
        for q in ["café", "MÜLLER", "東京タワー", "行き", "明日"] {
            for t in query_terms(q) {
                assert!(indexed.contains(&t), "{q}: {t}");
            }
        }
    }

    #[test]
    fn matches_are_found_for_highlighting() {
        let text = "Grüße aus München, Müller!";
        let r = match_ranges(text, "MÜNCHEN müller");
        let found: Vec<&str> = r.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(found, ["München", "Müller"]);
        let text = "明日は東京タワーに行きます";
        let r = match_ranges(text, "東京タワー");
        assert_eq!(&text[r[0].clone()], "東京タワー");
        assert!(match_ranges("and", "an").is_empty());
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(term_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_ne!(term_key("a"), term_key("b"));
    }
}
