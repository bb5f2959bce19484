//! Chat front ends in the daemon: Telegram long polling (`getUpdates`, the offset kept in the
//! store), who may talk to claw (the `ALLOWED_CHAT_IDS` setting, plus chats the admin allowed
//! with `/approve`, kept in the store), and what a message from an allowed chat does. Every
//! reply goes through the outbox; every access decision and command is audited.
//!
//! Chat text is data: a command's words reach a workflow as typed params (bound and checked
//! like `claw workflow run -p`), never as shell code.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::Ctx;
use crate::msg::inbound::{self, Callback, Inbound};
use crate::msg::{Creds, Target};
use crate::store::{ChatAccess, RunFilter};
use crate::trace::DAEMON;
use crate::triggers::launch::{Execution, Launcher};

/// The seed's limits: runs started from chats at once, per chat and in all; waiting per chat.
pub const MAX_PER_CHAT: usize = 2;
pub const MAX_GLOBAL: usize = 5;
pub const QUEUE_OVERFLOW: usize = 10;
/// The seed's refusal when a chat asks for more.
pub const TOO_MANY: &str = "Too many requests — please wait for current jobs to finish.";

const POLL_WAIT: Duration = Duration::from_secs(30);

/// How a chat stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Never allowed (or removed): only `/start` does something.
    Unknown,
    Requested,
    Denied,
}

/// Who may talk: the admin chat and `ALLOWED_CHAT_IDS` (compared as strings, exactly), then
/// what the store says. A denial recorded in the store wins over the setting.
pub fn access(
    stored: Option<&ChatAccess>,
    allowlist: &[String],
    admin: Option<&str>,
    chat: &str,
) -> Access {
    if admin == Some(chat) {
        return Access::Allowed;
    }
    match stored.map(|a| a.status.as_str()) {
        Some("denied") => Access::Denied,
        Some("allowed") => Access::Allowed,
        _ if allowlist.iter().any(|a| a == chat) => Access::Allowed,
        Some("requested") => Access::Requested,
        _ => Access::Unknown,
    }
}

/// `ALLOWED_CHAT_IDS`: comma-separated, whitespace and trailing commas tolerated.
pub fn allowlist(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The runs started from chats, for the seed's limits.
struct Gate {
    global: Arc<Semaphore>,
    per_chat: RefCell<HashMap<String, (Arc<Semaphore>, usize)>>,
}

impl Gate {
    fn new() -> Self {
        Self {
            global: Arc::new(Semaphore::new(MAX_GLOBAL)),
            per_chat: RefCell::new(HashMap::new()),
        }
    }
}

/// The daemon's chat side.
struct Chats {
    ctx: Rc<Ctx>,
    client: reqwest::Client,
    gate: Gate,
    /// Chats whose refusal is logged already (once per chat).
    refused: RefCell<HashSet<String>>,
}

/// Polls Telegram while the daemon takes work; does nothing until `TELEGRAM_BOT_TOKEN` is set.
/// Receives Telegram's updates while the daemon takes work: long polling, or — with
/// `TELEGRAM_WEBHOOK_URL` — the updates Telegram posts to `/webhook/telegram` (`updates`), once
/// `setWebhook` has registered that URL with the secret token. Does nothing until
/// `TELEGRAM_BOT_TOKEN` is set.
pub(super) async fn telegram_loop(
    ctx: Rc<Ctx>,
    mut updates: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let client = match crate::msg::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: DAEMON, "Telegram is not polled: {e}");
            return;
        }
    };
    tokio::task::spawn_local(watch_outcomes(ctx.clone()));
    let chats = Rc::new(Chats {
        ctx: ctx.clone(),
        client: client.clone(),
        gate: Gate::new(),
        refused: RefCell::new(HashSet::new()),
    });
    let mut said_idle = false;
    let mut hooked = false;
    loop {
        let creds = crate::msg::route::creds(&ctx.engine.dirs);
        let Some(token) = creds.get("TELEGRAM_BOT_TOKEN").map(str::to_owned) else {
            if !said_idle {
                tracing::info!(target: DAEMON, "Telegram: no TELEGRAM_BOT_TOKEN, not polling");
                said_idle = true;
            }
            tokio::select! {
                () = ctx.intake.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        };
        said_idle = false;
        let api = creds
            .get("TELEGRAM_API_URL")
            .unwrap_or("https://api.telegram.org")
            .trim_end_matches('/')
            .to_owned();
        let batch = if let Some(url) = creds.get("TELEGRAM_WEBHOOK_URL") {
            if !hooked {
                let Some(secret) = creds.get("TELEGRAM_WEBHOOK_SECRET") else {
                    tracing::error!(target: DAEMON, "Telegram: webhook mode needs TELEGRAM_WEBHOOK_SECRET; the webhook is not set and /webhook/telegram refuses every request");
                    tokio::select! {
                        () = ctx.intake.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(30)) => continue,
                    }
                };
                match inbound::telegram_set_webhook(&client, &api, &token, url, secret).await {
                    Ok(()) => {
                        tracing::info!(target: DAEMON, "Telegram: webhook set to {url}");
                        hooked = true;
                    }
                    Err(e) => {
                        let e = crate::redact::global().redact(&e).into_owned();
                        tracing::warn!(target: DAEMON, "Telegram: {e}");
                        tokio::select! {
                            () = ctx.intake.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(10)) => continue,
                        }
                    }
                }
            }
            tokio::select! {
                () = ctx.intake.cancelled() => return,
                u = updates.recv() => match u {
                    Some(u) => vec![u],
                    None => return,
                },
            }
        } else {
            let offset = ctx.engine.store.inbound_cursor("telegram").ok().flatten();
            let asked = std::time::Instant::now();
            let poll = inbound::telegram_updates(&client, &api, &token, offset, POLL_WAIT);
            let polled = tokio::select! {
                () = ctx.intake.cancelled() => return,
                r = poll => r,
            };
            match polled {
                // A server that answers an empty long poll at once (a proxy, an emulator) is
                // not asked again in a tight loop.
                Ok(u) if u.is_empty() && asked.elapsed() < Duration::from_millis(500) => {
                    tokio::select! {
                        () = ctx.intake.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
                Ok(u) => u,
                Err(e) => {
                    let e = crate::redact::global().redact(&e).into_owned();
                    tracing::warn!(target: DAEMON, "Telegram: {e}");
                    tokio::select! {
                        () = ctx.intake.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(3)) => continue,
                    }
                }
            }
        };
        for u in batch {
            take(&ctx, &chats, &creds, &u);
        }
    }
}

