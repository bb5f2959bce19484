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
    let mut out = vec![value.to_owned()];
    base64_forms(b, &mut out);
    let lower = hex::encode(b);
    // `xxd -p` writes 30 bytes (60 digits) a line.
    out.extend(wrapped(&lower, 60));
    out.push(lower);
    out.push(hex::encode_upper(b));
    out.extend(url_forms(value));
    out.extend(json_forms(value));
    out.sort();
    out.dedup();
    out
}

/// Base64 in its alphabets, padded or not, and as `base64` (76 columns) and `openssl base64`
/// (64 columns) wrap it. Beside the value's own encoding: the encodings of the whole 3-byte
/// groups of the value at each of the three offsets it can have inside a longer text, so the
/// value is still caught when it is encoded with a trailing newline (`echo "$S" | base64`) or as
/// part of `KEY=value` (only the few characters shared with the neighbouring bytes are left).
fn base64_forms(b: &[u8], out: &mut Vec<String>) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &URL_SAFE] {
        let full = engine.encode(b);
        out.extend(wrapped(&full, 76));
        out.extend(wrapped(&full, 64));
        out.push(full);
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(b));
        for offset in 0..3usize {
            // The value preceded by `offset` other bytes: the first group (if it mixes those
            // bytes in) and the last one (if it is incomplete) depend on text around the value.
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(b);
            let groups = padded.len() / 3;
            let first = usize::from(offset > 0);
            if groups <= first + 1 {
                continue;
            }
            let encoded = engine.encode(&padded[..groups * 3]);
            let inner = &encoded[first * 4..];
            if offset == 0 {
                out.extend(wrapped(inner, 76));
                out.extend(wrapped(inner, 64));
            }
            out.push(inner.to_owned());
        }
    }
}

/// `text` broken into lines of `width` characters, as encoders wrap their output (nothing when
/// it fits on one line).
fn wrapped(text: &str, width: usize) -> Option<String> {
    if text.len() <= width || !text.is_ascii() {
        return None;
    }
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(width)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Some(lines.join("\n"))
}

/// Percent-encodings: upper- and lower-case digits (`%2F`, `%2f`), `%20` or `+` for a space,
/// and the characters each common encoder leaves alone (RFC 3986's unreserved set; also `/` as
/// Python's `quote` does; also `!'()*` as JavaScript's `encodeURIComponent` does).
fn url_forms(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for safe in ["", "/", "!'()*"] {
        for upper in [true, false] {
            let encoded = url_encode_with(value, safe.as_bytes(), upper);
            out.push(encoded.replace("%20", "+"));
            out.push(encoded);
        }
    }
    out
}

#[cfg(test)]
fn url_encode(value: &str) -> String {
    url_encode_with(value, b"", true)
}

fn url_encode_with(value: &str, safe: &[u8], upper: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || safe.contains(&byte)
        {
            out.push(char::from(byte));
        } else if upper {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

/// JSON string escapings, without the quotes: as serde and JavaScript write it (non-ASCII
/// characters as they are), and as Python's `json.dumps` writes it (every non-ASCII character
/// as `\uXXXX`, in lower case; upper case too, and `/` escaped as some encoders do).
fn json_forms(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(json) = serde_json::to_string(value) {
        out.push(json[1..json.len() - 1].to_owned());
        out.push(json[1..json.len() - 1].replace('/', "\\/"));
    }
    if !value.is_ascii() {
        for upper in [false, true] {
            let mut escaped = String::with_capacity(value.len() * 2);
            for c in value.chars() {
                match c {
                    c if c.is_ascii() => {
                        let one = serde_json::to_string(&c).unwrap_or_default();
                        escaped.push_str(one.get(1..one.len().saturating_sub(1)).unwrap_or(""));
                    }
                    c => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            if upper {
                                escaped.push_str(&format!("\\u{unit:04X}"));
                            } else {
                                escaped.push_str(&format!("\\u{unit:04x}"));
                            }
                        }
                    }
                }
            }
            out.push(escaped);
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
    fn wrapped_offset_and_escaped_forms_are_masked() {
        use base64::engine::general_purpose::STANDARD;
        let long = "Sécrét tøken/0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ+klmn";
        let r = Redactor::new([long]);
        let wrap = |s: &str, w: usize| -> String {
            s.as_bytes()
                .chunks(w)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let b64 = STANDARD.encode(long);
        let with_newline = STANDARD.encode(format!("{long}\n"));
        let after_key = STANDARD.encode(format!("KEY={long}"));
        let cases = [
            ("base64 76", wrap(&b64, 76), 0),
            ("openssl 64", wrap(&b64, 64), 0),
            ("echo | base64", wrap(&with_newline, 76), 8),
            ("KEY=value", after_key.clone(), 12),
            ("xxd -p", wrap(&hex::encode(long), 60), 0),
            (
                "json ascii",
                serde_json::to_string(long)
                    .unwrap_or_default()
                    .replace('é', "\\u00e9")
                    .replace('ø', "\\u00f8"),
                2,
            ),
            ("percent lower", url_encode_with(long, b"", false), 0),
            ("percent python", url_encode(long).replace("%2F", "/"), 0),
        ];
        for (name, text, left) in cases {
            let out = r.redact(&text);
            let rest = out.replace(MASK, "").replace('\n', "");
            assert!(out.contains(MASK), "{name}: {out}");
            assert!(rest.len() <= left, "{name}: {out} (from {text})");
        }
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
