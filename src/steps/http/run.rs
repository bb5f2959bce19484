//! The http step: one request with reqwest (rustls, the system's roots), its response checked
//! against `expect`, values picked out with `extract`.
//!
//! The whole exchange (connecting, sending, reading the body) is bounded by the step's timeout and
//! stopped by the run's cancellation. The body is read chunk by chunk up to `max_response_bytes`:
//! a larger response fails the step without being read further. Each failure says whether another
//! attempt could go differently (connection errors, timeouts, 5xx, 429) or not (other 4xx, a
//! response that does not match `expect`, the size cap, too many redirects, an untrusted
//! certificate); the engine retries only the former.

use std::io::Write as _;
use std::sync::Once;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode, Url};
use tokio_util::sync::CancellationToken;

use super::{HttpBody, HttpStep, json_contains};
use crate::steps::{StepInput, StepOutcome, StepReport};
use crate::time::duration;

/// How much of a body the step log and failure messages show.
const EXCERPT: usize = 2048;
const FAILURE_EXCERPT: usize = 200;

/// Runs one attempt of an http step whose fields are already rendered.
pub async fn run(step: &HttpStep, input: &StepInput, cancel: &CancellationToken) -> StepReport {
    let mut log = Log::new(input);
    let request = match build(step, input) {
        Ok(r) => r,
        Err(f) => {
            log.line(&format!("! {}", f.reason));
            return f.into_report();
        }
    };
    if !step.tls_verify {
        log.line("warning: TLS certificate verification is off (tls_verify: false)");
    }
    let attempt = input
        .env
        .iter()
        .find(|(k, _)| k == "CLAW_ATTEMPT")
        .map(|(_, n)| format!(" (attempt {n})"))
        .unwrap_or_default();
    log.line(&format!(
        "> {} {}{attempt}",
        step.method,
        safe_url(&request.url)
    ));
    log.line(&format!("> headers: {}", request.header_names()));
    let requested = request.url.clone();
    let started = Instant::now();
    let received = tokio::select! {
        r = tokio::time::timeout(input.timeout, exchange(request, step.max_response_bytes)) => match r {
            Ok(r) => r,
            Err(_) => Err(Failure::retryable(format!(
                "timed out after {}",
                duration::format(input.timeout)
            ))),
        },
        () = cancel.cancelled() => {
            log.line("! cancelled");
            return StepReport {
                outcome: StepOutcome::Cancelled,
                ..StepReport::failed("")
            };
        }
    };
    let elapsed = started.elapsed();
    let received = match received {
        Ok(r) => r,
        Err(f) => {
            log.line(&format!(
                "! {} (after {} ms)",
                f.reason,
                elapsed.as_millis()
            ));
            return f.into_report();
        }
    };
    log.response(&received, &requested, elapsed);
    let report = check(step, &received, input);
    if let StepOutcome::Failed { reason } = &report.outcome {
        log.line(&format!("! {reason}"));
    }
    report
}

/// A failure of the attempt and whether another attempt could go differently.
#[derive(Debug)]
struct Failure {
    reason: String,
    retryable: bool,
}

impl Failure {
    fn retryable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retryable: true,
        }
    }

    fn for_good(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retryable: false,
        }
    }

    fn into_report(self) -> StepReport {
        StepReport {
            retryable: self.retryable,
            ..StepReport::failed(self.reason)
        }
    }
}

/// A request ready to send.
#[derive(Debug)]
struct Request {
    client: reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl Request {
    /// Header names only: values may be credentials.
    fn header_names(&self) -> String {
        let mut names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        names.dedup();
        names.join(", ")
    }
}

/// What came back.
#[derive(Debug)]
struct Received {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The URL of the last response (after redirects).
    url: Url,
    /// The body was larger than the cap (it was not read).
    over_cap: Option<Failure>,
}

/// The error a redirect policy returns past its limit (found again in the error's sources).
#[derive(Debug)]
struct TooManyRedirects(u32);

impl std::fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} redirects (max_redirects)", self.0)
    }
}