/// One update: skipped when the cursor is past it (Telegram posts a webhook update again when
/// it got no answer), else the cursor moves and the message is handled in a task of its own.
fn take(ctx: &Ctx, chats: &Rc<Chats>, creds: &Creds, u: &serde_json::Value) {
    let store = &ctx.engine.store;
    let Some(id) = u.get("update_id").and_then(serde_json::Value::as_i64) else {
        return;
    };
    if store
        .inbound_cursor("telegram")
        .ok()
        .flatten()
        .is_some_and(|next| id < next)
    {
        return;
    }
    // The cursor moves before the update is handled: a crash right here loses this one update
    // rather than running its command twice.
    if let Err(e) = store.set_inbound_cursor("telegram", id + 1, crate::time::now_ms()) {
        tracing::warn!(target: DAEMON, "Telegram: the offset was not kept: {e}");
    }
    if let Some(cb) = inbound::telegram_callback(u) {
        let (chats, creds) = (chats.clone(), creds.clone());
        tokio::task::spawn_local(async move { chats.press(&creds, cb).await });
        return;
    }
    match inbound::telegram_update(u) {
        Some(m) => {
            let (chats, creds) = (chats.clone(), creds.clone());
            tokio::task::spawn_local(async move { chats.handle(&creds, m).await });
        }
        None => {
            tracing::debug!(target: DAEMON, "Telegram: update {id} has no text message; skipped");
        }
    }
}

/// `POST /webhook/telegram`: Telegram's updates in webhook mode. Fail-closed: without
/// `TELEGRAM_WEBHOOK_SECRET` every request is refused (403), as is one whose
/// `X-Telegram-Bot-Api-Secret-Token` is missing or wrong (compared in constant time); a body
/// that is not an update is 400.
pub(super) fn webhook_route(
    dirs: crate::config::Dirs,
    updates: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode};
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let (dirs, updates) = (dirs.clone(), updates.clone());
        async move {
            let creds = crate::msg::route::creds(&dirs);
            let Some(secret) = creds.get("TELEGRAM_WEBHOOK_SECRET") else {
                tracing::warn!(target: DAEMON, "Telegram webhook: refused a request (no TELEGRAM_WEBHOOK_SECRET is set)");
                return (StatusCode::FORBIDDEN, "Invalid secret token\n");
            };
            let token = headers
                .get("x-telegram-bot-api-secret-token")
                .and_then(|v| v.to_str().ok());
            if crate::triggers::webhook::verify::telegram(secret.as_bytes(), token).is_err() {
                tracing::warn!(target: DAEMON, "Telegram webhook: refused a request with a missing or wrong secret token");
                return (StatusCode::FORBIDDEN, "Invalid secret token\n");
            }
            let Ok(update) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return (StatusCode::BAD_REQUEST, "not a JSON update\n");
            };
            if update
                .get("update_id")
                .and_then(serde_json::Value::as_i64)
                .is_none()
            {
                return (StatusCode::BAD_REQUEST, "not a Telegram update\n");
            }
            if updates.send(update).is_err() {
                return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
            }
            (StatusCode::OK, "{\"ok\":true}\n")
        }
    };
    axum::Router::new().route("/webhook/telegram", axum::routing::post(handler))
}

impl Chats {
    fn audit(
        &self,
        actor: &str,
        action: crate::audit::Action,
        target: &str,
        result: &str,
        detail: serde_json::Value,
    ) {
        let e = crate::audit::Event::new(actor, action, target, result, detail);
        if let Err(err) = self.ctx.engine.audit.record(&e) {
            tracing::warn!(target: DAEMON, "not audited: {err}");
        }
    }

    /// Queues a reply to the chat (the outbox loop delivers it).
    fn say(&self, creds: &Creds, channel: &str, chat: &str, text: &str) {
        self.say_with(creds, channel, chat, text, None);
    }

    /// [`Chats::say`] with what the channel sends besides the text (Telegram: buttons).
    fn say_with(
        &self,
        creds: &Creds,
        channel: &str,
        chat: &str,
        text: &str,
        extra: Option<&serde_json::Value>,
    ) {
        let target = Target {
            channel: channel.to_owned(),
            target: chat.to_owned(),
        };
        let source = format!("chat:{channel}:{chat}");
        if let Err(e) = crate::msg::outbox::enqueue_with(
            self.ctx.engine.store.as_ref(),
            creds,
            &[target],
            text,
            &source,
            extra,
        ) {
            tracing::warn!(target: DAEMON, "reply to {channel}:{chat} not queued: {e}");
        }
        self.ctx.outbox_bell.notify_one();
    }

