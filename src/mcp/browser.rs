//! The browser tools: `browse_page`, `browse_screenshot`, `browse_extract`,
//! `browse_extract_table`, `browse_run_js`, `browse_fill_and_submit` (the seed's names and
//! arguments) through claw's browser manager, as `claw browse` uses it (Chromium is started
//! lazily, one per profile, and closed when the server ends), and `list_browser_profiles`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{Answer, Server, arg_str};
use crate::browser::actions::{self, Action, Cx, Extract, Shot};
use crate::browser::{self, DEFAULT_PROFILE, DEFAULT_VIEWPORT, Settings, manager::Options};

/// How long one browser tool may take.
const LIMIT: Duration = Duration::from_secs(60);

/// How long a submit may take to lead to the next page (a form handled by script in the
/// same page is read after this).
const SUBMIT_WAIT: Duration = Duration::from_secs(5);

/// The most page text `browse_page` returns.
const PAGE_TEXT: usize = 5000;

fn profile(a: &Map<String, Value>) -> &str {
    match arg_str(a, "profile") {
        "" => DEFAULT_PROFILE,
        p => p,
    }
}

impl Server {
    /// Opens `url` in a tab of the profile's browser and runs `f` on it, within [`LIMIT`].
    async fn on_page<T, F>(&self, a: &Map<String, Value>, f: F) -> Result<T, String>
    where
        F: AsyncFnOnce(&chromiumoxide::Page, &Settings) -> Result<T, String>,
    {
        let url = arg_str(a, "url");
        let settings = Settings::load(&self.dirs.root).map_err(|e| e.render())?;
        settings.check_url(url)?;
        browser::check_profile_name(profile(a))?;
        browser::launch::find_chromium()?;
        let manager = browser::shared(&self.dirs.home);
        let options = Options {
            profile: profile(a).to_owned(),
            headed: false,
            viewport: DEFAULT_VIEWPORT,
        };
        browser::manager::on_page(&manager, &options, &settings, url, LIMIT, f).await
    }

    /// `browse_page(url, profile)`: the title, final URL and text of a page.
    pub(super) async fn browse_page(&self, a: &Map<String, Value>) -> Answer {
        let url = arg_str(a, "url");
        let (title, final_url, text) = self
            .on_page(a, async |page, _| {
                let title = page.get_title().await.ok().flatten().unwrap_or_default();
                let final_url = page.url().await.ok().flatten().unwrap_or_default();
                let text = actions::extract(page, "body", &Extract::Text, false).await?;
                Ok((
                    title,
                    final_url,
                    text.as_str().unwrap_or_default().to_owned(),
                ))
            })
            .await
            .map_err(|e| format!("Error browsing '{url}': {e}"))?;
        let shown: String = text.chars().take(PAGE_TEXT).collect();
        let more = if shown.len() < text.len() {
            "\n… (truncated)"
        } else {
            ""
        };
        Ok((
            format!("Title: {title}\nURL: {final_url}\n\n{shown}{more}"),
            json!({"url": final_url, "title": title, "text": shown}),
        ))
    }

    /// `browse_screenshot(url, selector, full_page, profile)`: a PNG of the page (or of one
    /// element) written under `<data>/browser/screenshots`; its path comes back.
    pub(super) async fn browse_screenshot(&self, a: &Map<String, Value>) -> Answer {
        let url = arg_str(a, "url");
        let selector = arg_str(a, "selector").to_owned();
        let full_page = a.get("full_page").and_then(Value::as_bool).unwrap_or(false);
        let fail = |e: String| format!("Error taking a screenshot of '{url}': {e}");
        let bytes = self
            .on_page(a, async move |page, _| {
                let shot = if selector.is_empty() {
                    if full_page {
                        Shot::FullPage
                    } else {
                        Shot::Page
                    }
                } else {
                    actions::wait_element(page, &selector, Instant::now() + actions::ELEMENT_WAIT)
                        .await?;
                    Shot::Element(selector)
                };
                actions::screenshot(page, &shot).await
            })
            .await
            .map_err(fail)?;
        let dir = self.dirs.home.join("browser").join("screenshots");
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let path = dir.join(format!("{stamp}-{}.png", std::process::id()));
        crate::fsutil::write_atomic(&path, ".claw-screenshot", &bytes)
            .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
        Ok((
            format!(
                "Screenshot saved: {} ({} bytes)",
                path.display(),
                bytes.len()
            ),
            json!({"path": path, "bytes": bytes.len()}),
        ))
    }

    /// `browse_extract(url, selector)`: the text of the first element matching the selector.
    pub(super) async fn browse_extract(&self, a: &Map<String, Value>) -> Answer {
        let url = arg_str(a, "url");
        let selector = match arg_str(a, "selector") {
            "" => "body",
            s => s,
        };
        let v = self
            .on_page(a, async |page, _| {
                actions::wait_element(page, selector, Instant::now() + actions::ELEMENT_WAIT)
                    .await?;
                actions::extract(page, selector, &Extract::Text, false).await
            })
            .await
            .map_err(|e| format!("Error extracting '{selector}' from '{url}': {e}"))?;
        let text = v.as_str().unwrap_or_default().to_owned();
        Ok((text.clone(), json!({"selector": selector, "text": text})))
    }

