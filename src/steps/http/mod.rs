//! The `http` step: one request (reqwest, rustls), its response checked against `expect`,
//! values picked out with `extract`.
//!
//! ```yaml
//! - name: smoke
//!   type: http
//!   url: http://web1:8080/health
//!   method: GET
//!   expect: {status: 200, json: {ok: true}}
//!   extract: {version: build.version}
//! ```
//!
//! This file is the model and the kind's interface; `load.rs` reads it from a file (also the
//! seed's form, `command: URL` with `args.method|headers|body`), [`run`] sends it. String fields
//! may hold `${{ }}` expressions, rendered as plain text before each attempt
//! ([`HttpStep::render`]).

mod load;
pub mod run;

pub use run::install_crypto_provider;

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport};
use crate::yaml::Node;

/// The default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// The default number of redirects followed.
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;
/// Methods an http step may use.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

#[derive(Debug, Clone, PartialEq)]
pub struct HttpStep {
    pub url: String,
    /// Upper case, one of [`METHODS`].
    pub method: String,
    /// Request headers, in file order; values may hold expressions.
    pub headers: Vec<(String, String)>,
    /// Query parameters appended to the URL (a name may repeat).
    pub query: Vec<(String, String)>,
    pub body: Option<HttpBody>,
    pub expect: HttpExpect,
    /// Output name → where in the response JSON.
    pub extract: Vec<(String, JsonPath)>,
    pub max_response_bytes: u64,
    /// 0 = redirects are not followed (the 3xx response is the result).
    pub max_redirects: u32,
    pub tls_verify: bool,
}

impl HttpStep {
    /// A GET of `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: "GET".to_owned(),
            headers: Vec::new(),
            query: Vec::new(),
            body: None,
            expect: HttpExpect::default(),
            extract: Vec::new(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            tls_verify: true,
        }
    }

    /// Every string that may hold an expression (for finding secrets and deciding whether the
    /// step needs the expression context).
    pub fn templates(&self) -> Vec<&str> {
        let mut out = vec![self.url.as_str()];
        out.extend(self.headers.iter().map(|(_, v)| v.as_str()));
        out.extend(self.query.iter().map(|(_, v)| v.as_str()));
        match &self.body {
            Some(HttpBody::Text(t)) => out.push(t),
            Some(HttpBody::Json(v)) => json_strings(v, &mut out),
            None => {}
        }
        out.extend(self.expect.body_contains.iter().map(String::as_str));
        if let Some(j) = &self.expect.json {
            json_strings(j, &mut out);
        }
        out
    }

    /// A copy with every template rendered by `render` (plain text, no shell quoting).
    pub fn render(&self, render: &dyn Fn(&str) -> Result<String, String>) -> Result<Self, String> {
        let mut out = self.clone();
        out.url = render(&self.url).map_err(|e| format!("cannot render `url`: {e}"))?;
        for (k, v) in &mut out.headers {
            *v = render(v).map_err(|e| format!("cannot render header `{k}`: {e}"))?;
        }
        for (k, v) in &mut out.query {
            *v = render(v).map_err(|e| format!("cannot render query `{k}`: {e}"))?;
        }
        out.body = match &self.body {
            Some(HttpBody::Text(t)) => Some(HttpBody::Text(
                render(t).map_err(|e| format!("cannot render `body`: {e}"))?,
            )),
            Some(HttpBody::Json(v)) => Some(HttpBody::Json(
                render_json(v, render).map_err(|e| format!("cannot render `json`: {e}"))?,
            )),
            None => None,
        };
        for s in &mut out.expect.body_contains {
            *s = render(s).map_err(|e| format!("cannot render `expect.body_contains`: {e}"))?;
        }
        if let Some(j) = &self.expect.json {
            out.expect.json = Some(
                render_json(j, render).map_err(|e| format!("cannot render `expect.json`: {e}"))?,
            );
        }
        Ok(out)
    }

    /// What a dry run says: `GET https://…`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.url)
    }

    /// Whether sending it twice is harmless by HTTP's own rules (the default of `idempotent`).
    pub fn safe_method(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

impl Kind for HttpStep {
    const NAMES: &'static [&'static str] = &["http"];
    const KEYS: &'static [&'static str] = &[
        "url",
        "method",
        "headers",
        "query",
        "body",
        "json",
        "expect",
        "extract",
        "max_response_bytes",
        "follow_redirects",
        "max_redirects",
        "tls_verify",
    ];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let name = cx.step.to_owned();
        cx.http_step(node, &name)
    }

    /// GET, HEAD and OPTIONS are safe to send twice by HTTP's own rules.
    fn idempotent(&self) -> bool {
        self.safe_method()
    }

    fn describe(&self) -> String {
        HttpStep::describe(self)
    }

    fn templates(&self) -> Vec<&str> {
        HttpStep::templates(self)
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        // Rendered as plain text: a URL or a header is not a shell command.
        self.render(&|text| cx.plain(text))
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        run::run(self, input, &rt.cancel).await
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("command", HttpStep::describe(self).into())]
    }
}