    async fn handle(self: Rc<Self>, creds: &Creds, m: Inbound) {
        let store = self.ctx.engine.store.clone();
        let admin = creds
            .get("TELEGRAM_ADMIN_CHAT_ID")
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let allowed = allowlist(creds.get("ALLOWED_CHAT_IDS"));
        let stored = store.chat_access(&m.channel, &m.chat).ok().flatten();
        let acc = access(stored.as_ref(), &allowed, admin, &m.chat);
        let (cmd, args) = split_command(&m.text);
        let who = m.identity();
        let where_ = format!("{}:{}", m.channel, m.chat);
        if acc != Access::Allowed {
            if cmd == "/start" && acc == Access::Unknown {
                let req = ChatAccess {
                    channel: m.channel.clone(),
                    chat: m.chat.clone(),
                    status: "requested".to_owned(),
                    name: m.name.clone(),
                    decided_by: None,
                    updated_at: crate::time::now_ms(),
                };
                if let Err(e) = store.set_chat_access(&req) {
                    tracing::warn!(target: DAEMON, "access request of {where_} not kept: {e}");
                    return;
                }
                self.audit(
                    &who,
                    crate::audit::Action::ChatAccess,
                    &where_,
                    "requested",
                    serde_json::json!({"name": m.name}),
                );
                self.say(
                    creds,
                    &m.channel,
                    &m.chat,
                    &format!("Access pending admin approval. Your chat id: {}", m.chat),
                );
                if let Some(a) = admin {
                    self.say(creds, &m.channel, a, &format!(
                        "Access request from chat {} ({}, user {}).\nTo approve: /approve {}\nTo deny: /deny {}",
                        m.chat, if m.name.is_empty() { "no name" } else { &m.name }, m.user, m.chat, m.chat
                    ));
                }
                return;
            }
            if self.refused.borrow_mut().insert(where_.clone()) {
                tracing::info!(target: DAEMON, "Telegram: messages from chat {} are dropped (not allowed)", m.chat);
                self.audit(
                    &who,
                    crate::audit::Action::ChatAccess,
                    &where_,
                    "refused",
                    serde_json::json!({}),
                );
            }
            return;
        }
        self.audit(&who, crate::audit::Action::ChatCommand, &where_, "received", serde_json::json!({"command": if cmd.starts_with('/') || cmd.starts_with('!') { cmd.as_str() } else { "text" }, "chars": m.text.chars().count()}));
        let reply = match cmd.as_str() {
            "/start" => "Welcome to claw. Send !help for the commands.".to_owned(),
            "/help" | "!help" => HELP.to_owned(),
            "/status" | "!status" => format!(
                "{}\n{}",
                self.status(),
                super::conversation::status_line(store.as_ref(), &m)
            ),
            "!runs" => self.runs(),
            "!logs" => self.logs(&args),
            "/skills" | "!skills" => {
                let (text, buttons) = self.skills();
                self.say_with(creds, &m.channel, &m.chat, &text, buttons.as_ref());
                return;
            }
            "/approve" | "/deny" if admin == Some(m.chat.as_str()) => {
                self.decide_chat(creds, &m, &cmd, &args)
            }
            "!run" | "/run" => {
                let Some(name) = args.first() else {
                    self.say(
                        creds,
                        &m.channel,
                        &m.chat,
                        "usage: !run <workflow> [key=value …] (or /run <skill> [key=value …])",
                    );
                    return;
                };
                if cmd == "/run"
                    && let Some(skill) = crate::skills::discover(&self.ctx.engine.dirs)
                        .get(name)
                        .cloned()
                {
                    return self.clone().run_skill(creds, &m, skill, &args[1..]).await;
                }
                match crate::triggers::launch::find_workflow(&self.ctx.engine.dirs, name) {
                    Ok(wf) => {
                        return self
                            .clone()
                            .start_words(creds, &m, wf, "run", &args[1..])
                            .await;
                    }
                    Err(e) => format!("cannot start {name}: {e}"),
                }
            }
            "/mode" | "/model" | "/history" | "/reset" | "/cancel" => {
                super::conversation::command(store.as_ref(), &self.ctx.engine.dirs, &m, &cmd, &args)
                    .unwrap_or_default()
            }
            "!approve" => self.vote(&m, &args, true),
            "!reject" => self.vote(&m, &args, false),
            "!cancel" => self.cancel(&m, &args),
            c => {
                if let Some(name) = c.strip_prefix('!')
                    && let Some(wf) = self.command_trigger(name)
                {
                    return self.clone().start_words(creds, &m, wf, name, &args).await;
                }
                match crate::msg::triggers::load(&self.ctx.engine.dirs) {
                    Ok(ts) => match ts.first(&m.text) {
                        Some((t, found)) => {
                            let t = t.clone();
                            return self.clone().run_trigger(creds, &m, t, found).await;
                        }
                        // Free text no trigger takes: the LLM chat mode.
                        None if !m.text.starts_with(['/', '!']) => {
                            let dirs = &self.ctx.engine.dirs;
                            match super::conversation::reply(
                                store.as_ref(),
                                dirs,
                                &m,
                                &self.ctx.intake,
                            )
                            .await
                            {
                                Some(r) => r,
                                None => return,
                            }
                        }
                        None => route_text(&m),
                    },
                    Err(e) => {
                        tracing::warn!(target: DAEMON, "triggers.yaml is not used: {}", e.render());
                        "triggers.yaml has errors, so no trigger runs (the daemon's log says which)"
                            .to_owned()
                    }
                }
            }
        };
        self.say(creds, &m.channel, &m.chat, &reply);
    }

    fn status(&self) -> String {
        let store = &self.ctx.engine.store;
        let count = |s| {
            store
                .list_runs(&RunFilter {
                    status: Some(s),
                    limit: Some(1000),
                    ..Default::default()
                })
                .map_or(0, |r| r.len())
        };
        format!(
            "claw {}: {} running, {} waiting, {} queued",
            env!("CARGO_PKG_VERSION"),
            count(crate::store::RunStatus::Running),
            count(crate::store::RunStatus::Waiting),
            count(crate::store::RunStatus::Queued),
        )
    }

