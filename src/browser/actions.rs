//! The actions of a browser step and how each is performed on a tab.
//!
//! Element lookups go through `document.querySelector` inside the page, so an invalid selector
//! is reported as such (not as "not found"), and actions on an element wait for it to appear
//! (up to [`ELEMENT_WAIT`], or the step's deadline if sooner): content that JavaScript renders
//! late needs no explicit `wait_for`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
    PrintToPdfParams,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{Dialogs, Settings};

/// How long an action waits for its element to appear.
pub const ELEMENT_WAIT: Duration = Duration::from_secs(10);

/// One action, its values already rendered when it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Goto {
        url: String,
    },
    Click {
        selector: String,
    },
    Fill {
        selector: String,
        value: String,
    },
    Select {
        selector: String,
        value: String,
    },
    Press {
        key: String,
        selector: Option<String>,
    },
    WaitFor {
        until: Until,
        timeout: Option<Duration>,
    },
    Extract {
        selector: String,
        what: Extract,
        all: bool,
        output: String,
    },
    Table {
        selector: String,
        output: String,
    },
    Screenshot {
        shot: Shot,
        file: Option<String>,
        output: String,
    },
    Pdf {
        file: Option<String>,
        output: String,
    },
    Eval {
        script: String,
        output: String,
    },
    Cookies {
        output: String,
    },
}

/// What `wait_for` waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    Selector(String),
    Text(String),
    NetworkIdle,
}

/// What `extract` takes from an element.
#[derive(Debug, Clone, PartialEq)]
pub enum Extract {
    Text,
    Html,
    Attribute(String),
}

/// What `screenshot` takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Shot {
    Page,
    FullPage,
    Element(String),
}

/// Every action name, for "did you mean".
pub const NAMES: &[&str] = &[
    "goto",
    "click",
    "fill",
    "select",
    "press",
    "wait_for",
    "extract",
    "table",
    "screenshot",
    "pdf",
    "eval",
    "cookies",
];

impl Action {
    /// The action's name as written in a workflow.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Goto { .. } => "goto",
            Self::Click { .. } => "click",
            Self::Fill { .. } => "fill",
            Self::Select { .. } => "select",
            Self::Press { .. } => "press",
            Self::WaitFor { .. } => "wait_for",
            Self::Extract { .. } => "extract",
            Self::Table { .. } => "table",
            Self::Screenshot { .. } => "screenshot",
            Self::Pdf { .. } => "pdf",
            Self::Eval { .. } => "eval",
            Self::Cookies { .. } => "cookies",
        }
    }

    /// Every value that may hold `${{ }}` expressions, to render in place.
    pub fn values_mut(&mut self) -> Vec<&mut String> {
        match self {
            Self::Goto { url } => vec![url],
            Self::Click { selector } | Self::Table { selector, .. } => vec![selector],
            Self::Fill { selector, value } | Self::Select { selector, value } => {
                vec![selector, value]
            }
            Self::Press { key, selector } => {
                let mut v = vec![key];
                v.extend(selector.as_mut());
                v
            }
            Self::WaitFor { until, .. } => match until {
                Until::Selector(s) | Until::Text(s) => vec![s],
                Until::NetworkIdle => vec![],
            },
            Self::Extract { selector, what, .. } => {
                let mut v = vec![selector];
                if let Extract::Attribute(a) = what {
                    v.push(a);
                }
                v
            }
            Self::Screenshot { shot, file, .. } => {
                let mut v: Vec<&mut String> = file.as_mut().into_iter().collect();
                if let Shot::Element(s) = shot {
                    v.push(s);
                }
                v
            }
            Self::Pdf { file, .. } => file.as_mut().into_iter().collect(),
            Self::Eval { script, .. } => vec![script],
            Self::Cookies { .. } => vec![],
        }
    }

    /// The same, read-only.
    pub fn values(&self) -> Vec<&str> {
        match self {
            Self::Goto { url } => vec![url],
            Self::Click { selector } | Self::Table { selector, .. } => vec![selector],
            Self::Fill { selector, value } | Self::Select { selector, value } => {
                vec![selector, value]
            }
            Self::Press { key, selector } => {
                let mut v = vec![key.as_str()];
                v.extend(selector.as_deref());
                v
            }
            Self::WaitFor { until, .. } => match until {
                Until::Selector(s) | Until::Text(s) => vec![s],
                Until::NetworkIdle => vec![],
            },
            Self::Extract { selector, what, .. } => {
                let mut v = vec![selector.as_str()];
                if let Extract::Attribute(a) = what {
                    v.push(a);
                }
                v
            }
            Self::Screenshot { shot, file, .. } => {
                let mut v: Vec<&str> = file.as_deref().into_iter().collect();
                if let Shot::Element(s) = shot {
                    v.push(s);
                }
                v
            }
            Self::Pdf { file, .. } => file.as_deref().into_iter().collect(),
            Self::Eval { script, .. } => vec![script],
            Self::Cookies { .. } => vec![],
        }
    }

    /// A one-line description for the step's log (no values that could be secret: a `fill`
    /// shows its selector only).
    pub fn describe(&self) -> String {
        match self {
            Self::Goto { url } => format!("goto {url}"),
            Self::Click { selector } => format!("click {selector}"),
            Self::Fill { selector, .. } => format!("fill {selector}"),
            Self::Select { selector, value } => format!("select {selector} = {value}"),
            Self::Press { key, selector } => match selector {
                Some(s) => format!("press {key} on {s}"),
                None => format!("press {key}"),
            },
            Self::WaitFor { until, .. } => match until {
                Until::Selector(s) => format!("wait_for selector {s}"),
                Until::Text(t) => format!("wait_for text {t:?}"),
                Until::NetworkIdle => "wait_for network idle".to_owned(),
            },
            Self::Extract {
                selector, output, ..
            } => format!("extract {selector} -> {output}"),
            Self::Table { selector, output } => format!("table {selector} -> {output}"),
            Self::Screenshot { shot, .. } => match shot {
                Shot::Page => "screenshot".to_owned(),
                Shot::FullPage => "screenshot full page".to_owned(),
                Shot::Element(s) => format!("screenshot {s}"),
            },
            Self::Pdf { .. } => "pdf".to_owned(),
            Self::Eval { output, .. } => format!("eval -> {output}"),
            Self::Cookies { output } => format!("cookies -> {output}"),
        }
    }
}

