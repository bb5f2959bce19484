//! The browsers of this process: one per profile (and headed or not), started when a step first
//! needs it, a tab per step out of a bounded number, closed after an idle period or when the
//! process ends ([`close_all`]). A browser whose connection drops or whose process exits is
//! dropped from the list (its process group killed) and the next step starts a fresh one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::launch::{self, Process};
use super::{Settings, check_profile_name, profiles_dir};

/// How long a browser gets to quit on its own before its group is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long opening or closing a tab may take before the browser is deemed stuck.
const TAB_TIMEOUT: Duration = Duration::from_secs(20);

/// The managers of the process, by data directory.
type Managers = Mutex<Vec<(PathBuf, Arc<Manager>)>>;

static MANAGERS: LazyLock<Managers> = LazyLock::new(|| Mutex::new(Vec::new()));

/// The manager of the data directory `home` (one per process and directory).
pub fn shared(home: &Path) -> Arc<Manager> {
    let Ok(mut all) = MANAGERS.lock() else {
        return Arc::new(Manager::new(home));
    };
    if let Some((_, m)) = all.iter().find(|(h, _)| h == home) {
        return m.clone();
    }
    let m = Arc::new(Manager::new(home));
    all.push((home.to_path_buf(), m.clone()));
    m
}

/// Closes every browser of the process gracefully (claw's last act: cookies and the rest of
/// the profile are written, no Chromium outlives claw).
pub fn close_all() {
    let managers: Vec<Arc<Manager>> = MANAGERS
        .lock()
        .map(|m| m.iter().map(|(_, m)| m.clone()).collect())
        .unwrap_or_default();
    for m in managers {
        m.close_every();
    }
}

/// Opens `url` in a new tab of `options`' profile (dialogs answered as `settings` say, downloads
/// refused), runs `f` on the page and closes the tab, all within `limit`; a browser that crashed
/// meanwhile is named in the error. What `claw browse` and the MCP browser tools share.
pub async fn on_page<T, F>(
    manager: &Arc<Manager>,
    options: &Options,
    settings: &super::Settings,
    url: &str,
    limit: std::time::Duration,
    f: F,
) -> Result<T, String>
where
    F: AsyncFnOnce(&chromiumoxide::Page, &super::Settings) -> Result<T, String>,
{
    let work = async {
        let tab = manager.open_tab(options, settings).await?;
        let _ = super::actions::answer_dialogs(&tab.page, settings.dialogs).await;
        let _ = tab.allow_downloads(None).await;
        let r = async {
            super::actions::goto(&tab.page, settings, url).await?;
            f(&tab.page, settings).await
        }
        .await;
        let r = match (r, tab.crashed()) {
            (Err(e), Some(why)) => Err(format!("{e} ({why})")),
            (r, _) => r,
        };
        tab.close().await;
        r
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", limit.as_secs())),
    }
}

/// What a tab is opened with.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: String,
    pub headed: bool,
    pub viewport: (u32, u32),
}

/// The browsers of one data directory.
#[derive(Debug)]
pub struct Manager {
    home: PathBuf,
    browsers: Mutex<Vec<Arc<Instance>>>,
    /// One launch at a time (two steps of a new profile share its browser).
    launching: tokio::sync::Mutex<()>,
}

/// One running browser.
pub struct Instance {
    pub profile: String,
    headed: bool,
    browser: Browser,
    process: Mutex<Process>,
    tabs: Arc<Semaphore>,
    open: AtomicUsize,
    last_used: Mutex<Instant>,
    /// Fired when the DevTools connection ends (Chromium exited, crashed or was killed).
    pub died: CancellationToken,
    /// How long the launch took.
    pub started_in: Duration,
    /// The browser's DevTools endpoint.
    ws: String,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("profile", &self.profile)
            .field("headed", &self.headed)
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// The chromiumoxide handle (for the benchmark's direct calls).
    pub fn browser(&self) -> &Browser {
        &self.browser
    }

    /// Why it is not usable any more (`None`: it is).
    pub fn gone(&self) -> Option<String> {
        let exited = self.process.lock().ok().and_then(|mut p| p.exited());
        match exited {
            Some(status) => Some(format!("Chromium exited ({status})")),
            None if self.died.is_cancelled() => {
                Some("Chromium closed its DevTools connection".to_owned())
            }
            None => None,
        }
    }

    fn pid(&self) -> i32 {
        self.process.lock().map(|p| p.pid).unwrap_or(0)
    }

    fn kill(&self) {
        if let Ok(mut p) = self.process.lock() {
            p.kill_now();
        }
    }