    fn runs(&self) -> String {
        match self.ctx.engine.store.list_runs(&RunFilter {
            limit: Some(5),
            ..Default::default()
        }) {
            Ok(runs) if runs.is_empty() => "No runs yet.".to_owned(),
            Ok(runs) => runs
                .iter()
                .map(|r| format!("{} {} {}", r.id, r.workflow, r.status.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("cannot list the runs: {e}"),
        }
    }

    /// `!approve <run> [step]` and `!reject <run> [step] [reason…]`: a vote as
    /// `telegram:<user id>`, by the CLI's rules (allowed approvers, quorum of distinct people;
    /// a refusal is audited by the engine).
    fn vote(&self, m: &Inbound, args: &[String], approve: bool) -> String {
        let verb = if approve { "!approve" } else { "!reject" };
        let Some(run_id) = args.first() else {
            return format!(
                "usage: {verb} <run> [step]{}",
                if approve { "" } else { " [reason]" }
            );
        };
        let engine = &self.ctx.engine;
        let run = match engine.store.get_run(run_id) {
            Ok(Some(r)) => r,
            Ok(None) => return format!("no run {run_id}"),
            Err(e) => return format!("cannot read run {run_id}: {e}"),
        };
        let steps = match engine.store.steps(&run.id) {
            Ok(s) => s,
            Err(e) => return format!("cannot read run {run_id}: {e}"),
        };
        let (step, rest) = match args.get(1) {
            Some(s) if steps.iter().any(|x| &x.name == s) => (s.clone(), &args[2..]),
            _ => {
                let waiting: Vec<&str> = steps
                    .iter()
                    .filter(|x| x.status == crate::store::StepStatus::Waiting)
                    .map(|x| x.name.as_str())
                    .collect();
                match waiting.as_slice() {
                    [one] => ((*one).to_owned(), &args[1..]),
                    [] => return format!("run {} waits for no approval", run.id),
                    many => {
                        return format!(
                            "run {} waits on several steps ({}): name one",
                            run.id,
                            many.join(", ")
                        );
                    }
                }
            }
        };
        let reason = (!approve && !rest.is_empty()).then(|| rest.join(" "));
        let who = m.identity();
        let r = engine.vote(&run, &step, &who, approve, reason.as_deref(), &[]);
        engine.ring_changes();
        match r {
            Ok(crate::engine::approval::VoteResult::Recorded {
                decided: Some(d), ..
            }) => {
                let outcome = crate::engine::approval::describe(&d);
                self.show_decision(&run.id, &step, &outcome);
                format!("run {}: step `{step}` {outcome}", run.id)
            }
            Ok(crate::engine::approval::VoteResult::Recorded {
                decided: None,
                approvals,
                quorum,
            }) => format!(
                "run {}: {who} approved step `{step}` ({approvals} of {quorum} approvals)",
                run.id
            ),
            Err(e) => format!("refused: {e}"),
        }
    }

    /// `!cancel <run>`.
    fn cancel(&self, m: &Inbound, args: &[String]) -> String {
        let Some(run_id) = args.first() else {
            return "usage: !cancel <run>".to_owned();
        };
        let engine = &self.ctx.engine;
        match engine.store.get_run(run_id) {
            Ok(Some(run)) => match engine.cancel(&run, &m.identity()) {
                Ok(st) if st.is_finished() => format!("run {} {}", run.id, st.as_str()),
                Ok(_) => format!("run {}: cancel requested", run.id),
                Err(e) => format!("cannot cancel run {}: {e}", run.id),
            },
            Ok(None) => format!("no run {run_id}"),
            Err(e) => format!("cannot read run {run_id}: {e}"),
        }
    }

    /// `/approve <chat>` and `/deny <chat>` from the admin chat.
    fn decide_chat(&self, creds: &Creds, m: &Inbound, cmd: &str, args: &[String]) -> String {
        let Some(chat) = args.first() else {
            return format!("usage: {cmd} <chat id>");
        };
        let status = if cmd == "/approve" {
            "allowed"
        } else {
            "denied"
        };
        let rec = ChatAccess {
            channel: m.channel.clone(),
            chat: chat.clone(),
            status: status.to_owned(),
            name: String::new(),
            decided_by: Some(m.identity()),
            updated_at: crate::time::now_ms(),
        };
        if let Err(e) = self.ctx.engine.store.set_chat_access(&rec) {
            return format!("not recorded: {e}");
        }
        self.refused
            .borrow_mut()
            .remove(&format!("{}:{chat}", m.channel));
        self.audit(
            &m.identity(),
            crate::audit::Action::ChatAccess,
            &format!("{}:{chat}", m.channel),
            status,
            serde_json::json!({"by": "admin chat"}),
        );
        let told = if status == "allowed" {
            "Access granted. Send !help for the commands."
        } else {
            "Access denied."
        };
        self.say(creds, &m.channel, chat, told);
        format!("chat {chat} {status}")
    }

    /// The workflow whose `triggers:` has `- command: <name>` (the first, by file name).
    fn command_trigger(&self, name: &str) -> Option<crate::workflow::Workflow> {
        let files = crate::workflow::catalogue::Catalogue::new(&self.ctx.engine.dirs).files();
        files.iter().find_map(|f| {
            let wf = crate::workflow::load::load_file(f).ok()?;
            wf.triggers
                .iter()
                .any(|t| matches!(t, crate::workflow::trigger::Trigger::Command { name: n, .. } if n == name))
                .then_some(wf)
        })
    }

    /// `!run <workflow> words…` or a command trigger: the words as params (see [`params_of`]),
    /// all of them `trigger.args`.
    async fn start_words(
        self: Rc<Self>,
        creds: &Creds,
        m: &Inbound,
        wf: crate::workflow::Workflow,
        command: &str,
        words: &[String],
    ) {
        let given = match params_of(&wf, words) {
            Ok(g) => g,
            Err(e) => {
                self.say(creds, &m.channel, &m.chat, &e);
                return;
            }
        };
        let trigger = serde_json::json!({
            "type": m.channel, "chat": m.chat, "from": m.identity(), "command": command,
            "args": words,
        });
        self.start(creds, m, wf, given, trigger, true).await;
    }

    /// The seed's limits: a permit for this chat and one of all chats, waiting while they are
    /// taken; `None` (and the seed's refusal told) when too many wait for this chat already.
    async fn admit(
        &self,
        creds: &Creds,
        m: &Inbound,
    ) -> Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    )> {
        let chat_sem = {
            let mut per = self.gate.per_chat.borrow_mut();
            let e = per
                .entry(m.chat.clone())
                .or_insert_with(|| (Arc::new(Semaphore::new(MAX_PER_CHAT)), 0));
            let busy = e.0.available_permits() == 0 || self.gate.global.available_permits() == 0;
            if busy && e.1 >= QUEUE_OVERFLOW {
                drop(per);
                self.say(creds, &m.channel, &m.chat, TOO_MANY);
                return None;
            }
            e.1 += 1;
            e.0.clone()
        };
        let permits = async {
            let a = chat_sem.acquire_owned().await.ok()?;
            let b = self.gate.global.clone().acquire_owned().await.ok()?;
            Some((a, b))
        }
        .await;
        if let Some(e) = self.gate.per_chat.borrow_mut().get_mut(&m.chat) {
            e.1 = e.1.saturating_sub(1);
        }
        permits
    }

    /// A run of `wf` queued for the daemon, its id told at once; within the seed's limits. The
    /// chat is recorded as waiting for the run's outcome ([`watch_outcomes`] tells it, also
    /// after a restart). Without `tell` (a trigger's `reply: false`) only a failure to start is
    /// told.
    async fn start(
        self: Rc<Self>,
        creds: &Creds,
        m: &Inbound,
        wf: crate::workflow::Workflow,
        given: Vec<(String, String)>,
        trigger: serde_json::Value,
        tell: bool,
    ) {
        // The command policies see the chat command as written (no run holds a gate yet).
        let subject = crate::policy::Subject::Command(m.text.clone());
        let target = format!("{}:{}", m.channel, m.chat);
        let refused = match crate::policy::gate("chat trigger", &m.identity(), &target, &[subject])
        {
            crate::policy::Gate::Allow => None,
            crate::policy::Gate::Deny(why) => Some(why),
            crate::policy::Gate::RequireApproval { rule, message } => {
                Some(crate::policy::refuse_without_run(&rule, &message))
            }
        };
        if let Some(why) = refused {
            let why = crate::redact::global().redact(&why).into_owned();
            self.say(creds, &m.channel, &m.chat, &why);
            return;
        }
        let workflow = wf.name.clone();
        let Some(_permits) = self.admit(creds, m).await else {
            return;
        };
        let launcher = Launcher::new(
            self.ctx.engine.clone(),
            Execution::QueueAndWake(self.ctx.poke.clone()),
        );
        let started = match launcher.start(&wf, &given, trigger) {
            Ok(s) => s,
            Err(e) => {
                let e = crate::redact::global().redact(&e.to_string()).into_owned();
                self.say(
                    creds,
                    &m.channel,
                    &m.chat,
                    &format!("cannot start {workflow}: {e}"),
                );
                return;
            }
        };
        let id = started.run.id.clone();
        let watch = tell.then(|| crate::store::RunWatch {
            run_id: id.clone(),
            channel: m.channel.clone(),
            chat: m.chat.clone(),
            workflow: workflow.clone(),
            created_at: crate::time::now_ms(),
        });
        if let Some(watch) = watch {
            if let Err(e) = self.ctx.engine.store.watch_run(&watch) {
                tracing::warn!(target: DAEMON, "run {id}: its outcome will not be told to {}:{}: {e}", m.channel, m.chat);
            }
            self.ctx.watch_bell.notify_one();
            self.say(
                creds,
                &m.channel,
                &m.chat,
                &format!("run {id} of {workflow} queued"),
            );
        }
        // The permits are held while the run goes on.
        loop {
            tokio::select! {
                () = self.ctx.intake.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            match self.ctx.engine.store.get_run(&id) {
                Ok(Some(r)) if !r.status.is_finished() => {}
                _ => return,
            }
        }
    }

    /// A trigger of `triggers.yaml` matched: its workflow is started (the named captures as
    /// params, the groups as `trigger.match`), or its command or skill run within the seed's
    /// limits and the output sent back when `reply` says so.
    async fn run_trigger(
        self: Rc<Self>,
        creds: &Creds,
        m: &Inbound,
        t: crate::msg::triggers::Trigger,
        found: crate::msg::triggers::Match,
    ) {
        use crate::msg::triggers::Action;
        self.audit(
            &m.identity(),
            crate::audit::Action::ChatCommand,
            &format!("{}:{}", m.channel, m.chat),
            "trigger",
            serde_json::json!({"line": t.pos.line, "action": t.action}),
        );
        match t.action {
            Action::Workflow => {
                let wf = match crate::triggers::launch::find_workflow(
                    &self.ctx.engine.dirs,
                    t.command.trim(),
                ) {
                    Ok(wf) => wf,
                    Err(e) => {
                        let text = format!("cannot start {}: {e}", t.command.trim());
                        self.say(creds, &m.channel, &m.chat, &text);
                        return;
                    }
                };
                let given = found
                    .named
                    .iter()
                    .filter(|(k, _)| wf.params.iter().any(|p| p.name == *k))
                    .cloned()
                    .collect();
                let trigger = serde_json::json!({
                    "type": m.channel, "chat": m.chat, "from": m.identity(),
                    "text": m.text, "match": found.groups,
                });
                self.start(creds, m, wf, given, trigger, t.reply).await;
            }
            Action::Shell | Action::Skill => {
                let Some(_permits) = self.admit(creds, m).await else {
                    return;
                };
                let mut env = vec![
                    ("TRIGGER_MESSAGE".to_owned(), m.text.clone()),
                    ("TRIGGER_CHAT".to_owned(), m.chat.clone()),
                    ("TRIGGER_FROM".to_owned(), m.identity()),
                ];
                for (i, g) in found.groups.iter().enumerate() {
                    env.push((format!("TRIGGER_MATCH_{i}"), g.clone().unwrap_or_default()));
                }
                let name = format!("line-{}", t.pos.line);
                let out = if t.action == Action::Shell {
                    self.process(&name, &t.command, None, env).await
                } else {
                    self.process(&name, &t.command, Some(found.named.clone()), env)
                        .await
                };
                if t.reply {
                    self.say(creds, &m.channel, &m.chat, &out);
                }
            }
        }
    }

    /// `/run <skill> [key=value …]`: the seed's way to run a skill from a chat, as
    /// `claw skill run` runs it; the output is sent back.
    async fn run_skill(
        self: Rc<Self>,
        creds: &Creds,
        m: &Inbound,
        skill: crate::skills::Skill,
        words: &[String],
    ) {
        let mut args = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) if !k.is_empty() => args.push((k.to_owned(), v.to_owned())),
                _ => {
                    let text = format!("usage: /run <skill> [key=value …]; not a key=value: {w}");
                    self.say(creds, &m.channel, &m.chat, &text);
                    return;
                }
            }
        }
        self.audit(
            &m.identity(),
            crate::audit::Action::ChatCommand,
            &format!("{}:{}", m.channel, m.chat),
            "skill",
            serde_json::json!({"skill": skill.name()}),
        );
        let Some(_permits) = self.admit(creds, m).await else {
            return;
        };
        let name = format!("skill-{}", skill.name());
        let out = self
            .process(&name, skill.name(), Some(args), Vec::new())
            .await;
        self.say(creds, &m.channel, &m.chat, &out);
    }

    /// Runs `command` with `/bin/sh -c` (or, with `skill_args`, the skill `command` through
    /// `claw skill run`), the chat's text only in `env`; what it printed, or why it failed.
    async fn process(
        &self,
        name: &str,
        command: &str,
        skill_args: Option<Vec<(String, String)>>,
        env: Vec<(String, String)>,
    ) -> String {
        use crate::steps::{Runtime, StepInput, StepKind, shell::ShellStep};
        let dirs = &self.ctx.engine.dirs;
        let log_dir = dirs.home.join("logs").join("triggers");
        if let Err(e) = crate::fsutil::create_dirs_private(&log_dir) {
            return format!("cannot create {}: {e}", log_dir.display());
        }
        let settings = self.ctx.engine.settings();
        let mut shell = ShellStep::from_command(command.to_owned());
        shell.cwd = dirs.root.is_dir().then(|| dirs.root.display().to_string());
        let input = StepInput {
            kind: StepKind::Shell(shell),
            run_id: format!("trigger:{name}"),
            step: name.to_owned(),
            attempt: 1,
            env,
            timeout: TRIGGER_TIMEOUT,
            kill_grace: settings.kill_grace,
            log_path: log_dir.join(format!("{name}.log")),
            max_log_bytes: settings.max_step_log_bytes,
            outputs_path: log_dir.join(format!("{name}.out")),
            redactor: (*crate::redact::global()).clone(),
        };
        let cancel = self.ctx.shutdown.clone();
        let report = match skill_args {
            None => crate::steps::run(&input, &Runtime::detached(cancel)).await,
            Some(args) => {
                let cmd = match crate::skills::runner::cli_command(dirs, command, args) {
                    Ok(c) => c,
                    Err(e) => return format!("cannot find the claw binary: {e}"),
                };
                let what = format!("skill {}", command.trim());
                crate::steps::shell::run_command(cmd, &what, None, &input, &cancel).await
            }
        };
        let _ = std::fs::remove_file(&input.outputs_path);
        let mut out = report.stdout.trim_end().to_owned();
        let err = report.stderr_tail.trim_end();
        if !err.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(err);
        }
        let out = match &report.outcome {
            crate::steps::StepOutcome::Succeeded if out.is_empty() => {
                "(done, no output)".to_owned()
            }
            crate::steps::StepOutcome::Succeeded => out,
            crate::steps::StepOutcome::Failed { reason } if out.is_empty() => {
                format!("failed: {reason}")
            }
            crate::steps::StepOutcome::Failed { reason } => format!("failed: {reason}\n{out}"),
            crate::steps::StepOutcome::Cancelled => "cancelled".to_owned(),
        };
        crate::redact::global().redact(&out).into_owned()
    }

    /// `!logs <run> [step]`: the end of the run's step logs.
    fn logs(&self, args: &[String]) -> String {
        let Some(id) = args.first() else {
            return "usage: !logs <run> [step]".to_owned();
        };
        let store = &self.ctx.engine.store;
        let run = match store.find_run(id) {
            Ok(r) => r,
            Err(e) => return format!("{e}"),
        };
        let steps = match store.steps(&run.id) {
            Ok(s) => s,
            Err(e) => return format!("cannot read run {}: {e}", run.id),
        };
        let step = args.get(1);
        if let Some(name) = step
            && !steps.iter().any(|s| &s.name == name)
        {
            return format!("run {} has no step `{name}`", run.id);
        }
        let mut out = String::new();
        for s in steps.iter().filter(|s| step.is_none_or(|n| *n == s.name)) {
            let text = s
                .log_path
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("==> {} ({}) <==\n", s.name, s.status));
            out.push_str(&text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push('\n');
            }
        }
        if out.is_empty() {
            return format!(
                "run {} has no step logs yet ({})",
                run.id,
                run.status.as_str()
            );
        }
        let chars = out.chars().count();
        if chars > MAX_LOG_REPLY {
            let tail: String = out.chars().skip(chars - MAX_LOG_REPLY).collect();
            out = format!(
                "… (the start is left out; `claw run logs {}` shows everything)\n{tail}",
                run.id
            );
        }
        crate::redact::global().redact(&out).into_owned()
    }

    /// `/skills`: the skills `/run` can start, and (the seed's) a button per skill that runs
    /// it (`skill:<name>`, for the names that fit Telegram's 64 bytes of callback data).
    fn skills(&self) -> (String, Option<serde_json::Value>) {
        let cat = crate::skills::discover(&self.ctx.engine.dirs);
        if cat.skills.is_empty() {
            return ("No skills installed.".to_owned(), None);
        }
        let mut out = "Skills (run one with /run <skill> [key=value …]):".to_owned();
        let mut rows = Vec::new();
        for s in &cat.skills {
            out.push_str(&format!("\n{} — {}", s.name(), s.manifest.description));
            let data = format!("{SKILL_BUTTON}{}", s.name());
            if data.len() <= 64 && rows.len() < 50 {
                rows.push(serde_json::json!([{"text": s.name(), "callback_data": data}]));
            }
        }
        let markup = serde_json::json!({"reply_markup": {"inline_keyboard": rows}});
        (out, Some(markup))
    }

    /// A press of a gate's Approve or Reject button: a vote as `telegram:<user id>` by the CLI's
    /// rules, answered with a notice (a refusal with an alert, audited by the engine); once the
    /// gate is decided, its announcements are edited to show the outcome.
    async fn press(self: Rc<Self>, creds: &Creds, cb: Callback) {
        let mut run = None;
        let (text, alert) = match cb.data.strip_prefix(SKILL_BUTTON) {
            Some(name) => self.skill_press(creds, &cb, name, &mut run),
            None => self.press_answer(creds, &cb),
        };
        let Some(token) = creds.get("TELEGRAM_BOT_TOKEN") else {
            return;
        };
        let api = creds
            .get("TELEGRAM_API_URL")
            .unwrap_or("https://api.telegram.org")
            .trim_end_matches('/');
        let r =
            inbound::telegram_answer_callback(&self.client, api, token, &cb.id, &text, alert).await;
        if let Err(e) = r {
            let e = crate::redact::global().redact(&e).into_owned();
            tracing::warn!(target: DAEMON, "Telegram: {e}");
        }
        if let Some(skill) = run {
            let m = Inbound {
                channel: cb.channel.clone(),
                chat: cb.chat.clone(),
                user: cb.user.clone(),
                name: cb.name.clone(),
                text: format!("/run {}", cb.data.trim_start_matches(SKILL_BUTTON)),
                reply_to: None,
            };
            self.run_skill(creds, &m, skill, &[]).await;
        }
    }

    /// A `/skills` button: the skill runs (from an allowed chat) as `/run <skill>` does.
    fn skill_press(
        &self,
        creds: &Creds,
        cb: &Callback,
        name: &str,
        run: &mut Option<crate::skills::Skill>,
    ) -> (String, bool) {
        let admin = creds
            .get("TELEGRAM_ADMIN_CHAT_ID")
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let allowed = allowlist(creds.get("ALLOWED_CHAT_IDS"));
        let stored = self
            .ctx
            .engine
            .store
            .chat_access(&cb.channel, &cb.chat)
            .ok()
            .flatten();
        if access(stored.as_ref(), &allowed, admin, &cb.chat) != Access::Allowed {
            self.audit(
                &cb.identity(),
                crate::audit::Action::ChatAccess,
                &format!("{}:{}", cb.channel, cb.chat),
                "refused",
                serde_json::json!({"button": true}),
            );
            return ("Unauthorized".to_owned(), true);
        }
        match crate::skills::discover(&self.ctx.engine.dirs).get(name) {
            Some(s) => {
                *run = Some(s.clone());
                (format!("running {name}"), false)
            }
            None => (format!("no skill {name}"), true),
        }
    }

    fn press_answer(&self, creds: &Creds, cb: &Callback) -> (String, bool) {
        let store = &self.ctx.engine.store;
        let admin = creds
            .get("TELEGRAM_ADMIN_CHAT_ID")
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let allowed = allowlist(creds.get("ALLOWED_CHAT_IDS"));
        let stored = store.chat_access(&cb.channel, &cb.chat).ok().flatten();
        let where_ = format!("{}:{}", cb.channel, cb.chat);
        let who = cb.identity();
        if access(stored.as_ref(), &allowed, admin, &cb.chat) != Access::Allowed {
            self.audit(
                &who,
                crate::audit::Action::ChatAccess,
                &where_,
                "refused",
                serde_json::json!({"button": true}),
            );
            return ("Unauthorized".to_owned(), true);
        }
        let Some((approve, id)) = cb.gate_button() else {
            return ("This button does nothing here.".to_owned(), false);
        };
        self.audit(
            &who,
            crate::audit::Action::ChatCommand,
            &where_,
            "received",
            serde_json::json!({"command": if approve { "button:approve" } else { "button:reject" }}),
        );
        // The button is under one of claw's gate announcements, in this very chat.
        let sent = store
            .messages(&[id])
            .ok()
            .and_then(|v| v.into_iter().next());
        let gate = sent
            .as_ref()
            .filter(|m| m.channel == cb.channel && m.target == cb.chat);
        let Some((run_id, step)) = gate.and_then(|m| crate::msg::route::gate_of(&m.source)) else {
            return (
                "This button is not one of claw's approval requests.".to_owned(),
                true,
            );
        };
        let engine = &self.ctx.engine;
        let run = match engine.store.get_run(run_id) {
            Ok(Some(r)) => r,
            Ok(None) => return (format!("no run {run_id}"), true),
            Err(e) => return (format!("cannot read run {run_id}: {e}"), true),
        };
        let r = engine.vote(&run, step, &who, approve, None, &[]);
        engine.ring_changes();
        match r {
            Ok(crate::engine::approval::VoteResult::Recorded {
                decided: Some(d), ..
            }) => {
                let outcome = crate::engine::approval::describe(&d);
                self.show_decision(&run.id, step, &outcome);
                (format!("step `{step}` {outcome}"), false)
            }
            Ok(crate::engine::approval::VoteResult::Recorded {
                decided: None,
                approvals,
                quorum,
            }) => (
                format!("approved: {approvals} of {quorum} approvals, waiting for more"),
                false,
            ),
            Err(e) => {
                // Decided already (elsewhere, or by its deadline): the buttons go.
                if let Ok(Some(a)) = engine.store.approval(&run.id, step)
                    && let Some(res) = crate::engine::approval::resolve(&a, crate::time::now_ms())
                {
                    let outcome = crate::engine::approval::describe(&res);
                    self.show_decision(&run.id, step, &outcome);
                }
                (format!("refused: {e}"), true)
            }
        }
    }

    /// Edits every announcement of the gate sent with buttons: the text plus the outcome, the
    /// buttons gone. Through the outbox (an edit survives an outage like a message).
    fn show_decision(&self, run_id: &str, step: &str, outcome: &str) {
        let store = &self.ctx.engine.store;
        let source = format!("run:{run_id}/{step}/gate");
        let sent = match store.messages_from(&source) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(target: DAEMON, "run {run_id}: the approval requests are not edited: {e}");
                return;
            }
        };
        let note = format!(
            "\n\n{} step `{step}` {outcome}",
            if outcome.starts_with("approved") || outcome.ends_with(": approved") {
                "✅"
            } else {
                "❌"
            }
        );
        let mut rows = Vec::new();
        for m in sent
            .iter()
            .filter(|m| m.status == "sent" && m.extra.is_some())
        {
            let Some(message_id) = m
                .provider_id
                .as_deref()
                .and_then(|p| p.strip_prefix("message_id="))
            else {
                continue;
            };
            let keep = inbound::MAX_TEXT.saturating_sub(note.chars().count());
            let body: String = m.body.chars().take(keep).collect();
            rows.push(crate::store::NewMessage {
                channel: m.channel.clone(),
                target: m.target.clone(),
                body: format!("{body}{note}"),
                source: format!("run:{run_id}/{step}/decided"),
                extra: Some(serde_json::json!({ "edit": message_id }).to_string()),
            });
        }
        if rows.is_empty() {
            return;
        }
        if let Err(e) = store.enqueue_messages(&rows, crate::time::now_ms()) {
            tracing::warn!(target: DAEMON, "run {run_id}: the approval requests are not edited: {e}");
        }
        self.ctx.outbox_bell.notify_one();
    }
}

