//! `claw bench browser`: a cold start to the first page, then `goto`+`extract` on a local page
//! as a step does it (a tab opened, dialogs and downloads set up, the URL checked, the element
//! waited for, the tab closed) against the same page loads made directly with chromiumoxide on
//! the same browser, interleaved, medians compared; and claw's own peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::actions::{self, Action, Extract};
use super::manager::Options;
use super::{DEFAULT_VIEWPORT, Settings};

const PAGE: &str = "<html><head><title>bench</title></head><body><h1>hello from the bench</h1><p>some text</p></body></html>";

/// What was measured.
#[derive(Debug)]
pub struct Report {
    pub cold_start: Duration,
    pub rounds: usize,
    pub claw_median: Duration,
    pub direct_median: Duration,
    /// claw's resident set high-water mark (this process only), in KiB.
    pub peak_rss_kib: u64,
}

impl Report {
    pub fn ratio(&self) -> f64 {
        self.claw_median.as_secs_f64() / self.direct_median.as_secs_f64().max(1e-9)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "cold_start_ms": self.cold_start.as_secs_f64() * 1000.0,
            "rounds": self.rounds,
            "claw_step_ms": self.claw_median.as_secs_f64() * 1000.0,
            "direct_chromiumoxide_ms": self.direct_median.as_secs_f64() * 1000.0,
            "ratio": self.ratio(),
            "claw_peak_rss_kib": self.peak_rss_kib,
        })
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the benchmark with profiles under `scratch`.
pub async fn run(scratch: &Path, rounds: usize) -> Result<Report, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen: {e}"))?;
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}/");
    let settings = Settings::default();
    let manager = super::shared(scratch);
    let opts = Options {
        profile: "bench".to_owned(),
        headed: false,
        viewport: DEFAULT_VIEWPORT,
    };
    let t0 = Instant::now();
    let tab = manager.open_tab(&opts, &settings).await?;
    actions::goto(&tab.page, &settings, &url).await?;
    let cold_start = t0.elapsed();
    let instance = tab.instance.clone();
    tab.close().await;

    let goto = Action::Goto { url: url.clone() };
    let extract = Action::Extract {
        selector: "h1".to_owned(),
        what: Extract::Text,
        all: false,
        output: "text".to_owned(),
    };
    let (mut claw, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // As a step: its own tab, dialogs answered, downloads set, the actions, the tab closed.
        let t = Instant::now();
        let tab = manager.open_tab(&opts, &settings).await?;
        let _ = actions::answer_dialogs(&tab.page, settings.dialogs).await?;
        tab.allow_downloads(Some(&scratch.join("artifacts")))
            .await?;
        let mut cx = actions::Cx {
            page: &tab.page,
            settings: &settings,
            artifacts: scratch.join("artifacts"),
            prefix: "bench".to_owned(),
            deadline: Instant::now() + Duration::from_secs(30),
            outputs: serde_json::Map::new(),
            files: Vec::new(),
        };
        actions::perform(&mut cx, &goto).await?;
        actions::perform(&mut cx, &extract).await?;
        if cx.outputs.get("text").and_then(|v| v.as_str()) != Some("hello from the bench") {
            return Err(format!("claw extracted {:?}", cx.outputs.get("text")));
        }
        drop(cx);
        tab.close().await;
        claw.push(t.elapsed());

        // Directly: a new page, goto, the element's text, close.
        let t = Instant::now();
        let page = instance
            .browser()
            .new_page("about:blank")
            .await
            .map_err(|e| e.to_string())?;
        page.goto(url.as_str()).await.map_err(|e| e.to_string())?;
        let text = page
            .find_element("h1")
            .await
            .map_err(|e| e.to_string())?
            .inner_text()
            .await
            .map_err(|e| e.to_string())?;
        if text.as_deref() != Some("hello from the bench") {
            return Err(format!("chromiumoxide read {text:?}"));
        }
        page.close().await.map_err(|e| e.to_string())?;
        direct.push(t.elapsed());
    }
    server.abort();
    Ok(Report {
        cold_start,
        rounds,
        claw_median: median(claw),
        direct_median: median(direct),
        peak_rss_kib: peak_rss_kib(),
    })
}

/// `VmHWM` of this process.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