    /// `browse_extract_table(url, selector)`: an HTML table's rows (objects keyed by its
    /// header cells), as JSON text.
    pub(super) async fn browse_extract_table(&self, a: &Map<String, Value>) -> Answer {
        let url = arg_str(a, "url");
        let selector = match arg_str(a, "selector") {
            "" => "table",
            s => s,
        };
        let rows = self
            .on_page(a, async |page, _| {
                actions::wait_element(page, selector, Instant::now() + actions::ELEMENT_WAIT)
                    .await?;
                actions::table(page, selector).await
            })
            .await
            .map_err(|e| format!("Error extracting table '{selector}' from '{url}': {e}"))?;
        let n = rows.as_array().map_or(0, Vec::len);
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        Ok((
            format!("{n} row(s):\n{text}"),
            json!({"selector": selector, "rows": rows}),
        ))
    }

    /// `browse_run_js(url, script)`: the result of JavaScript run in the page, as JSON.
    pub(super) async fn browse_run_js(&self, a: &Map<String, Value>) -> Answer {
        let url = arg_str(a, "url");
        let script = arg_str(a, "script");
        if script.trim().is_empty() {
            return Err(format!(
                "Error running JavaScript on '{url}': the script is empty"
            ));
        }
        let v = self
            .on_page(a, async |page, _| actions::eval(page, script).await)
            .await
            .map_err(|e| format!("Error running JavaScript on '{url}': {e}"))?;
        Ok((v.to_string(), json!({"result": v})))
    }

    /// `browse_fill_and_submit(url, fields, submit_selector)`: fills the form fields (`fields`:
    /// a JSON object from CSS selector to value), clicks the submit element, and answers with
    /// the page it leads to. Audited as `browser.submit` by the client (values not recorded).
    pub(super) async fn browse_fill_and_submit(
        &self,
        a: &Map<String, Value>,
        actor: &str,
    ) -> Answer {
        let url = arg_str(a, "url");
        let fail = |e: String| format!("Error submitting the form on '{url}': {e}");
        let fields: Map<String, Value> =
            serde_json::from_str(arg_str(a, "fields")).map_err(|e| {
                fail(format!(
                    "`fields` must be a JSON object of selector to value: {e}"
                ))
            })?;
        let mut fill = Vec::new();
        for (sel, v) in &fields {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            fill.push(Action::Fill {
                selector: sel.clone(),
                value,
            });
        }
        let submit = arg_str(a, "submit_selector").to_owned();
        let artifacts = self.dirs.home.join("browser").join("screenshots");
        let outcome = self
            .on_page(a, async move |page, settings| {
                let mut cx = Cx {
                    page,
                    settings,
                    artifacts,
                    prefix: "mcp".into(),
                    deadline: Instant::now() + LIMIT,
                    outputs: Map::new(),
                    files: Vec::new(),
                };
                for f in &fill {
                    actions::perform(&mut cx, f).await?;
                }
                let submit = if submit.is_empty() {
                    "[type=submit], button:not([type])".to_owned()
                } else {
                    submit
                };
                // A mark on the old document: the submit has led somewhere once it is gone.
                actions::js(page, "window.__clawSubmitted = 1").await?;
                actions::perform(&mut cx, &Action::Click { selector: submit }).await?;
                let until = Instant::now() + SUBMIT_WAIT;
                while Instant::now() < until {
                    let fresh = actions::js(
                        page,
                        "window.__clawSubmitted === undefined && document.readyState === 'complete'",
                    )
                    .await;
                    if matches!(fresh, Ok(Value::Bool(true))) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Ok(Some(now)) = page.url().await {
                    settings
                        .check_url(&now)
                        .map_err(|e| format!("the form went somewhere refused: {e}"))?;
                }
                let title = page.get_title().await.ok().flatten().unwrap_or_default();
                let final_url = page.url().await.ok().flatten().unwrap_or_default();
                let text = actions::extract(page, "body", &Extract::Text, false).await?;
                Ok((
                    title,
                    final_url,
                    text.as_str().unwrap_or_default().to_owned(),
                ))
            })
            .await;
        let event = crate::audit::Event::new(
            actor,
            crate::audit::Action::BrowserSubmit,
            url,
            if outcome.is_ok() { "ok" } else { "failed" },
            json!({"fields": fields.keys().collect::<Vec<_>>()}),
        );
        if let Err(e) = crate::audit::AuditLog::in_dir(&self.dirs.home).record(&event) {
            tracing::warn!("mcp: browse_fill_and_submit not audited: {e}");
        }
        let (title, final_url, text) = outcome.map_err(fail)?;
        let shown: String = text.chars().take(PAGE_TEXT).collect();
        Ok((
            format!(
                "Submitted {} field(s).\nTitle: {title}\nURL: {final_url}\n\n{shown}",
                fields.len()
            ),
            json!({"url": final_url, "title": title, "text": shown, "fields": fields.len()}),
        ))
    }

    /// `list_browser_profiles()`: the persistent profiles under `<data>/browser/profiles`.
    pub(super) fn list_browser_profiles(&self) -> Answer {
        let list = browser::list_profiles(&self.dirs.home)
            .map_err(|e| format!("Error listing browser profiles: {e}"))?;
        let data = serde_json::to_value(&list).unwrap_or_default();
        if list.is_empty() {
            return Ok(("No browser profiles.".into(), json!({"profiles": data})));
        }
        let lines: Vec<String> = list
            .iter()
            .map(|p| {
                format!(
                    "  {} ({} KiB){}",
                    p.name,
                    p.size / 1024,
                    if p.in_use { " in use" } else { "" }
                )
            })
            .collect();
        Ok((
            format!("Browser profiles ({}):\n{}", list.len(), lines.join("\n")),
            json!({"profiles": data}),
        ))
    }
}