/// The prefix of a `/skills` button's callback data (the seed's `skill:<name>`).
const SKILL_BUTTON: &str = "skill:";

/// How long a trigger's command may run (the seed's 120 s).
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a run's logs `!logs` sends (the end is kept).
const MAX_LOG_REPLY: usize = 3500;

/// Tells each chat waiting for a run (`!run`, a command trigger, a workflow trigger) its
/// outcome once the run ends. The watches are in the store: a run that ends while the daemon
/// is down, or after a restart, is still told, once (the watch is removed in the transaction
/// that queues the message).
///
/// While some chat waits it looks every 100 ms; with none it sleeps until a chat starts waiting
/// here (the bell) or, for watches another daemon of a shared store added, 10 s.
pub(super) async fn watch_outcomes(ctx: Rc<Ctx>) {
    let mut idle = false;
    loop {
        let pause = if idle {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(100)
        };
        tokio::select! {
            () = ctx.intake.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            () = ctx.watch_bell.notified() => {}
        }
        let store = &ctx.engine.store;
        let Ok(watches) = store.run_watches() else {
            continue;
        };
        idle = watches.is_empty();
        if idle {
            continue;
        }
        let creds = crate::msg::route::creds(&ctx.engine.dirs);
        let mut told = false;
        for w in watches {
            let text = match store.get_run(&w.run_id) {
                Ok(Some(r)) if r.status.is_finished() => {
                    let mut text = format!("run {} of {} {}", r.id, w.workflow, r.status.as_str());
                    if let Some(e) = r.error {
                        text.push_str(&format!(": {e}"));
                    }
                    Some(text)
                }
                Ok(Some(_)) => continue,
                // Gone (pruned): nothing to tell.
                Ok(None) => None,
                Err(_) => continue,
            };
            let target = Target {
                channel: w.channel.clone(),
                target: w.chat.clone(),
            };
            let source = format!("chat:{}:{}", w.channel, w.chat);
            let rows = match text {
                Some(t) => crate::msg::outbox::rows(&creds, &[target], &t, &source, None)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            match store.end_watch(&w.run_id, &rows, crate::time::now_ms()) {
                Ok(ids) => told |= !ids.is_empty(),
                Err(e) => {
                    tracing::warn!(target: DAEMON, "run {}: the outcome is not queued yet: {e}", w.run_id);
                }
            }
        }
        if told {
            ctx.outbox_bell.notify_one();
        }
    }
}

/// Chat words as params: `key=value` by name (a declared param), other words for the declared
/// params in order (those not named). Bound and checked by the launcher like `-p`.
pub fn params_of(
    wf: &crate::workflow::Workflow,
    words: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut given: Vec<(String, String)> = Vec::new();
    let mut positional = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if wf.params.iter().any(|p| p.name == k) => {
                given.push((k.to_owned(), v.to_owned()));
            }
            _ => positional.push(w.clone()),
        }
    }
    let mut free = wf
        .params
        .iter()
        .filter(|p| !given.iter().any(|(k, _)| *k == p.name))
        .map(|p| p.name.clone())
        .collect::<Vec<_>>()
        .into_iter();
    for w in positional {
        match free.next() {
            Some(p) => given.push((p, w)),
            None => return Err(format!("workflow {} takes no more params: {w}", wf.name)),
        }
    }
    Ok(given)
}