impl std::error::Error for TooManyRedirects {}

/// rustls needs a process-wide crypto provider; claw uses ring's. Call before building any
/// reqwest client.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn build(step: &HttpStep, input: &StepInput) -> Result<Request, Failure> {
    let text = step.url.trim();
    let mut url =
        Url::parse(text).map_err(|e| Failure::for_good(format!("invalid URL `{text}`: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Failure::for_good(format!(
            "unsupported URL scheme `{}` (expected http or https)",
            url.scheme()
        )));
    }
    if !step.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &step.query {
            pairs.append_pair(k, v);
        }
    }
    let method = Method::from_bytes(step.method.as_bytes())
        .map_err(|_| Failure::for_good(format!("invalid HTTP method `{}`", step.method)))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &step.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Failure::for_good(format!("invalid header name `{name}`")))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            Failure::for_good(format!(
                "header `{name}`: its value holds line breaks or control characters"
            ))
        })?;
        // Kept out of any debug output of the client.
        value.set_sensitive(true);
        headers.append(name, value);
    }
    if !headers.contains_key("idempotency-key")
        && let Some((_, key)) = input.env.iter().find(|(k, _)| k == "CLAW_IDEMPOTENCY_KEY")
        && let Ok(value) = HeaderValue::from_str(&header_safe(key))
    {
        headers.insert(HeaderName::from_static("idempotency-key"), value);
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("claw/", env!("CARGO_PKG_VERSION"))),
        );
    }
    let body =
        match &step.body {
            None => None,
            Some(HttpBody::Text(t)) => Some(t.clone().into_bytes()),
            Some(HttpBody::Json(v)) => {
                if !headers.contains_key(header::CONTENT_TYPE) {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                Some(serde_json::to_vec(v).map_err(|e| {
                    Failure::for_good(format!("cannot encode the `json` body: {e}"))
                })?)
            }
        };
    install_crypto_provider();
    let max = step.max_redirects;
    let policy = if max == 0 {
        Policy::none()
    } else {
        Policy::custom(move |attempt| {
            if attempt.previous().len() > max as usize {
                attempt.error(TooManyRedirects(max))
            } else {
                attempt.follow()
            }
        })
    };
    let client = reqwest::Client::builder()
        .redirect(policy)
        .tls_danger_accept_invalid_certs(!step.tls_verify)
        .build()
        .map_err(|e| Failure::for_good(format!("cannot set up the HTTP client: {}", chain(&e))))?;
    Ok(Request {
        client,
        method,
        url,
        headers,
        body,
    })
}