/// What actions work with and produce.
#[derive(Debug)]
pub struct Cx<'a> {
    pub page: &'a Page,
    pub settings: &'a Settings,
    /// Where screenshots and PDFs are written.
    pub artifacts: PathBuf,
    /// The start of their file names (the step's name).
    pub prefix: String,
    /// When the step must be over.
    pub deadline: Instant,
    pub outputs: serde_json::Map<String, Value>,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Performs one action.
pub async fn perform(cx: &mut Cx<'_>, action: &Action) -> Result<(), String> {
    let page = cx.page;
    match action {
        Action::Goto { url } => goto(page, cx.settings, url).await,
        Action::Click { selector } => {
            wait_element(page, selector, cx.element_deadline()).await?;
            let el = page
                .find_element(selector.as_str())
                .await
                .map_err(|e| format!("cannot find `{selector}`: {e}"))?;
            el.click()
                .await
                .map_err(|e| format!("cannot click `{selector}`: {e}"))?;
            after_navigation(page, cx.settings).await
        }
        Action::Fill { selector, value } => {
            wait_element(page, selector, cx.element_deadline()).await?;
            call(page, FILL, json!([selector, value])).await.map(drop)
        }
        Action::Select { selector, value } => {
            wait_element(page, selector, cx.element_deadline()).await?;
            call(page, SELECT, json!([selector, value])).await.map(drop)
        }
        Action::Press { key, selector } => {
            let el = match selector {
                Some(s) => {
                    wait_element(page, s, cx.element_deadline()).await?;
                    page.find_element(s.as_str())
                        .await
                        .map_err(|e| format!("cannot find `{s}`: {e}"))?
                }
                None => match page.find_element(":focus").await {
                    Ok(el) => el,
                    Err(_) => page
                        .find_element("body")
                        .await
                        .map_err(|e| format!("cannot find the page's body: {e}"))?,
                },
            };
            el.press_key(key)
                .await
                .map_err(|e| format!("cannot press `{key}`: {e}"))?;
            after_navigation(page, cx.settings).await
        }
        Action::WaitFor { until, timeout } => {
            let deadline = match timeout {
                Some(t) => cx.deadline.min(Instant::now() + *t),
                None => cx.deadline,
            };
            wait_for(page, until, deadline).await
        }
        Action::Extract {
            selector,
            what,
            all,
            output,
        } => {
            wait_element(page, selector, cx.element_deadline()).await?;
            let v = extract(page, selector, what, *all).await?;
            cx.outputs.insert(output.clone(), v);
            Ok(())
        }
        Action::Table { selector, output } => {
            wait_element(page, selector, cx.element_deadline()).await?;
            let rows = table(page, selector).await?;
            cx.outputs.insert(output.clone(), rows);
            Ok(())
        }
        Action::Screenshot { shot, file, output } => {
            if let Shot::Element(s) = shot {
                wait_element(page, s, cx.element_deadline()).await?;
            }
            let bytes = screenshot(page, shot).await?;
            let path = cx.artifact(file.as_deref(), "png")?;
            cx.write(&path, &bytes)?;
            cx.outputs
                .insert(output.clone(), path.display().to_string().into());
            Ok(())
        }
        Action::Pdf { file, output } => {
            let bytes = page
                .pdf(PrintToPdfParams::default())
                .await
                .map_err(|e| format!("cannot print to PDF (headless only): {e}"))?;
            let path = cx.artifact(file.as_deref(), "pdf")?;
            cx.write(&path, &bytes)?;
            cx.outputs
                .insert(output.clone(), path.display().to_string().into());
            Ok(())
        }
        Action::Eval { script, output } => {
            let v = eval(page, script).await?;
            cx.outputs.insert(output.clone(), v);
            Ok(())
        }
        Action::Cookies { output } => {
            let cookies = page
                .get_cookies()
                .await
                .map_err(|e| format!("cannot read cookies: {e}"))?;
            let v = serde_json::to_value(&cookies).unwrap_or(Value::Null);
            cx.outputs.insert(output.clone(), v);
            Ok(())
        }
    }
}

