//! The `browser` step: actions in a tab of headless Chromium ([`crate::browser`]).
//!
//! ```yaml
//! - name: login
//!   type: browser
//!   url: https://example.com/login       # loaded first (optional)
//!   profile: work                        # <data>/browser/profiles/work (default `default`)
//!   viewport: 1280x720
//!   timeout: 60s                         # the whole step; the tab is closed when it passes
//!   actions:
//!     - fill: {selector: "#user", value: "${{ params.user }}"}
//!     - fill: {selector: "#pass", value: "${{ secrets.SITE_PASS }}"}
//!     - click: "#login"
//!     - wait_for: {text: Welcome}
//!     - extract: {selector: h1, as: greeting}
//!     - screenshot: {full_page: true}
//! ```
//!
//! Outputs: each action's `as` (default: the action's name), `url` and `title` of the page at
//! the end, `artifacts` (screenshots and PDFs, under the run's log folder) and `dialogs`.
//! Secrets may appear only in `fill` values; everything written is masked. Idempotent by
//! default (DESIGN §4).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::Value as Json;

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport};
use crate::browser::actions::{self, Action, Extract, Shot, Until};
use crate::browser::{self, DEFAULT_PROFILE, DEFAULT_VIEWPORT, manager::Options};
use crate::config::Dirs;
use crate::diagnostic::did_you_mean;
use crate::time::duration;
use crate::yaml::{Node, Value};

#[derive(Debug, Clone)]
pub struct BrowserStep {
    /// Loaded before the actions, when given.
    pub url: Option<String>,
    pub profile: String,
    pub viewport: (u32, u32),
    pub actions: Vec<Action>,
    /// The data directory and the settings, set when the attempt is prepared.
    pub home: PathBuf,
    pub settings: browser::Settings,
}

