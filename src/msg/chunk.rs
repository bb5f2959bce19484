//! Long text cut to a channel's limit: at a paragraph, else a line, else a sentence, else
//! anywhere; never inside a ``` block unless the block alone is longer than the limit.

/// The pieces of `text`, each at most `limit` characters, that joined give back `text` (up to
/// the whitespace at the cuts).
pub fn chunk(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        // Byte offset just past `limit` characters.
        let end = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..end];
        let cut = best_cut(window).unwrap_or(end);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        if !head.is_empty() {
            out.push(head.to_owned());
        }
        rest = tail.trim_start_matches(['\n', ' ']);
    }
    if !rest.trim().is_empty() || out.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// The best byte offset to cut `window` at (the cut starts the next piece), outside a fence.
fn best_cut(window: &str) -> Option<usize> {
    let outside = |at: usize| window[..at].matches("```").count().is_multiple_of(2);
    for sep in ["\n\n", "\n", ". ", "! ", "? "] {
        let mut best = None;
        for (i, _) in window.match_indices(sep) {
            let at = i + sep.len();
            // Cutting at the very start would make no progress.
            if i > 0 && at < window.len() + 1 && outside(i) {
                best = Some(at);
            }
        }
        if best.is_some() {
            return best;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::chunk;

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(chunk("hello", 10), vec!["hello"]);
    }

    #[test]
    fn paragraphs_first_then_lines_then_sentences_then_hard() {
        let t = "aaaa aaaa\n\nbbbb\ncccc";
        assert_eq!(chunk(t, 15), vec!["aaaa aaaa", "bbbb\ncccc"]);
        assert_eq!(chunk("aaaa\nbbbb\ncccc", 10), vec!["aaaa\nbbbb", "cccc"]);
        assert_eq!(
            chunk("One two. Three four.", 12),
            vec!["One two.", "Three four."]
        );
        assert_eq!(chunk("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn never_inside_a_code_block() {
        let t = "intro\n```\nline1\n\nline2\n```\nafter";
        let pieces = chunk(t, 26);
        for p in &pieces {
            assert_eq!(p.matches("```").count() % 2, 0, "{pieces:?}");
        }
        assert_eq!(pieces, vec!["intro", "```\nline1\n\nline2\n```\nafter"]);
    }

    #[test]
    fn every_piece_fits_and_nothing_is_lost() {
        let t = "é".repeat(5000) + "\n" + &"word ".repeat(2000);
        let pieces = chunk(&t, 4096);
        assert!(pieces.iter().all(|p| p.chars().count() <= 4096));
        let joined: String = pieces.concat();
        let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(squeeze(&joined), squeeze(&t));
    }
}