    /// Closes it gracefully: DevTools' `Browser.close` (Chromium then writes its profile:
    /// cookies, storage), then the process is given the grace period, then its group killed.
    /// Must run outside any async runtime (it starts its own for a fresh DevTools connection:
    /// the one the browser was driven through may belong to a runtime that is gone).
    fn close(&self) {
        let mut asked = false;
        if self.gone().is_none()
            && tokio::runtime::Handle::try_current().is_err()
            && let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        {
            let r = rt.block_on(async {
                tokio::time::timeout(CLOSE_GRACE, async {
                    let (mut b, mut handler) = Browser::connect(self.ws.clone()).await?;
                    let h = tokio::spawn(async move { while handler.next().await.is_some() {} });
                    let r = b.close().await;
                    h.abort();
                    r
                })
                .await
            });
            tracing::debug!(profile = %self.profile, "Browser.close: {r:?}");
            asked = matches!(r, Ok(Ok(_)));
        }
        if let Ok(mut p) = self.process.lock() {
            p.close(CLOSE_GRACE, asked);
        }
    }

    /// The same from inside a runtime, over the browser's own connection.
    async fn close_async(self: Arc<Self>) {
        let mut asked = false;
        if self.gone().is_none() {
            let close = chromiumoxide::cdp::browser_protocol::browser::CloseParams::default();
            asked = matches!(
                tokio::time::timeout(CLOSE_GRACE, self.browser.execute(close)).await,
                Ok(Ok(_))
            );
        }
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut p) = self.process.lock() {
                p.close(CLOSE_GRACE, asked);
            }
        })
        .await;
    }
}

/// A tab lent to one step. Closed by [`Tab::close`]; a tab dropped otherwise is closed in the
/// background.
#[derive(Debug)]
pub struct Tab {
    pub page: Page,
    pub instance: Arc<Instance>,
    manager: Arc<Manager>,
    closed: bool,
    _permit: OwnedSemaphorePermit,
}

impl Tab {
    /// Why the browser under the tab is gone, if it is (it crashed or was killed): the browser
    /// is then dropped so that the next step gets a fresh one.
    pub fn crashed(&self) -> Option<String> {
        let why = self.instance.gone()?;
        self.manager.discard(&self.instance);
        Some(why)
    }

    /// Lets downloads land in `dir` (`None`: refuses them). The setting is the browser's, so
    /// the last step to open a tab in it decides for every tab.
    pub async fn allow_downloads(&self, dir: Option<&Path>) -> Result<(), String> {
        use chromiumoxide::cdp::browser_protocol::browser::{
            SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
        };
        let mut b = SetDownloadBehaviorParams::builder();
        b = match dir {
            Some(d) => b
                .behavior(SetDownloadBehaviorBehavior::Allow)
                .download_path(d.display().to_string()),
            None => b.behavior(SetDownloadBehaviorBehavior::Deny),
        };
        let params = b
            .build()
            .map_err(|e| format!("cannot set downloads: {e}"))?;
        self.instance
            .browser
            .execute(params)
            .await
            .map(drop)
            .map_err(|e| format!("cannot set where downloads go: {e}"))
    }

    /// Closes the tab; a browser that does not manage that in time is killed.
    pub async fn close(mut self) {
        self.closed = true;
        let page = self.page.clone();
        let ok = matches!(
            tokio::time::timeout(TAB_TIMEOUT, page.close()).await,
            Ok(Ok(()))
        );
        if !ok && self.instance.gone().is_none() {
            tracing::warn!(profile = %self.instance.profile, "a tab did not close: the browser is killed");
            self.manager.discard(&self.instance);
        }
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        self.instance.open.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut t) = self.instance.last_used.lock() {
            *t = Instant::now();
        }
        if !self.closed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let page = self.page.clone();
            rt.spawn(async move {
                let _ = tokio::time::timeout(TAB_TIMEOUT, page.close()).await;
            });
        }
    }
}