impl Kind for BrowserStep {
    const NAMES: &'static [&'static str] = &["browser"];
    const KEYS: &'static [&'static str] = &["url", "profile", "viewport", "actions"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let mut step = Self {
            url: None,
            profile: DEFAULT_PROFILE.to_owned(),
            viewport: DEFAULT_VIEWPORT,
            actions: Vec::new(),
            home: PathBuf::new(),
            settings: browser::Settings::default(),
        };
        // The seed's `command:` is the URL.
        if let Some(v) = node.get("url").or_else(|| node.get("command")) {
            step.url = checked(cx, v, "url", false);
        }
        if let Some(v) = node.get("profile")
            && let Some(p) = cx.r.string(v, "profile")
        {
            if let Err(e) = browser::check_profile_name(&p) {
                cx.err(v.pos, e);
            }
            step.profile = p;
        }
        if let Some(v) = node.get("viewport") {
            match parse_viewport(v) {
                Ok(vp) => step.viewport = vp,
                Err(e) => cx.err(v.pos, e),
            }
        }
        if let Some(v) = node.get("actions") {
            match &v.value {
                Value::Seq(items) => {
                    for item in items {
                        if let Some(a) = load_action(cx, item) {
                            step.actions.push(a);
                        }
                    }
                }
                _ => cx.err(
                    v.pos,
                    format!("`actions` must be a list, found {}", v.kind()),
                ),
            }
        }
        if step.url.is_none() && step.actions.is_empty() {
            let name = cx.step.to_owned();
            cx.err(
                node.pos,
                format!("browser step `{name}` has no `url` and no `actions`"),
            );
            return None;
        }
        Some(step)
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let first = self.url.clone().or_else(|| {
            self.actions.iter().find_map(|a| match a {
                Action::Goto { url } => Some(url.clone()),
                _ => None,
            })
        });
        let names: Vec<&str> = self.actions.iter().map(Action::name).collect();
        match first {
            Some(u) => format!("browse {u} ({})", names.join(", ")),
            None => format!("browse ({})", names.join(", ")),
        }
    }

    fn templates(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.url.as_deref().into_iter().collect();
        for a in &self.actions {
            v.extend(a.values());
        }
        v
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let settings = browser::Settings::load(&cx.dirs.root).map_err(|e| e.render())?;
        let url = self.url.as_deref().map(|u| cx.plain(u)).transpose()?;
        let mut actions = self.actions.clone();
        for a in &mut actions {
            for v in a.values_mut() {
                *v = cx.plain(v)?;
            }
        }
        Ok(Self {
            url,
            profile: self.profile.clone(),
            viewport: self.viewport,
            actions,
            home: cx.dirs.home.clone(),
            settings,
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let mut log = String::new();
        let started = Instant::now();
        let deadline = started + input.timeout;
        let artifacts = input
            .log_path
            .parent()
            .map(browser::artifacts_dir)
            .unwrap_or_default();
        let manager = browser::shared(&self.home);
        let opts = Options {
            profile: self.profile.clone(),
            headed: false,
            viewport: self.viewport,
        };
        let opened = tokio::select! {
            r = manager.open_tab(&opts, &self.settings) => r,
            () = rt.cancel.cancelled() => return finish(input, log, End::Cancelled, Default::default()),
            () = tokio::time::sleep_until(deadline.into()) => {
                let why = format!("timed out after {} waiting for a browser tab", duration::format(input.timeout));
                return finish(input, log, End::Failed(why, true), Default::default());
            }
        };
        let tab = match opened {
            Ok(t) => t,
            Err(e) => {
                let again = !e.starts_with("Chromium not found") && !e.starts_with("CHROME_PATH");
                return finish(input, log, End::Failed(e, again), Default::default());
            }
        };
        let _ = writeln!(
            log,
            "profile {} (its browser started in {} ms)",
            self.profile,
            tab.instance.started_in.as_millis()
        );
        let dialogs = match actions::answer_dialogs(&tab.page, self.settings.dialogs).await {
            Ok(d) => Some(d),
            Err(e) => {
                let _ = writeln!(log, "! {e}");
                None
            }
        };
        if let Err(e) = tab.allow_downloads(Some(&artifacts)).await {
            let _ = writeln!(log, "! {e}");
        }
        let mut list: Vec<Action> = Vec::new();
        if let Some(u) = &self.url {
            list.push(Action::Goto { url: u.clone() });
        }
        list.extend(self.actions.iter().cloned());
        let mut cx = actions::Cx {
            page: &tab.page,
            settings: &self.settings,
            artifacts,
            prefix: input.step.clone(),
            deadline,
            outputs: serde_json::Map::new(),
            files: Vec::new(),
        };
        let current = AtomicUsize::new(0);
        let mut lines: Vec<String> = Vec::new();
        let end = {
            let work = async {
                for (i, a) in list.iter().enumerate() {
                    current.store(i, Ordering::Relaxed);
                    let t = Instant::now();
                    actions::perform(&mut cx, a)
                        .await
                        .map_err(|e| format!("action {} ({}): {e}", i + 1, a.describe()))?;
                    lines.push(format!("{} ({} ms)", a.describe(), t.elapsed().as_millis()));
                }
                Ok::<(), String>(())
            };
            tokio::select! {
                r = work => match r {
                    Ok(()) => End::Done,
                    Err(e) => End::Failed(e, true),
                },
                () = rt.cancel.cancelled() => End::Cancelled,
                () = tokio::time::sleep_until(deadline.into()) => {
                    let i = current.load(Ordering::Relaxed);
                    let what = list.get(i).map(Action::describe).unwrap_or_default();
                    End::Failed(format!(
                        "timed out after {} during action {} ({what}); the tab was closed",
                        duration::format(input.timeout),
                        i + 1
                    ), true)
                }
                () = tab.instance.died.cancelled() => End::Failed(String::new(), true),
            }
        };
        for l in &lines {
            let _ = writeln!(log, "{l}");
        }
        let mut outputs = std::mem::take(&mut cx.outputs);
        let files = std::mem::take(&mut cx.files);
        drop(cx);
        let end = match (end, tab.crashed()) {
            (End::Cancelled, _) => End::Cancelled,
            (e, Some(why)) => {
                let i = current.load(Ordering::Relaxed);
                let what = list.get(i).map(Action::describe).unwrap_or_default();
                let detail = match e {
                    End::Failed(m, _) if !m.is_empty() => format!(" ({m})"),
                    _ => String::new(),
                };
                End::Failed(
                    format!(
                        "the browser crashed or was killed during action {} ({what}): {why}{detail}; the next step starts a fresh one",
                        i + 1
                    ),
                    true,
                )
            }
            (e, None) => e,
        };
        if matches!(end, End::Done) {
            if let Ok(Some(u)) = tab.page.url().await {
                outputs.insert("url".into(), u.into());
            }
            if let Ok(Some(t)) = tab.page.get_title().await {
                outputs.insert("title".into(), t.into());
            }
        }
        if let Some(d) = dialogs.and_then(|d| d.lock().ok().map(|d| d.clone()))
            && !d.is_empty()
        {
            for x in &d {
                let _ = writeln!(log, "dialog: {x}");
            }
            outputs.insert("dialogs".into(), Json::Array(d));
        }
        if !files.is_empty() {
            for f in &files {
                let _ = writeln!(log, "artifact: {}", f.display());
            }
            outputs.insert(
                "artifacts".into(),
                files.iter().map(|f| f.display().to_string()).collect(),
            );
        }
        if tab.instance.gone().is_none() {
            tab.close().await;
        }
        finish(input, log, end, outputs)
    }

    fn environment_problems(&self, _dirs: &Dirs) -> Vec<String> {
        match browser::launch::find_chromium() {
            Ok(_) => Vec::new(),
            Err(e) => vec![e],
        }
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("url", self.url.clone().into()),
            ("profile", self.profile.clone().into()),
            (
                "actions",
                self.actions.iter().map(|a| Json::from(a.name())).collect(),
            ),
        ]
    }
}