fn json_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_strings(i, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| json_strings(i, out)),
        _ => {}
    }
}

/// Renders the string leaves of a JSON value (keys are left as written).
fn render_json(
    v: &serde_json::Value,
    render: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Value, String> {
    Ok(match v {
        serde_json::Value::String(s) => serde_json::Value::String(render(s)?),
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| render_json(i, render))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), render_json(i, render)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    /// Sent as is (`body:`).
    Text(String),
    /// Serialized, with `Content-Type: application/json` unless a header says otherwise.
    Json(serde_json::Value),
}

/// What the response must look like for the step to succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpExpect {
    /// Accepted status ranges (inclusive); default 200–299.
    pub status: Vec<(u16, u16)>,
    /// Texts the body must contain, each.
    pub body_contains: Vec<String>,
    /// The body must be JSON containing this value (objects: these keys, recursively).
    pub json: Option<serde_json::Value>,
}

impl Default for HttpExpect {
    fn default() -> Self {
        Self {
            status: vec![(200, 299)],
            body_contains: Vec::new(),
            json: None,
        }
    }
}

impl HttpExpect {
    pub fn status_ok(&self, status: u16) -> bool {
        self.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }

    /// The accepted statuses as written back: `2xx`, `200`, `200-204`, joined with ` or `.
    pub fn status_text(&self) -> String {
        self.status
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else if lo % 100 == 0 && hi == lo + 99 {
                    format!("{}xx", lo / 100)
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// A place in a JSON document, kept as written and as a JSON pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub written: String,
    pub pointer: String,
}

impl JsonPath {
    /// A JSON pointer (`/a/b/0`) or a simple path (`a.b[0]`, optionally starting with `$.`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let pointer = if text.is_empty() || text.starts_with('/') {
            check_pointer(text)?;
            text.to_owned()
        } else {
            simple_path_to_pointer(text)?
        };
        Ok(Self {
            written: text.to_owned(),
            pointer,
        })
    }

    pub fn lookup<'v>(&self, doc: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        doc.pointer(&self.pointer)
    }
}

fn check_pointer(p: &str) -> Result<(), String> {
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "invalid JSON pointer `{p}`: `~` must be followed by 0 (for `~`) or 1 (for `/`)"
            ));
        }
    }
    Ok(())
}

fn simple_path_to_pointer(path: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid path `{path}`: {why} (expected a JSON pointer like `/a/b/0` or a path like `a.b[0]`)"
        ))
    };
    let rest = path
        .strip_prefix("$.")
        .or_else(|| path.strip_prefix('$').filter(|r| r.starts_with('[')))
        .unwrap_or(path);
    let mut pointer = String::new();
    let mut key = String::new();
    let mut chars = rest.chars().peekable();
    // Whether the last thing closed was `]` (then `.`, `[` or the end must follow).
    let mut after_index = false;
    let mut expect_key = true;
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if key.is_empty() && !after_index {
                    return bad("empty name between dots");
                }
                if !key.is_empty() {
                    push_segment(&mut pointer, &key);
                    key.clear();
                }
                after_index = false;
                expect_key = true;
            }
            '[' => {
                if !key.is_empty() {
                    push_segment(&mut pointer, &key);
                    key.clear();
                } else if expect_key && !pointer.is_empty() && !after_index {
                    return bad("`[` after a dot");
                }
                let mut index = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == ']' {
                        closed = true;
                        break;
                    }
                    index.push(d);
                }
                if !closed {
                    return bad("`[` is never closed");
                }
                let quoted = index
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| index.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
                match quoted {
                    Some(name) => push_segment(&mut pointer, name),
                    None if !index.is_empty() && index.chars().all(|d| d.is_ascii_digit()) => {
                        push_segment(&mut pointer, &index);
                    }
                    None => return bad("an index must be a number, or a quoted name"),
                }
                after_index = true;
                expect_key = false;
            }
            ']' => return bad("`]` without `[`"),
            _ => {
                if after_index {
                    return bad("expected `.` or `[` after `]`");
                }
                key.push(c);
                expect_key = false;
            }
        }
    }
    if expect_key && key.is_empty() {
        return bad("it ends with a dot or is empty");
    }
    if !key.is_empty() {
        push_segment(&mut pointer, &key);
    }
    Ok(pointer)
}