impl Cx<'_> {
    fn element_deadline(&self) -> Instant {
        self.deadline.min(Instant::now() + ELEMENT_WAIT)
    }

    /// The file of an artifact: `file` (a plain name) or `<prefix>-<n>.<ext>`, in the
    /// artifacts folder.
    fn artifact(&self, file: Option<&str>, ext: &str) -> Result<PathBuf, String> {
        let name = match file {
            Some(f) => {
                let ok = !f.is_empty()
                    && !f.starts_with('.')
                    && f.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(format!(
                        "invalid file name `{f}`: a plain name of letters, digits, `-`, `_` and `.` (it is kept in the run's artifacts)"
                    ));
                }
                f.to_owned()
            }
            None => {
                let safe: String = self
                    .prefix
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                format!("{safe}-{}.{ext}", self.files.len() + 1)
            }
        };
        Ok(self.artifacts.join(name))
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        crate::fsutil::create_dirs_private(&self.artifacts)
            .map_err(|e| format!("cannot create {}: {e}", self.artifacts.display()))?;
        crate::fsutil::write_atomic(path, ".claw-artifact", bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.files.push(path.to_path_buf());
        Ok(())
    }
}

/// Loads `url` after checking it against the settings, and checks where the page ended up.
pub async fn goto(page: &Page, settings: &Settings, url: &str) -> Result<(), String> {
    settings.check_url(url)?;
    page.goto(url)
        .await
        .map_err(|e| format!("cannot load {url}: {e}"))?;
    after_navigation(page, settings).await
}

/// Refuses a page that a redirect, a link or a script took somewhere the settings refuse.
async fn after_navigation(page: &Page, settings: &Settings) -> Result<(), String> {
    if let Ok(Some(now)) = page.url().await
        && let Err(e) = settings.check_url(&now)
    {
        let _ = page.goto("about:blank").await;
        return Err(format!("the page went somewhere refused: {e}"));
    }
    Ok(())
}

/// Evaluates `expression` in the page (promises awaited), returning its JSON value; an
/// exception is an error with the exception's message.
pub async fn js(page: &Page, expression: &str) -> Result<Value, String> {
    let params = EvaluateParams::builder()
        .expression(expression)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .map_err(|e| format!("cannot build the evaluation: {e}"))?;
    let r = page
        .execute(params)
        .await
        .map_err(|e| format!("the page did not evaluate the script: {e}"))?;
    if let Some(ex) = &r.result.exception_details {
        let text = ex
            .exception
            .as_ref()
            .and_then(|o| o.description.clone())
            .unwrap_or_else(|| ex.text.clone());
        let first = text.lines().next().unwrap_or_default();
        return Err(first
            .strip_prefix("Error: ")
            .or_else(|| first.strip_prefix("Uncaught "))
            .unwrap_or(first)
            .to_owned());
    }
    Ok(r.result.result.value.clone().unwrap_or(Value::Null))
}