enum End {
    Done,
    /// Why, and whether another attempt could go differently.
    Failed(String, bool),
    Cancelled,
}

fn finish(
    input: &StepInput,
    mut log: String,
    end: End,
    outputs: serde_json::Map<String, Json>,
) -> StepReport {
    let red = &input.redactor;
    match &end {
        End::Failed(why, _) => {
            let _ = writeln!(log, "! {why}");
        }
        End::Cancelled => log.push_str("! cancelled\n"),
        End::Done => {}
    }
    let log = red.redact(&log).into_owned();
    if let Some(dir) = input.log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&input.log_path, &log);
    let outputs = match red.redact_json(&Json::Object(outputs)) {
        Json::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let mut report = match end {
        End::Done => StepReport::succeeded(),
        End::Cancelled => StepReport::cancelled(),
        End::Failed(why, true) => StepReport::failed(red.redact(&why).into_owned()),
        End::Failed(why, false) => StepReport::failed_for_good(red.redact(&why).into_owned()),
    };
    report.stdout = log;
    report.outputs = outputs;
    report
}

/// `1280x720` or `{width: 1280, height: 720}`.
fn parse_viewport(node: &Node) -> Result<(u32, u32), String> {
    let bad = || {
        format!(
            "`viewport` must be WIDTHxHEIGHT (like 1280x720) or {{width, height}}, found {}",
            node.scalar_text().unwrap_or_else(|| node.kind().to_owned())
        )
    };
    let (w, h) = match &node.value {
        Value::Str(s) => {
            let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
            (
                w.trim().parse::<u32>().map_err(|_| bad())?,
                h.trim().parse::<u32>().map_err(|_| bad())?,
            )
        }
        Value::Map(_) => {
            let num = |k: &str| match node.get(k).map(|n| &n.value) {
                Some(Value::Int(i)) => u32::try_from(*i).ok(),
                _ => None,
            };
            (
                num("width").ok_or_else(bad)?,
                num("height").ok_or_else(bad)?,
            )
        }
        _ => return Err(bad()),
    };
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(format!(
            "`viewport` {w}x{h} is out of range (16 to 8192 pixels each way)"
        ));
    }
    Ok((w, h))
}

/// A string value of an action, its expressions checked; secrets only where `secret_ok`.
fn checked(cx: &mut LoadCx<'_>, node: &Node, field: &str, secret_ok: bool) -> Option<String> {
    let text = cx.template_string(node, field)?;
    if !secret_ok && text.contains("${{") && text.contains("secrets.") {
        cx.err(
            node.pos,
            format!(
                "`{field}` uses a secret: secrets may appear only in `fill` values (elsewhere they could end up in a URL, the page or a log)"
            ),
        );
    }
    Some(text)
}