impl Manager {
    fn new(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            browsers: Mutex::new(Vec::new()),
            launching: tokio::sync::Mutex::new(()),
        }
    }

    /// The running browsers.
    pub fn running(&self) -> Vec<Arc<Instance>> {
        self.browsers.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Opens a tab in the profile's browser (started if needed), waiting for a free tab when
    /// `max_tabs` are open.
    pub async fn open_tab(
        self: &Arc<Self>,
        opts: &Options,
        settings: &Settings,
    ) -> Result<Tab, String> {
        check_profile_name(&opts.profile)?;
        let instance = self.instance(opts, settings).await?;
        let permit = instance
            .tabs
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the browser is closing".to_owned())?;
        let page = tokio::select! {
            r = tokio::time::timeout(TAB_TIMEOUT, instance.browser.new_page("about:blank")) => r,
            () = instance.died.cancelled() => {
                let why = instance.gone().unwrap_or_default();
                self.discard(&instance);
                return Err(format!(
                    "the browser crashed or was killed while opening a tab: {why}; the next step starts a fresh one"
                ));
            }
        };
        let page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                self.discard(&instance);
                return Err(format!("cannot open a tab: {e}"));
            }
            Err(_) => {
                self.discard(&instance);
                return Err(format!(
                    "cannot open a tab: Chromium did not answer within {}s",
                    TAB_TIMEOUT.as_secs()
                ));
            }
        };
        instance.open.fetch_add(1, Ordering::AcqRel);
        let tab = Tab {
            page,
            instance: instance.clone(),
            manager: self.clone(),
            closed: false,
            _permit: permit,
        };
        set_viewport(&tab.page, opts.viewport).await?;
        Ok(tab)
    }

    async fn instance(
        self: &Arc<Self>,
        opts: &Options,
        settings: &Settings,
    ) -> Result<Arc<Instance>, String> {
        let _launch = self.launching.lock().await;
        if let Some(i) = self.find(opts) {
            if i.gone().is_none() {
                return Ok(i);
            }
            self.discard(&i);
        }
        let chromium = launch::find_chromium()?;
        let spec = launch::Spec {
            chromium,
            profile_dir: profiles_dir(&self.home).join(&opts.profile),
            headed: opts.headed,
            log: self
                .home
                .join("browser")
                .join(format!("chromium-{}.log", opts.profile)),
        };
        let t0 = Instant::now();
        let (process, ws) = launch::start(&spec).await?;
        let config = HandlerConfig {
            viewport: None,
            request_timeout: Duration::from_secs(120),
            ..HandlerConfig::default()
        };
        let (browser, mut handler) = match Browser::connect_with_config(ws.clone(), config).await {
            Ok(b) => b,
            Err(e) => {
                drop(process);
                return Err(format!("cannot connect to Chromium's DevTools: {e}"));
            }
        };
        let died = CancellationToken::new();
        let d = died.clone();
        tokio::spawn(async move {
            while let Some(r) = handler.next().await {
                if let Err(
                    e @ (chromiumoxide::error::CdpError::Ws(_)
                    | chromiumoxide::error::CdpError::Io(_)),
                ) = r
                {
                    tracing::debug!("the DevTools connection ended: {e}");
                    break;
                }
            }
            d.cancel();
        });
        let instance = Arc::new(Instance {
            profile: opts.profile.clone(),
            headed: opts.headed,
            browser,
            process: Mutex::new(process),
            tabs: Arc::new(Semaphore::new(settings.max_tabs.max(1))),
            open: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            died,
            started_in: t0.elapsed(),
            ws,
        });
        tracing::info!(
            profile = %opts.profile,
            pid = instance.pid(),
            ms = instance.started_in.as_millis() as u64,
            "Chromium started"
        );
        if let Ok(mut b) = self.browsers.lock() {
            b.push(instance.clone());
        }
        tokio::spawn(idle_watch(
            self.clone(),
            Arc::downgrade(&instance),
            settings.idle,
        ));
        Ok(instance)
    }

    fn find(&self, opts: &Options) -> Option<Arc<Instance>> {
        self.browsers.lock().ok().and_then(|b| {
            b.iter()
                .find(|i| i.profile == opts.profile && i.headed == opts.headed)
                .cloned()
        })
    }

    fn remove(&self, instance: &Arc<Instance>) -> bool {
        let Ok(mut b) = self.browsers.lock() else {
            return false;
        };
        let before = b.len();
        b.retain(|i| !Arc::ptr_eq(i, instance));
        b.len() != before
    }

    /// Drops a browser that failed: its whole process group is killed now.
    pub fn discard(&self, instance: &Arc<Instance>) {
        self.remove(instance);
        instance.tabs.close();
        instance.kill();
    }

    /// Closes every browser gracefully (blocking: up to the grace period each).
    pub fn close_every(&self) {
        let all: Vec<Arc<Instance>> = self
            .browsers
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default();
        for i in all {
            i.tabs.close();
            i.close();
        }
    }
}

/// Closes the browser once it has had no tab for `idle`.
async fn idle_watch(manager: Arc<Manager>, weak: std::sync::Weak<Instance>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(15));
    loop {
        tokio::time::sleep(tick).await;
        let Some(i) = weak.upgrade() else { return };
        if i.died.is_cancelled() {
            manager.discard(&i);
            return;
        }
        let unused = i.open.load(Ordering::Acquire) == 0
            && i.last_used
                .lock()
                .map(|t| t.elapsed() >= idle)
                .unwrap_or(false);
        if unused && manager.remove(&i) {
            tracing::info!(profile = %i.profile, "closing an idle Chromium");
            i.tabs.close();
            i.close_async().await;
            return;
        }
    }
}

async fn set_viewport(page: &Page, (width, height): (u32, u32)) -> Result<(), String> {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    let params =
        SetDeviceMetricsOverrideParams::new(i64::from(width), i64::from(height), 1.0, false);
    page.execute(params)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot set the viewport: {e}"))
}