/// Helpers every element script starts with.
const PRELUDE: &str = r"
const q = (s) => { try { return document.querySelector(s); } catch (e) { throw new Error('invalid selector `' + s + '`: ' + e.message.replace(/^.*?: /, '')); } };
const qa = (s) => { try { return Array.from(document.querySelectorAll(s)); } catch (e) { throw new Error('invalid selector `' + s + '`: ' + e.message.replace(/^.*?: /, '')); } };
const need = (s) => { const el = q(s); if (!el) throw new Error('no element matches `' + s + '`'); return el; };
";

/// Calls `body` (a function body over `a`, the arguments) in the page.
async fn call(page: &Page, body: &str, args: Value) -> Result<Value, String> {
    js(page, &format!("((a) => {{ {PRELUDE} {body} }})({args})")).await
}

const FILL: &str = r"
const el = need(a[0]);
el.focus();
const proto = Object.getPrototypeOf(el);
const desc = Object.getOwnPropertyDescriptor(proto, 'value');
if (desc && desc.set) { desc.set.call(el, a[1]); } else if ('value' in el) { el.value = a[1]; } else { el.textContent = a[1]; }
el.dispatchEvent(new Event('input', { bubbles: true }));
el.dispatchEvent(new Event('change', { bubbles: true }));
return true;
";

const SELECT: &str = r"
const el = need(a[0]);
if (el.tagName !== 'SELECT') throw new Error('`' + a[0] + '` is not a <select>');
const opt = Array.from(el.options).find(o => o.value === a[1]) || Array.from(el.options).find(o => o.text.trim() === a[1]);
if (!opt) throw new Error('`' + a[0] + '` has no option `' + a[1] + '`');
el.value = opt.value;
el.dispatchEvent(new Event('input', { bubbles: true }));
el.dispatchEvent(new Event('change', { bubbles: true }));
return opt.value;
";

const EXTRACT: &str = r"
const take = (el) => a[1] === 'text' ? el.innerText : a[1] === 'html' ? el.outerHTML : el.getAttribute(a[2]);
if (a[3]) return qa(a[0]).map(take);
return take(need(a[0]));
";

const TABLE: &str = r"
let t = need(a[0]);
if (t.tagName !== 'TABLE') t = t.querySelector('table') || t;
if (!t.rows) throw new Error('`' + a[0] + '` is not a table');
const rows = Array.from(t.rows);
const text = (c) => c.innerText.trim();
let head = null;
if (t.tHead && t.tHead.rows.length) head = t.tHead.rows[t.tHead.rows.length - 1];
else if (rows.length && Array.from(rows[0].cells).every(c => c.tagName === 'TH')) head = rows[0];
const body = rows.filter(r => r !== head && !(t.tHead && t.tHead.contains(r)));
if (!head) return body.map(r => Array.from(r.cells).map(text));
const names = Array.from(head.cells).map((c, i) => text(c) || ('col' + (i + 1)));
return body.map(r => { const o = {}; Array.from(r.cells).forEach((c, i) => { o[names[i] || ('col' + (i + 1))] = text(c); }); return o; });
";