/// The single `name: value` entry of an action.
fn load_action(cx: &mut LoadCx<'_>, item: &Node) -> Option<Action> {
    let Value::Map(entries) = &item.value else {
        cx.err(
            item.pos,
            format!(
                "an action must be a mapping like `- click: \"#submit\"`, found {}",
                item.kind()
            ),
        );
        return None;
    };
    let [(key, v)] = entries.as_slice() else {
        cx.err(
            item.pos,
            "an action has exactly one key: its name (goto, click, fill, ...)",
        );
        return None;
    };
    let Some(name) = key.as_str() else {
        cx.err(key.pos, "an action's name must be a string");
        return None;
    };
    if !actions::NAMES.contains(&name) {
        cx.r.err_help(
            key.pos,
            format!(
                "unknown browser action `{name}` (expected one of: {})",
                actions::NAMES.join(", ")
            ),
            did_you_mean(name, actions::NAMES.iter().copied()),
        );
        return None;
    }
    let what = format!("`{name}`");
    // Short forms: a scalar is the action's main value.
    let scalar = !matches!(v.value, Value::Map(_) | Value::Null);
    let fields: Vec<(&str, &Node)> = if matches!(v.value, Value::Map(_)) {
        cx.r.entries(v, keys_of(name), &what)
    } else {
        Vec::new()
    };
    let get = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, n)| *n);
    let text = |cx: &mut LoadCx<'_>, k: &str, secret_ok: bool| -> Option<String> {
        if scalar {
            return None;
        }
        get(k).and_then(|n| checked(cx, n, k, secret_ok))
    };
    let main = |cx: &mut LoadCx<'_>, k: &str| -> Option<String> {
        if scalar {
            checked(cx, v, k, false)
        } else {
            None
        }
    };
    let output = |cx: &mut LoadCx<'_>| -> String {
        get("as")
            .and_then(|n| cx.r.string(n, "as"))
            .unwrap_or_else(|| name.to_owned())
    };
    let required = |cx: &mut LoadCx<'_>, val: Option<String>, k: &str| -> Option<String> {
        if val.is_none() {
            cx.err(v.pos, format!("{what} needs `{k}`"));
        }
        val
    };
    let flag = |cx: &mut LoadCx<'_>, k: &str| -> bool {
        get(k).and_then(|n| cx.r.boolean(n, k)).unwrap_or(false)
    };
    let action = match name {
        "goto" => {
            let url = main(cx, "url").or_else(|| text(cx, "url", false));
            Action::Goto {
                url: required(cx, url, "url")?,
            }
        }
        "click" => {
            let s = main(cx, "selector").or_else(|| text(cx, "selector", false));
            Action::Click {
                selector: required(cx, s, "selector")?,
            }
        }
        "fill" | "select" => {
            if scalar {
                cx.err(
                    v.pos,
                    format!("{what} needs a mapping: {{selector, value}}"),
                );
                return None;
            }
            let s = text(cx, "selector", false);
            let val = text(cx, "value", name == "fill");
            let selector = required(cx, s, "selector")?;
            let value = required(cx, val, "value")?;
            if name == "fill" {
                Action::Fill { selector, value }
            } else {
                Action::Select { selector, value }
            }
        }
        "press" => {
            let key = main(cx, "key").or_else(|| text(cx, "key", false));
            Action::Press {
                key: required(cx, key, "key")?,
                selector: text(cx, "selector", false),
            }
        }
        "wait_for" => {
            let until = if scalar {
                Until::Selector(main(cx, "selector")?)
            } else if let Some(s) = text(cx, "selector", false) {
                Until::Selector(s)
            } else if let Some(t) = text(cx, "text", false) {
                Until::Text(t)
            } else if flag(cx, "network_idle") {
                Until::NetworkIdle
            } else {
                cx.err(
                    v.pos,
                    "`wait_for` needs `selector`, `text` or `network_idle: true`",
                );
                return None;
            };
            let timeout = get("timeout").and_then(|n| cx.r.duration(n, "timeout"));
            Action::WaitFor { until, timeout }
        }
        "extract" => {
            let selector = main(cx, "selector")
                .or_else(|| text(cx, "selector", false))
                .unwrap_or_else(|| "body".to_owned());
            let what = if let Some(a) = text(cx, "attr", false) {
                Extract::Attribute(a)
            } else if flag(cx, "html") {
                Extract::Html
            } else {
                Extract::Text
            };
            Action::Extract {
                selector,
                what,
                all: flag(cx, "all"),
                output: output(cx),
            }
        }
        "table" => Action::Table {
            selector: main(cx, "selector")
                .or_else(|| text(cx, "selector", false))
                .unwrap_or_else(|| "table".to_owned()),
            output: output(cx),
        },
        "screenshot" => {
            let shot = if scalar {
                Shot::Element(main(cx, "selector")?)
            } else if let Some(s) = text(cx, "selector", false) {
                Shot::Element(s)
            } else if flag(cx, "full_page") {
                Shot::FullPage
            } else {
                Shot::Page
            };
            Action::Screenshot {
                shot,
                file: text(cx, "file", false),
                output: output(cx),
            }
        }
        "pdf" => Action::Pdf {
            file: text(cx, "file", false),
            output: output(cx),
        },
        "eval" => {
            let s = main(cx, "script").or_else(|| text(cx, "script", false));
            Action::Eval {
                script: required(cx, s, "script")?,
                output: output(cx),
            }
        }
        _ => Action::Cookies { output: output(cx) },
    };
    Some(action)
}

/// The keys of each action's mapping form.
fn keys_of(name: &str) -> &'static [&'static str] {
    match name {
        "goto" => &["url"],
        "click" => &["selector"],
        "fill" | "select" => &["selector", "value"],
        "press" => &["key", "selector"],
        "wait_for" => &["selector", "text", "network_idle", "timeout"],
        "extract" => &["selector", "attr", "html", "all", "as"],
        "table" => &["selector", "as"],
        "screenshot" => &["selector", "full_page", "file", "as"],
        "pdf" => &["file", "as"],
        "eval" => &["script", "as"],
        _ => &["as"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewports_parse() {
        let n = crate::yaml::node::parse(
            "a: 800x600\nb: {width: 640, height: 480}\nc: 10x10\nd: wide\n",
        )
        .unwrap();
        assert_eq!(parse_viewport(n.get("a").unwrap()), Ok((800, 600)));
        assert_eq!(parse_viewport(n.get("b").unwrap()), Ok((640, 480)));
        assert!(
            parse_viewport(n.get("c").unwrap())
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_viewport(n.get("d").unwrap()).is_err());
    }
}
