//! Names people give things (workflows, steps, jobs, hooks): one identity per name as it reads.
//!
//! A name is kept in Unicode normalization form C, so `café` typed on two keyboards (one `é`, or
//! `e` and a combining accent) is one name, not two that look identical. Characters that make a
//! name read differently from what it is are refused: control characters, bidirectional
//! overrides and isolates (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C, which can make
//! `gnp.exe` show as `exe.png`), and invisible ones (zero-width spaces and joiners, U+FEFF,
//! U+2060, soft hyphens).

use unicode_normalization::UnicodeNormalization as _;

/// Why `c` may not appear in a name, if it may not.
fn refused(c: char) -> Option<&'static str> {
    match c {
        c if c.is_control() => Some("a control character"),
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => {
            Some("a bidirectional-text control, which makes text display in another order")
        }
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}' => {
            Some("an invisible character")
        }
        _ => None,
    }
}

/// Whether `c` would make text read as something other than what it is.
pub fn is_misleading(c: char) -> bool {
    refused(c).is_some()
}

/// The name as claw keeps it (NFC), or why it cannot be one (naming the character).
pub fn normalize(name: &str) -> Result<String, String> {
    for c in name.chars() {
        if let Some(why) = refused(c) {
            return Err(format!(
                "contains U+{:04X}, {why}: names may not",
                u32::from(c)
            ));
        }
    }
    Ok(name.nfc().collect())
}

/// The name in NFC without checking it (for looking names up: a refused name is never stored).
pub fn nfc(name: &str) -> String {
    name.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_and_decomposed_are_one_name() {
        let composed = "caf\u{e9}";
        let decomposed = "cafe\u{301}";
        assert_ne!(composed, decomposed);
        assert_eq!(normalize(composed), normalize(decomposed));
        assert_eq!(nfc(decomposed), composed);
    }

    #[test]
    fn misleading_characters_are_refused() {
        for bad in [
            "deploy\u{202E}gnp",
            "a\u{2066}b",
            "x\u{200B}y",
            "tab\there",
            "esc\u{1b}[31m",
            "\u{FEFF}bom",
            "rtl\u{200F}",
        ] {
            let err = normalize(bad).expect_err(bad);
            assert!(err.starts_with("contains U+"), "{err}");
        }
        assert_eq!(
            normalize("déploiement-生产").as_deref(),
            Ok("déploiement-生产")
        );
    }
}