/// Waits for an element matching `selector` (an invalid selector fails at once).
pub async fn wait_element(page: &Page, selector: &str, deadline: Instant) -> Result<(), String> {
    let mut last = String::new();
    loop {
        match call(page, "return !!q(a);", json!(selector)).await {
            Ok(Value::Bool(true)) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.starts_with("invalid selector") => return Err(e),
            // Between two pages (a navigation) the context is gone for a moment.
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            let mut msg = format!("no element matches `{selector}`");
            if !last.is_empty() {
                msg.push_str(&format!(" (last error: {last})"));
            }
            return Err(msg);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(page: &Page, until: &Until, deadline: Instant) -> Result<(), String> {
    match until {
        Until::Selector(s) => wait_element(page, s, deadline).await,
        Until::Text(t) => loop {
            let found = call(
                page,
                "return !!document.body && document.body.innerText.includes(a);",
                json!(t),
            )
            .await;
            if matches!(found, Ok(Value::Bool(true))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("the text {t:?} did not appear"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        },
        Until::NetworkIdle => {
            // Idle: the document loaded and no new resource for 500 ms.
            let mut last: Option<(i64, Instant)> = None;
            loop {
                let state = js(
                    page,
                    "[document.readyState, performance.getEntriesByType('resource').length]",
                )
                .await;
                if let Ok(Value::Array(v)) = state
                    && v.first().and_then(Value::as_str) == Some("complete")
                {
                    let n = v.get(1).and_then(Value::as_i64).unwrap_or(0);
                    match last {
                        Some((m, since)) if m == n => {
                            if since.elapsed() >= Duration::from_millis(500) {
                                return Ok(());
                            }
                        }
                        _ => last = Some((n, Instant::now())),
                    }
                } else {
                    last = None;
                }
                if Instant::now() >= deadline {
                    return Err("the network did not become idle".to_owned());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The text, HTML or an attribute of the first element matching `selector` (of every one with
/// `all`).
pub async fn extract(
    page: &Page,
    selector: &str,
    what: &Extract,
    all: bool,
) -> Result<Value, String> {
    let (kind, attr) = match what {
        Extract::Text => ("text", ""),
        Extract::Html => ("html", ""),
        Extract::Attribute(a) => ("attr", a.as_str()),
    };
    call(page, EXTRACT, json!([selector, kind, attr, all])).await
}

/// An HTML table as JSON rows: objects keyed by the header cells, or arrays without a header.
pub async fn table(page: &Page, selector: &str) -> Result<Value, String> {
    call(page, TABLE, json!([selector])).await
}

/// A PNG of the viewport, the full page or one element.
pub async fn screenshot(page: &Page, shot: &Shot) -> Result<Vec<u8>, String> {
    match shot {
        Shot::Element(s) => {
            let el = page
                .find_element(s.as_str())
                .await
                .map_err(|e| format!("cannot find `{s}`: {e}"))?;
            el.screenshot(CaptureScreenshotFormat::Png)
                .await
                .map_err(|e| format!("cannot take a screenshot of `{s}`: {e}"))
        }
        Shot::Page | Shot::FullPage => page
            .screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .full_page(matches!(shot, Shot::FullPage))
                    .build(),
            )
            .await
            .map_err(|e| format!("cannot take a screenshot: {e}")),
    }
}

/// Runs a script (an expression, or a function that is called) and returns its JSON result.
pub async fn eval(page: &Page, script: &str) -> Result<Value, String> {
    let s = script.trim();
    let is_function = s.starts_with("function")
        || s.starts_with("async ")
        || (s.starts_with('(') && s.contains("=>"))
        || s.split_once("=>").is_some_and(|(head, _)| {
            head.trim()
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        });
    let expr = if is_function {
        format!("({s})()")
    } else {
        s.to_owned()
    };
    js(page, &expr)
        .await
        .map_err(|e| format!("the script failed: {e}"))
}

/// Answers the page's dialogs as the settings say, and returns what they said (for the step's
/// log and outputs). Must be called before the page loads anything.
pub async fn answer_dialogs(page: &Page, how: Dialogs) -> Result<Arc<Mutex<Vec<Value>>>, String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut events = page
        .event_listener::<EventJavascriptDialogOpening>()
        .await
        .map_err(|e| format!("cannot watch the page's dialogs: {e}"))?;
    let page = page.clone();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            let accept = how == Dialogs::Accept;
            if let Ok(mut l) = log.lock() {
                l.push(json!({
                    "type": format!("{:?}", ev.r#type).to_lowercase(),
                    "message": ev.message.clone(),
                    "accepted": accept,
                }));
            }
            let _ = page
                .execute(HandleJavaScriptDialogParams::new(accept))
                .await;
        }
    });
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_fields() {
        let mut a = Action::Fill {
            selector: "#u".into(),
            value: "${{ secrets.P }}".into(),
        };
        assert_eq!(a.values(), ["#u", "${{ secrets.P }}"]);
        for v in a.values_mut() {
            *v = v.to_uppercase();
        }
        assert_eq!(a.values(), ["#U", "${{ SECRETS.P }}"]);
        assert_eq!(a.describe(), "fill #U", "a fill's value is never described");
    }
}