/// Sends the request and reads the response, the body up to `cap` bytes.
async fn exchange(request: Request, cap: u64) -> Result<Received, Failure> {
    let shown = safe_url(&request.url);
    // A HEAD response announces the length of a body it does not send.
    let bodiless = request.method == Method::HEAD;
    let mut builder = request
        .client
        .request(request.method, request.url)
        .headers(request.headers);
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let mut response = builder.send().await.map_err(|e| classify(&e, &shown))?;
    let status = response.status();
    let headers = response.headers().clone();
    let url = response.url().clone();
    let over = |size: String| {
        Failure::for_good(format!(
            "the response body is {size}, over max_response_bytes ({cap} bytes)"
        ))
    };
    if bodiless {
        return Ok(Received {
            status,
            headers,
            body: Vec::new(),
            url,
            over_cap: None,
        });
    }
    if let Some(len) = response.content_length()
        && len > cap
    {
        return Ok(Received {
            status,
            headers,
            body: Vec::new(),
            url,
            over_cap: Some(over(format!("{len} bytes"))),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, &shown))? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Ok(Received {
                status,
                headers,
                body: Vec::new(),
                url,
                over_cap: Some(over(format!("more than {cap} bytes"))),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Received {
        status,
        headers,
        body,
        url,
        over_cap: None,
    })
}

/// Turns a transport error into a failure, deciding whether it is worth another attempt.
fn classify(e: &reqwest::Error, url: &str) -> Failure {
    let mut redirects = None;
    let mut tls = None;
    walk_sources(e, &mut |s| {
        if let Some(r) = s.downcast_ref::<TooManyRedirects>() {
            redirects = Some(r.0);
        }
        if let Some(t) = s.downcast_ref::<rustls::Error>() {
            tls = Some(t.to_string());
        }
    });
    if let Some(max) = redirects {
        return Failure::for_good(format!(
            "too many redirects: {url} redirected more than {max} times (max_redirects: {max})"
        ));
    }
    if let Some(why) = tls {
        let hint = if why.contains("certificate") {
            " (set `tls_verify: false` on the step to accept it anyway; not recommended)"
        } else {
            ""
        };
        return Failure::for_good(format!("TLS failure with {url}: {why}{hint}"));
    }
    let what = if e.is_connect() {
        "cannot connect to"
    } else if e.is_timeout() {
        "timed out talking to"
    } else {
        "request failed:"
    };
    Failure::retryable(format!("{what} {url}: {}", chain(e)))
}

/// Calls `f` with every error in the source chain, including errors wrapped in an `io::Error`
/// (whose `source()` skips the wrapped error itself).
fn walk_sources(
    e: &(dyn std::error::Error + 'static),
    f: &mut dyn FnMut(&(dyn std::error::Error + 'static)),
) {
    let mut current = Some(e);
    let mut depth = 0;
    while let Some(err) = current {
        f(err);
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            walk_sources(inner, f);
        }
        depth += 1;
        current = if depth < 16 { err.source() } else { None };
    }
}

/// The messages of an error's sources, without reqwest's own "error sending request for url
/// (…)" (the URL is named by the caller) and without repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    walk_sources(e, &mut |s| {
        let text = s.to_string();
        if text.starts_with("error sending request")
            || text.starts_with("error following redirect")
            || text.starts_with("builder error")
            || text.starts_with("client error")
        {
            return;
        }
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    });
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Checks a response against `expect`, computes the outputs.
fn check(step: &HttpStep, r: &Received, input: &StepInput) -> StepReport {
    let status = r.status.as_u16();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let json: Option<serde_json::Value> = if r.body.is_empty() {
        None
    } else {
        serde_json::from_slice(&r.body).ok()
    };
    let mut outputs = serde_json::Map::new();
    outputs.insert("status".into(), status.into());
    outputs.insert("headers".into(), headers_json(&r.headers));
    outputs.insert("body".into(), body.clone().into());
    if let Some(j) = &json {
        outputs.insert("json".into(), j.clone());
    }
    let transient = r.status.is_server_error() || r.status == StatusCode::TOO_MANY_REQUESTS;
    let mut failure = if let Some(f) = &r.over_cap {
        Some(Failure::for_good(f.reason.clone()))
    } else if !step.expect.status_ok(status) {
        let excerpt = excerpt(&body, FAILURE_EXCERPT);
        Some(Failure {
            reason: format!(
                "HTTP {status}{} from {} (expected {}){}",
                r.status
                    .canonical_reason()
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default(),
                safe_url(&r.url),
                step.expect.status_text(),
                if excerpt.is_empty() {
                    String::new()
                } else {
                    format!(": {excerpt}")
                }
            ),
            retryable: transient,
        })
    } else {
        None
    };
    if failure.is_none() {
        let problem = step
            .expect
            .body_contains
            .iter()
            .find(|s| !body.contains(s.as_str()))
            .map(|s| format!("the response body does not contain `{s}` (expect.body_contains)"))
            .or_else(|| match (&step.expect.json, &json) {
                (Some(_), None) => Some("the response is not JSON (expect.json)".to_owned()),
                (Some(want), Some(got)) if !json_contains(got, want) => Some(format!(
                    "the response JSON does not match expect.json (wanted {want})"
                )),
                _ => None,
            });
        failure = problem.map(|reason| Failure {
            reason,
            retryable: transient,
        });
    }
    if failure.is_none() {
        for (name, path) in &step.extract {
            let value = match &json {
                None => {
                    failure = Some(Failure {
                        reason: format!("extract `{name}`: the response is not JSON"),
                        retryable: transient,
                    });
                    break;
                }
                Some(doc) => path.lookup(doc),
            };
            match value {
                Some(v) => {
                    outputs.insert(name.clone(), v.clone());
                }
                None => {
                    failure = Some(Failure {
                        reason: format!(
                            "extract `{name}`: nothing at `{}` in the response JSON",
                            path.written
                        ),
                        retryable: transient,
                    });
                    break;
                }
            }
        }
    }
    let outputs = match input
        .redactor
        .redact_json(&serde_json::Value::Object(outputs))
    {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let mut report = StepReport {
        outcome: StepOutcome::Succeeded,
        exit_code: None,
        stdout: input.redactor.redact(&body).into_owned(),
        stderr_tail: String::new(),
        outputs,
        retryable: true,
        retry_after: None,
        note: None,
        finished_at: None,
    };
    if let Some(f) = failure {
        report.outcome = StepOutcome::Failed { reason: f.reason };
        report.retryable = f.retryable;
        if r.status == StatusCode::TOO_MANY_REQUESTS || r.status == StatusCode::SERVICE_UNAVAILABLE
        {
            report.retry_after = retry_after(&r.headers);
        }
    }
    report
}

/// `Retry-After` in its seconds form (the date form is not honoured).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Response headers as an object with lower-case names; repeated headers joined with `, `.
fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    serde_json::Value::Object(out)
}

/// The URL with any password replaced (the run's redactor masks secret values on top).
fn safe_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// A header value from any text: bytes outside visible ASCII are percent-encoded.
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// At most `max` bytes of `text`, cut at a character boundary, on one line.
fn excerpt(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = text[..end].replace(['\r', '\n'], " ");
    if end < text.len() {
        s.push('…');
    }
    s.trim().to_owned()
}

/// The step's log: a few lines per attempt, masked.
struct Log<'a> {
    input: &'a StepInput,
}

impl<'a> Log<'a> {
    fn new(input: &'a StepInput) -> Self {
        Self { input }
    }

    fn line(&mut self, text: &str) {
        let clean = self.input.redactor.redact(text);
        // The log is a convenience: a write error must not change the step's outcome.
        if let Ok(mut f) = crate::fsutil::open_append_private(&self.input.log_path) {
            let _ = writeln!(f, "{clean}");
        }
    }

    fn response(&mut self, r: &Received, requested: &Url, elapsed: Duration) {
        let content_type = r
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|t| format!(", {t}"))
            .unwrap_or_default();
        self.line(&format!(
            "< {} {} in {} ms, {} bytes{content_type}{}",
            r.status.as_u16(),
            r.status.canonical_reason().unwrap_or(""),
            elapsed.as_millis(),
            r.body.len(),
            if r.url == *requested {
                String::new()
            } else {
                format!(" (from {}, after redirects)", safe_url(&r.url))
            }
        ));
        let body = String::from_utf8_lossy(&r.body);
        if !body.is_empty() {
            self.line(&format!("< {}", excerpt(&body, EXCERPT)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_safe_encodes_what_headers_cannot_carry() {
        assert_eq!(header_safe("01J/step/1"), "01J/step/1");
        assert_eq!(header_safe("a b/é%"), "a%20b/%C3%A9%25");
    }

    #[test]
    fn passwords_leave_urls() {
        let u = Url::parse("https://user:hunter2@example.com/x?y=1").unwrap();
        assert_eq!(safe_url(&u), "https://user:***@example.com/x?y=1");
    }

    #[test]
    fn retry_after_seconds_only() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt("ééé", 3), "é…");
    }
}
