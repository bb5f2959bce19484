//! Loading the fields of an `http` step: the native keys (`url`, `method`, `headers`, `query`,
//! `body`/`json`, `expect`, `extract`, limits) and the seed's form (`command: URL` with
//! `args.method`, `args.headers`, `args.body`). Expressions in the string fields were already
//! checked by the step loader; this checks everything else, each problem at its position.

use reqwest::header::{HeaderName, HeaderValue};

use super::{HttpBody, HttpStep, JsonPath, METHODS, parse_size};
use crate::diagnostic::{Pos, did_you_mean};
use crate::expr::has_expressions;
use crate::steps::LoadCx;
use crate::yaml::node::{Node, Value};

const EXPECT_KEYS: &[&str] = &["status", "body_contains", "json"];
/// Outputs every http step has; an `extract` name may not hide one of them.
const BUILT_IN_OUTPUTS: &[&str] = &["status", "headers", "body", "json"];

impl LoadCx<'_> {
    /// The http fields of step `name`; `None` (with diagnostics) when any is wrong.
    pub(super) fn http_step(&mut self, node: &Node, name: &str) -> Option<HttpStep> {
        let before = self.diags.len();
        let args = node
            .get("args")
            .filter(|a| matches!(a.value, Value::Map(_)));
        let arg = |key: &str| args.and_then(|a| a.get(key));
        let (url_node, seed) = match (node.get("url"), node.get("command")) {
            (Some(_), Some(c)) => {
                self.err(
                    c.pos,
                    format!("step `{name}` has both `url` and `command`: give the URL once (`command` is the seed's spelling of `url`)"),
                );
                return None;
            }
            (Some(u), None) => (u, false),
            (None, Some(c)) => (c, true),
            (None, None) => {
                self.err(
                    node.pos,
                    format!("step `{name}` (http) has no `url` (or the seed's `command: URL`)"),
                );
                return None;
            }
        };
        let field = if seed { "command" } else { "url" };
        let url = self.string(url_node, field)?;
        self.check_url(url_node.pos, &url, field);
        let mut step = HttpStep::new(url);
        if seed {
            // The seed's http step posted unless told otherwise.
            step.method = "POST".to_owned();
        }

        if let Some(m) = self.native_or_arg(node, args, "method")
            && let Some(text) = self.string(m, "method")
        {
            let upper = text.trim().to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                step.method = upper;
            } else {
                self.err_help(
                    m.pos,
                    format!(
                        "unknown HTTP method `{text}` (expected one of: {})",
                        METHODS.join(", ")
                    ),
                    did_you_mean(&upper, METHODS.iter().copied()),
                );
            }
        }

        match self.native_or_arg(node, args, "headers") {
            Some(h) => step.headers = self.headers(h),
            None if seed => {
                step.headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
            }
            None => {}
        }
        if let Some(q) = node.get("query") {
            step.query = self.query(q);
        }

        let bodies: Vec<(&str, &Node)> = [
            ("body", node.get("body")),
            ("json", node.get("json")),
            ("args.body", arg("body")),
        ]
        .into_iter()
        .filter_map(|(k, n)| n.map(|n| (k, n)))
        .collect();
        match bodies.as_slice() {
            [] => {}
            [("body", b)] => step.body = self.string(b, "body").map(HttpBody::Text),
            // `json`, or the seed's `args.body`, which the seed sent JSON-encoded whatever it was.
            [(_, j)] => step.body = Some(HttpBody::Json(j.to_json())),
            [(first, _), (second, n), ..] => self.err(
                n.pos,
                format!("`{first}` and `{second}` both give the request body: keep one (`body` is text sent as is, `json` a value sent as JSON)"),
            ),
        }

        if let Some(e) = node.get("expect") {
            self.expect(e, &mut step);
        }
        if let Some(x) = node.get("extract") {
            for (key, path) in self.entries(x, &[], "`extract`") {
                if BUILT_IN_OUTPUTS.contains(&key) {
                    self.err(
                        path.pos,
                        format!("`extract.{key}` would hide the built-in output `{key}`: choose another name"),
                    );
                    continue;
                }
                let Some(text) = self.string(path, &format!("extract.{key}")) else {
                    continue;
                };
                match JsonPath::parse(text.trim()) {
                    Ok(p) => step.extract.push((key.to_owned(), p)),
                    Err(why) => self.err(path.pos, format!("`extract.{key}`: {why}")),
                }
            }
        }
        if let Some(n) = node.get("max_response_bytes") {
            let size = match &n.value {
                Value::Int(i) if *i >= 1 => Ok(i.unsigned_abs()),
                Value::Int(_) => Err("must be at least 1 byte".to_owned()),
                Value::Str(s) => parse_size(s),
                _ => Err(format!(
                    "expected a number of bytes like 1048576 or 1MiB, found {}",
                    n.kind()
                )),
            };
            match size {
                Ok(b) => step.max_response_bytes = b,
                Err(why) => self.err(n.pos, format!("invalid `max_response_bytes`: {why}")),
            }
        }
        let follow = node
            .get("follow_redirects")
            .and_then(|n| self.boolean(n, "follow_redirects"));
        if let Some(n) = node.get("max_redirects") {
            match n.value {
                Value::Int(i) if (0..=100).contains(&i) => {
                    step.max_redirects = u32::try_from(i).unwrap_or(0);
                    if follow == Some(false) && i > 0 {
                        self.err(
                            n.pos,
                            "`max_redirects` contradicts `follow_redirects: false` (which means 0): keep one",
                        );
                    }
                }
                _ => self.err(
                    n.pos,
                    "`max_redirects` must be a whole number from 0 to 100",
                ),
            }
        }
        if follow == Some(false) {
            step.max_redirects = 0;
        }
        if let Some(n) = node.get("tls_verify")
            && let Some(b) = self.boolean(n, "tls_verify")
        {
            step.tls_verify = b;
        }
        (self.diags.len() == before).then_some(step)
    }

    /// The native key, or the seed's `args.<key>`; both is an error (at the second).
    fn native_or_arg<'n>(
        &mut self,
        node: &'n Node,
        args: Option<&'n Node>,
        key: &str,
    ) -> Option<&'n Node> {
        match (node.get(key), args.and_then(|a| a.get(key))) {
            (Some(n), Some(a)) => {
                self.err(
                    a.pos.max(n.pos),
                    format!("`{key}` and `args.{key}` are both given: keep one"),
                );
                None
            }
            (n, a) => n.or(a),
        }
    }

    fn check_url(&mut self, pos: Pos, url: &str, field: &str) {
        let url = url.trim();
        if url.is_empty() {
            self.err(
                pos,
                format!("`{field}` is empty: expected an http:// or https:// URL"),
            );
            return;
        }
        if has_expressions(url) {
            // Only what is written before the first expression can be checked now.
            let literal = &url[..url.find("${{").unwrap_or(url.len())];
            if let Some((scheme, _)) = literal.split_once(':')
                && !scheme.eq_ignore_ascii_case("http")
                && !scheme.eq_ignore_ascii_case("https")
            {
                self.err(
                    pos,
                    format!(
                        "unsupported URL scheme `{scheme}` in `{field}` (expected http or https)"
                    ),
                );
            }
            return;
        }
        match reqwest::Url::parse(url) {
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => self.err(
                pos,
                format!(
                    "unsupported URL scheme `{}` in `{field}` (expected http or https)",
                    u.scheme()
                ),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                self.err(pos, format!("`{field}` has no host: `{url}`"));
            }
            Ok(_) => {}
            Err(e) => self.err(
                pos,
                format!("invalid URL in `{field}`: {e} (expected e.g. http://host:8080/path)"),
            ),
        }
    }

    fn headers(&mut self, node: &Node) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in self.entries(node, &[], "`headers`") {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                // A key node's position is not at hand here; the value's line names it.
                self.err(
                    value.pos,
                    format!(
                        "invalid header name `{name}` (letters, digits and !#$%&'*+-.^_`|~ only)"
                    ),
                );
                continue;
            }
            let Some(text) = self.string(value, &format!("headers.{name}")) else {
                continue;
            };
            if !has_expressions(&text) && HeaderValue::from_str(&text).is_err() {
                self.err(
                    value.pos,
                    format!("invalid value for header `{name}`: control characters or line breaks are not allowed"),
                );
                continue;
            }
            out.push((name.to_owned(), text));
        }
        out
    }

    fn query(&mut self, node: &Node) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in self.entries(node, &[], "`query`") {
            let items: Vec<&Node> = match &value.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![value],
            };
            for item in items {
                if matches!(item.value, Value::Map(_) | Value::Seq(_) | Value::Null) {
                    self.err(
                        item.pos,
                        format!(
                            "`query.{name}` must be a value or a list of values, found {}",
                            item.kind()
                        ),
                    );
                    continue;
                }
                if let Some(text) = self.string(item, &format!("query.{name}")) {
                    out.push((name.to_owned(), text));
                }
            }
        }
        out
    }

    fn expect(&mut self, node: &Node, step: &mut HttpStep) {
        for (key, value) in self.entries(node, EXPECT_KEYS, "`expect`") {
            match key {
                "status" => {
                    let items: Vec<&Node> = match &value.value {
                        Value::Seq(items) if !items.is_empty() => items.iter().collect(),
                        _ => vec![value],
                    };
                    let mut ranges = Vec::new();
                    for item in items {
                        match status_range(item) {
                            Some(r) => ranges.push(r),
                            None => self.err(
                                item.pos,
                                format!(
                                    "invalid `expect.status`{}: expected a status code (200), a class (2xx), a range (200-204), or a list of them",
                                    item.scalar_text().map(|t| format!(" `{t}`")).unwrap_or_default()
                                ),
                            ),
                        }
                    }
                    step.expect.status = ranges;
                }
                "body_contains" => {
                    let items: Vec<&Node> = match &value.value {
                        Value::Seq(items) => items.iter().collect(),
                        _ => vec![value],
                    };
                    for item in items {
                        if let Some(s) = self.string(item, "expect.body_contains") {
                            step.expect.body_contains.push(s);
                        }
                    }
                }
                "json" => step.expect.json = Some(value.to_json()),
                _ => {}
            }
        }
    }
}

/// `200`, `"2xx"`, `"200-204"`, `"201"` → an inclusive range of statuses.
fn status_range(node: &Node) -> Option<(u16, u16)> {
    let valid = |n: u16| (100..=599).contains(&n);
    match &node.value {
        Value::Int(i) => u16::try_from(*i).ok().filter(|&n| valid(n)).map(|n| (n, n)),
        Value::Str(s) => {
            let s = s.trim().to_ascii_lowercase();
            if let Some(class) = s.strip_suffix("xx") {
                let c: u16 = class.parse().ok().filter(|c| (1..=5).contains(c))?;
                return Some((c * 100, c * 100 + 99));
            }
            if let Some((lo, hi)) = s.split_once('-') {
                let lo: u16 = lo.trim().parse().ok().filter(|&n| valid(n))?;
                let hi: u16 = hi.trim().parse().ok().filter(|&n| valid(n))?;
                return (lo <= hi).then_some((lo, hi));
            }
            s.parse().ok().filter(|&n| valid(n)).map(|n| (n, n))
        }
        _ => None,
    }
}