fn push_segment(pointer: &mut String, name: &str) {
    pointer.push('/');
    pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
}

/// Whether `actual` contains `expected`: objects by their keys (recursively), anything else by
/// equality (numbers compared by value, so `1` matches `1.0`).
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (actual, expected) {
        (V::Object(a), V::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (V::Array(a), V::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(x, y)| json_contains(x, y))
        }
        (V::Number(a), V::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

/// Parses a byte size: a whole number of bytes, or a number with a unit (`512KiB`, `10MB`, `1m`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a number of bytes like 1048576 or 1MiB, found `{text}`"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (expected B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| format!("size `{text}` is too large"))?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_paths_become_pointers() {
        let p = |s: &str| JsonPath::parse(s).map(|p| p.pointer);
        assert_eq!(p("a.b[0]").unwrap(), "/a/b/0");
        assert_eq!(p("$.a.b").unwrap(), "/a/b");
        assert_eq!(p("items[2][0].id").unwrap(), "/items/2/0/id");
        assert_eq!(p("a[\"x.y\"]").unwrap(), "/a/x.y");
        assert_eq!(p("a/b.c").unwrap(), "/a~1b/c");
        assert_eq!(p("/a/b/0").unwrap(), "/a/b/0");
        assert_eq!(p("").unwrap(), "");
        for bad in [
            "a..b", "a.", ".a", "a[x]", "a[0", "a]", "a[0]b", "/a~2", "a.[0]",
        ] {
            assert!(p(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn lookup_follows_the_pointer() {
        let doc = serde_json::json!({"a": {"b": [10, 20]}});
        let path = JsonPath::parse("a.b[1]").unwrap();
        assert_eq!(path.lookup(&doc), Some(&serde_json::json!(20)));
        assert_eq!(JsonPath::parse("a.c").unwrap().lookup(&doc), None);
    }

    #[test]
    fn contains_is_a_subset_match() {
        let doc = serde_json::json!({"ok": true, "n": 1, "inner": {"x": 1, "y": 2}, "l": [1, 2]});
        assert!(json_contains(&doc, &serde_json::json!({"ok": true})));
        assert!(json_contains(
            &doc,
            &serde_json::json!({"inner": {"y": 2}, "n": 1.0})
        ));
        assert!(!json_contains(&doc, &serde_json::json!({"ok": false})));
        assert!(!json_contains(&doc, &serde_json::json!({"missing": null})));
        assert!(!json_contains(&doc, &serde_json::json!({"l": [1]})));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("2 kb"), Ok(2000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-5").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn status_text_reads_back() {
        let e = HttpExpect {
            status: vec![(200, 299), (301, 301), (400, 404)],
            ..HttpExpect::default()
        };
        assert_eq!(e.status_text(), "2xx or 301 or 400-404");
        assert!(e.status_ok(204) && e.status_ok(404) && !e.status_ok(302));
    }

    #[test]
    fn render_touches_every_template() {
        let mut s = HttpStep::new("http://h/${{ x }}");
        s.headers.push(("A".into(), "${{ x }}".into()));
        s.body = Some(HttpBody::Json(serde_json::json!({"k": ["${{ x }}", 1]})));
        assert_eq!(s.templates().len(), 3);
        let r = s.render(&|t: &str| Ok(t.replace("${{ x }}", "v"))).unwrap();
        assert_eq!(r.url, "http://h/v");
        assert_eq!(r.headers[0].1, "v");
        assert_eq!(
            r.body,
            Some(HttpBody::Json(serde_json::json!({"k": ["v", 1]})))
        );
    }
}