const HELP: &str = "claw commands:\n!help — this list\n!status — what claw is doing\n!runs — the latest runs\n!logs <run> [step] — a run's step logs\n!run <workflow> [key=value …] — start a workflow\n/skills — the skills\n/run <skill> [key=value …] — run a skill\n!<command> [args …] — a workflow with `triggers: [{command: …}]`\n!approve <run> [step] — approve a waiting step\n!reject <run> [step] [reason] — reject it\n!cancel <run> — stop a run\n/start — ask for access\nany other text — a conversation with the LLM (/mode chat|skill, /model PROVIDER|auto, /history, /reset, /cancel)";

/// What a text that is no command does. The one place a conversation (the LLM chat mode) plugs
/// in; for now a short hint.
pub fn route_text(m: &Inbound) -> String {
    if m.text.starts_with('!') || m.text.starts_with('/') {
        let (cmd, _) = split_command(&m.text);
        return format!("Unknown command {cmd}. Send !help for the commands.");
    }
    "I only understand commands for now. Send !help for the list.".to_owned()
}

/// The command word (lower-cased, any `@botname` removed) and the words after it. Quotes are
/// not special: the words are data.
pub fn split_command(text: &str) -> (String, Vec<String>) {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    let cmd = first.split('@').next().unwrap_or("").to_lowercase();
    (cmd, words.map(str::to_owned).collect())
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
