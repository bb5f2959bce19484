//! Redaction: the one layer every sink writes through (step logs, stored output, outputs, run
//! errors, notifications, the audit log), so that a secret value never reaches any of them in
//! clear.
//!
//! A [`Redactor`] masks every given value and its common encodings: base64 (standard and
//! URL-safe, with and without padding), URL-encoding, hex (lower and upper case) and JSON string
//! escaping. [`StreamRedactor`] does the same over a stream that arrives in pieces, holding back
//! just enough bytes that a value split across two writes is still caught.
//!
//! Values shorter than [`MIN_LEN`] characters are not masked: masking `on` or `42` everywhere
//! would garble every log and protect nothing.

mod global;

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;

pub use global::{global, register_global};

/// Values shorter than this are not masked.
pub const MIN_LEN: usize = 4;
/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Masks a fixed set of secret values (and their encodings) in text.
#[derive(Debug, Clone)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// The longest pattern, in bytes.
    max_len: usize,
    /// Whether some pattern contains a line break (only if a secret does).
    multiline: bool,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(std::iter::empty::<&str>())
    }
}

/// The forms of one value that are masked.
fn forms(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let std = base64::engine::general_purpose::STANDARD;
    let std_np = base64::engine::general_purpose::STANDARD_NO_PAD;
    let url = base64::engine::general_purpose::URL_SAFE;
    let url_np = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut out = vec![
        value.to_owned(),
        std.encode(b),
        std_np.encode(b),
        url.encode(b),
        url_np.encode(b),
        hex::encode(b),
        hex::encode_upper(b),
        url_encode(value),
        url_encode(value).replace("%20", "+"),
    ];
    if let Ok(json) = serde_json::to_string(value) {
        // Without the surrounding quotes.
        out.push(json[1..json.len() - 1].to_owned());
    }
    out.sort();
    out.dedup();
    out
}

fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Redactor {
    /// A redactor for these values (those shorter than [`MIN_LEN`] characters are ignored).
    pub fn new<'a, I>(values: I) -> Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut patterns: Vec<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_LEN)
            .flat_map(forms)
            .filter(|p| p.len() >= MIN_LEN)
            .collect();
        patterns.sort();
        patterns.dedup();
        let max_len = patterns.iter().map(String::len).max().unwrap_or(0);
        let multiline = patterns.iter().any(|p| p.contains('\n'));
        let matcher = if patterns.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok()
        };
        Self {
            matcher,
            max_len,
            multiline,
        }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// The text with every value masked.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(m) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        if !m.is_match(text) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(m.replace_all(text, &vec![MASK; m.patterns_len()]))
    }

    /// Bytes with every value masked.
    pub fn redact_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        let Some(m) = &self.matcher else {
            return Cow::Borrowed(bytes);
        };
        if !m.is_match(bytes) {
            return Cow::Borrowed(bytes);
        }
        Cow::Owned(m.replace_all_bytes(bytes, &vec![MASK.as_bytes(); m.patterns_len()]))
    }

    /// Masks every string inside a JSON value (keys too).
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => items.iter().map(|v| self.redact_json(v)).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (self.redact(k).into_owned(), self.redact_json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            other => other.clone(),
        }
    }
}

/// A [`Redactor`] over a stream that arrives in pieces.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    pending: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            pending: Vec::new(),
        }
    }

    /// Takes the next piece; returns what can be written now (masked). Up to the longest
    /// pattern's length minus one byte is held back, in case a value continues in the next piece.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let Some(m) = &self.redactor.matcher else {
            return bytes.to_vec();
        };
        self.pending.extend_from_slice(bytes);
        let len = self.pending.len();
        let mut cut = len.saturating_sub(self.redactor.max_len.saturating_sub(1));
        // No pattern spans a line break, so everything up to the last one can go now: line
        // output keeps flowing (and keeps its order against the other stream).
        if !self.redactor.multiline
            && let Some(nl) = self.pending.iter().rposition(|&b| b == b'\n')
        {
            cut = cut.max(nl + 1);
        }
        // A match that starts before the cut is final: any longer pattern starting there would
        // also fit in the buffer, and leftmost-longest would have chosen it. Emit it whole.
        for found in m.find_iter(&self.pending[..]) {
            if found.start() >= cut {
                break;
            }
            if found.end() > cut {
                cut = found.end();
            }
        }
        let ready: Vec<u8> = self.pending.drain(..cut).collect();
        self.redactor.redact_bytes(&ready).into_owned()
    }

    /// The rest, masked (at the end of the stream).
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.redact_bytes(&rest).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "cAn4ry-S3cr3t/value+42";

    fn r() -> Redactor {
        Redactor::new([CANARY, "ab"])
    }

    #[test]
    fn masks_the_value_and_its_encodings() {
        let r = r();
        let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
        let cases = [
            format!("token={CANARY}!"),
            format!("b64 {b64}"),
            format!("hex {}", hex::encode(CANARY)),
            format!("HEX {}", hex::encode_upper(CANARY)),
            format!("url {}", url_encode(CANARY)),
            format!("json {}", serde_json::json!({"t": format!("a\"{CANARY}")})),
        ];
        for c in &cases {
            let out = r.redact(c);
            assert!(!out.contains(CANARY), "{out}");
            assert!(out.contains(MASK), "{c} → {out}");
            assert!(!out.contains(&b64), "{out}");
        }
        assert_eq!(r.redact("short ab stays"), "short ab stays");
    }

    #[test]
    fn a_value_split_across_writes_is_caught() {
        let text = format!("before {CANARY} middle {CANARY} after");
        for split in 0..text.len() {
            let mut s = StreamRedactor::new(r());
            let mut out = s.push(&text.as_bytes()[..split]);
            out.extend(s.push(&text.as_bytes()[split..]));
            out.extend(s.finish());
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out, "before *** middle *** after", "split at {split}");
        }
    }

    #[test]
    fn byte_by_byte_streams_are_caught() {
        let text = format!("x{CANARY}y{}", hex::encode(CANARY));
        let mut s = StreamRedactor::new(r());
        let mut out = Vec::new();
        for b in text.as_bytes() {
            out.extend(s.push(std::slice::from_ref(b)));
        }
        out.extend(s.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "x***y***");
    }

    #[test]
    fn complete_lines_are_not_held_back() {
        let mut s = StreamRedactor::new(r());
        assert_eq!(s.push(b"first line\nsecond"), b"first line\n");
        let mut rest = s.push(format!(" {CANARY}\n").as_bytes());
        rest.extend(s.finish());
        assert_eq!(String::from_utf8(rest).unwrap(), "second ***\n");
    }

    #[test]
    fn json_values_are_masked_deeply() {
        let v = serde_json::json!({"a": [CANARY, {"b": format!("pre{CANARY}")}], CANARY: 1});
        let masked = r().redact_json(&v).to_string();
        assert!(!masked.contains(CANARY), "{masked}");
    }

    #[test]
    fn nothing_to_mask_passes_through() {
        let r = Redactor::default();
        assert!(r.is_empty());
        let mut s = StreamRedactor::new(r);
        assert_eq!(s.push(b"abc"), b"abc");
    }
}
