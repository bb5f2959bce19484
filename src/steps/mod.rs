//! Step kinds: one module each, and the one interface every kind implements ([`Kind`]).
//!
//! A kind's module owns everything about it: the `type:` names it answers to (the seed's
//! aliases among them), the keys it accepts, its typed model and how that is loaded from the
//! YAML tree (with diagnostics), whether running it twice is harmless by default, how its input is
//! prepared from the run's context (rendering its expressions in its own way: shell-quoted for a
//! command, plain for a URL), and how one attempt runs. [`StepKind`] is the closed set of kinds;
//! every operation on a step is one `match` over it here, so adding a kind is one module, one
//! variant (and its line in `each_kind!`), a docs page and tests — the compiler lists every
//! place that must know about it. ARCHITECTURE.md has the recipe.
//!
//! Steps never touch the store. A kind that waits on the store instead of a process (an
//! approval gate, a child run) does so through [`Services`], a capability the engine lends it at
//! run time; the engine records what every step reports. A failed step is an outcome
//! ([`StepOutcome::Failed`]), not an `Err`.

pub mod approval;
pub mod browser;
pub mod http;
pub mod llm;
pub mod llm_tools;
pub mod memory;
pub mod notify;
pub mod shell;
pub mod skill;
pub mod ssh;
pub mod subworkflow;
pub mod unavailable;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Dirs;
use crate::diagnostic::did_you_mean;
use crate::expr::Evaluator;
use crate::redact::Redactor;
use crate::yaml::{Node, Reader, Value};

/// What every step kind provides. One module per kind implements it; [`StepKind`] delegates.
pub trait Kind: Sized + Clone + std::fmt::Debug {
    /// The `type:` names the kind answers to: its own first, then the seed's aliases.
    const NAMES: &'static [&'static str];
    /// The keys it accepts besides [`COMMON_KEYS`].
    const KEYS: &'static [&'static str];

    /// Reads the kind's fields from the step's mapping (`command` included: each kind says what
    /// the seed's `command:` means for it). Every problem goes to `cx`; `None` when the step
    /// cannot be built (the file fails anyway).
    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self>;

    /// Whether running it twice is harmless when the step does not say (`idempotent:`): it
    /// decides what happens to an attempt that a crash interrupted.
    fn idempotent(&self) -> bool {
        false
    }

    /// The canonical `type:` name.
    fn type_name(&self) -> &str {
        Self::NAMES[0]
    }

    /// What a dry run and `claw workflow show` say it does.
    fn describe(&self) -> String;

    /// What a dry run records instead of running it; `later` notes a condition decided at run
    /// time.
    fn dry_run(&self, type_name: &str, later: &str) -> String {
        format!(
            "dry-run: would execute {type_name}: {}{later}",
            self.describe()
        )
    }

    /// Every string of the step that may hold `${{ }}` expressions (to find the secrets it
    /// names, and whether it needs the run's context at all).
    fn templates(&self) -> Vec<&str>;

    /// Whether the kind only waits on the store (an approval request, a child run): starting it
    /// again after an interruption just finds its request or child again, and a daemon that
    /// stops puts such a step aside at once.
    fn waits(&self) -> bool {
        false
    }

    /// What an attempt interrupted by a crash had done, read back from what it kept beside its
    /// log at `log_path` (an `ssh` step: the hosts that had finished and those that had not),
    /// for the decision the run then waits for.
    fn interrupted_note(&self, _log_path: &std::path::Path) -> Option<String> {
        None
    }

    /// A copy with every expression rendered for this attempt, and whatever the attempt needs
    /// looked up (a skill's launch). An `Err` fails the attempt before anything starts.
    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String>;

    /// The limit of a prepared attempt when the kind decides it rather than the step's
    /// `timeout:` (a skill's manifest does, unless the step sets one).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// The audit entry of an attempt's end, for kinds whose runs are audited as such (a skill
    /// run is `skill.run`, whoever starts it). `outcome` is `ok`, `failed`, `cancelled` or
    /// `refused` (it could not start).
    fn audit(&self, _attempt: &AttemptAudit<'_>) -> Option<crate::audit::Event> {
        None
    }

    /// Runs one attempt of the prepared step.
    fn run(&self, input: &StepInput, rt: &Runtime) -> impl Future<Output = StepReport> + Send;

    /// What keeps it from running on this machine (`claw workflow validate --env`): a missing
    /// program, skill or directory. Validation of the file itself is pure and done by `load`.
    fn environment_problems(&self, _dirs: &Dirs) -> Vec<String> {
        Vec::new()
    }

    /// Fields `claw workflow show --json` adds for this kind (`command`, `skill`, ...).
    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }

    /// What the command policies ([`crate::policy`]) look at before a prepared attempt runs:
    /// the commands it will run, as rendered, and the local files it sends away. Kinds that run
    /// no command have none.
    fn policy_subjects(&self) -> Vec<crate::policy::Subject> {
        Vec::new()
    }

    /// Whether the kind passes [`Runtime::start_gate`] itself, just before its first effect
    /// outside claw (the shell kind: when its process starts), so that what it prepares before
    /// overlaps the engine's sync. Otherwise [`run`] passes it before the kind runs.
    fn passes_start_gate(&self) -> bool {
        false
    }
}

/// What a step does: one variant per kind.
#[derive(Debug, Clone)]
pub enum StepKind {
    Shell(shell::ShellStep),
    Http(http::HttpStep),
    /// Runs a skill from `skills/` (`type: skill`).
    Skill(skill::SkillStep),
    /// A durable approval gate (`type: approval`, seed `approval_gate`).
    Approval(approval::ApprovalStep),
    /// Runs another workflow as a child run (`type: workflow`).
    Workflow(subworkflow::SubWorkflowStep),
    /// A command on the hosts of a target (`type: ssh`).
    Ssh(ssh::SshStep),
    /// Asks an LLM provider (`type: llm`, seed `claude_prompt`).
    Llm(llm::LlmStep),
    /// Remembers, recalls, searches or forgets in memory.db (`type: memory`).
    Memory(memory::MemoryStep),
    /// A message through the outbox (`type: notify`).
    Notify(notify::NotifyStep),
    /// Actions in a tab of headless Chromium (`type: browser`).
    Browser(browser::BrowserStep),
    /// A kind claw recognises but cannot run yet (`llm`, `ssh`, ...).
    Unavailable(unavailable::Unavailable),
}

/// Applies `$body` to the kind inside any [`StepKind`], bound to `$k`. The second form wraps
/// `$body`'s `Ok`/`Some` value back into the same variant.
macro_rules! each_kind {
    ($value:expr, $k:ident => $body:expr) => {
        match $value {
            StepKind::Shell($k) => $body,
            StepKind::Http($k) => $body,
            StepKind::Skill($k) => $body,
            StepKind::Approval($k) => $body,
            StepKind::Workflow($k) => $body,
            StepKind::Ssh($k) => $body,
            StepKind::Llm($k) => $body,
            StepKind::Memory($k) => $body,
            StepKind::Notify($k) => $body,
            StepKind::Browser($k) => $body,
            StepKind::Unavailable($k) => $body,
        }
    };
    ($value:expr, $k:ident => $body:expr, same_variant) => {
        match $value {
            StepKind::Shell($k) => $body.map(StepKind::Shell),
            StepKind::Http($k) => $body.map(StepKind::Http),
            StepKind::Skill($k) => $body.map(StepKind::Skill),
            StepKind::Approval($k) => $body.map(StepKind::Approval),
            StepKind::Workflow($k) => $body.map(StepKind::Workflow),
            StepKind::Ssh($k) => $body.map(StepKind::Ssh),
            StepKind::Llm($k) => $body.map(StepKind::Llm),
            StepKind::Memory($k) => $body.map(StepKind::Memory),
            StepKind::Notify($k) => $body.map(StepKind::Notify),
            StepKind::Browser($k) => $body.map(StepKind::Browser),
            StepKind::Unavailable($k) => $body.map(StepKind::Unavailable),
        }
    };
}

/// Loads one kind's fields into a [`StepKind`].
type Loader = fn(&mut LoadCx<'_>, &Node) -> Option<StepKind>;

/// Every `type:` claw knows, in the order DESIGN.md lists them: its names (canonical first,
/// then the seed's aliases), its keys, its loader. A kind not built yet loads as
/// [`unavailable::Unavailable`] through its [`unavailable::Planned`] row.
const KINDS: &[Row] = &[
    (shell::ShellStep::NAMES, shell::ShellStep::KEYS, |cx, n| {
        shell::ShellStep::load(cx, n).map(StepKind::Shell)
    }),
    (llm::LlmStep::NAMES, llm::LlmStep::KEYS, |cx, n| {
        llm::LlmStep::load(cx, n).map(StepKind::Llm)
    }),
    (skill::SkillStep::NAMES, skill::SkillStep::KEYS, |cx, n| {
        skill::SkillStep::load(cx, n).map(StepKind::Skill)
    }),
    (http::HttpStep::NAMES, http::HttpStep::KEYS, |cx, n| {
        http::HttpStep::load(cx, n).map(StepKind::Http)
    }),
    (ssh::SshStep::NAMES, ssh::SshStep::KEYS, |cx, n| {
        ssh::SshStep::load(cx, n).map(StepKind::Ssh)
    }),
    (
        browser::BrowserStep::NAMES,
        browser::BrowserStep::KEYS,
        |cx, n| browser::BrowserStep::load(cx, n).map(StepKind::Browser),
    ),
    (
        approval::ApprovalStep::NAMES,
        approval::ApprovalStep::KEYS,
        |cx, n| approval::ApprovalStep::load(cx, n).map(StepKind::Approval),
    ),
    (
        notify::NotifyStep::NAMES,
        notify::NotifyStep::KEYS,
        |cx, n| notify::NotifyStep::load(cx, n).map(StepKind::Notify),
    ),
    (
        subworkflow::SubWorkflowStep::NAMES,
        subworkflow::SubWorkflowStep::KEYS,
        |cx, n| subworkflow::SubWorkflowStep::load(cx, n).map(StepKind::Workflow),
    ),
    planned(unavailable::Planned::AutoAgent),
    (
        memory::MemoryStep::NAMES,
        memory::MemoryStep::KEYS,
        |cx, n| memory::MemoryStep::load(cx, n).map(StepKind::Memory),
    ),
];

/// The row of a kind not built yet.
const fn planned(kind: unavailable::Planned) -> Row {
    (kind.names(), kind.keys(), |cx, n| {
        unavailable::Unavailable::load(cx, n).map(StepKind::Unavailable)
    })
}

/// Keys every step accepts, whatever its kind.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "needs",
    "if",
    "condition",
    "on_failure",
    "retry",
    "timeout",
    "env",
    "args",
    "rollback",
    "idempotent",
    "description",
    "command",
];

/// Every name `type:` accepts, seed aliases included.
pub fn type_names() -> Vec<&'static str> {
    KINDS
        .iter()
        .flat_map(|(names, _, _)| names.iter().copied())
        .collect()
}

type Row = (&'static [&'static str], &'static [&'static str], Loader);

fn row(name: &str) -> Option<&'static Row> {
    KINDS.iter().find(|(names, _, _)| names.contains(&name))
}

/// The keys a step of type `name` accepts beside [`COMMON_KEYS`] (`None`: no such type).
pub fn keys_of(name: &str) -> Option<&'static [&'static str]> {
    row(name).map(|(_, keys, _)| *keys)
}

/// The canonical name of a type (`llm` for the seed's `claude_prompt`).
pub fn canonical_type(name: &str) -> Option<&'static str> {
    row(name).map(|(names, _, _)| names[0])
}

impl StepKind {
    /// Loads the kind named `type_name` (`None` with diagnostics; also for an unknown type,
    /// which [`keys_of`] tells first).
    pub fn load(type_name: &str, cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let (_, _, load) = row(type_name)?;
        load(cx, node)
    }

    /// The kind's canonical `type:` name (as written, for a kind not available yet).
    pub fn type_name(&self) -> &str {
        each_kind!(self, k => k.type_name())
    }

    pub fn idempotent(&self) -> bool {
        each_kind!(self, k => k.idempotent())
    }

    pub fn describe(&self) -> String {
        each_kind!(self, k => k.describe())
    }

    pub fn dry_run(&self, later: &str) -> String {
        let name = self.type_name();
        each_kind!(self, k => k.dry_run(name, later))
    }

    pub fn templates(&self) -> Vec<&str> {
        each_kind!(self, k => k.templates())
    }

    pub fn waits(&self) -> bool {
        each_kind!(self, k => k.waits())
    }

    pub fn interrupted_note(&self, log_path: &std::path::Path) -> Option<String> {
        each_kind!(self, k => k.interrupted_note(log_path))
    }

    pub fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        each_kind!(self, k => k.prepare(cx), same_variant)
    }

    pub fn environment_problems(&self, dirs: &Dirs) -> Vec<String> {
        each_kind!(self, k => k.environment_problems(dirs))
    }

    pub fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        each_kind!(self, k => k.show())
    }

    pub fn timeout(&self) -> Option<Duration> {
        each_kind!(self, k => k.timeout())
    }

    pub fn audit(&self, attempt: &AttemptAudit<'_>) -> Option<crate::audit::Event> {
        each_kind!(self, k => k.audit(attempt))
    }

    pub fn policy_subjects(&self) -> Vec<crate::policy::Subject> {
        each_kind!(self, k => k.policy_subjects())
    }

    pub fn passes_start_gate(&self) -> bool {
        each_kind!(self, k => k.passes_start_gate())
    }
}

/// Runs one attempt of a prepared step, after the command policies allowed it: a `deny` rule
/// fails it (naming the rule) before anything starts; a `require_approval` rule makes it an
/// approval gate in its run (the engine's approval request, decided by `claw run approve`), and
/// without a run (a watcher action) refuses it, naming the rule.
pub async fn run(input: &StepInput, rt: &Runtime) -> StepReport {
    if let Some(refused) = policy_gate(input, rt).await {
        return refused;
    }
    if !input.kind.passes_start_gate() {
        rt.start_gate.passed().await;
    }
    each_kind!(&input.kind, k => k.run(input, rt).await)
}

/// The policy check of an attempt: `None` lets it run.
async fn policy_gate(input: &StepInput, rt: &Runtime) -> Option<StepReport> {
    use crate::policy::Gate;
    let subjects = input.kind.policy_subjects();
    let place = if rt.services.is_some() {
        "workflow step"
    } else {
        "action"
    };
    let target = format!("{}/{}", input.run_id, input.step);
    match crate::policy::gate(place, "engine", &target, &subjects) {
        Gate::Allow => None,
        Gate::Deny(why) => Some(StepReport::failed_for_good(input.redactor.redact(&why))),
        Gate::RequireApproval { rule, message } => {
            let message = input.redactor.redact(&message).into_owned();
            let Some(services) = &rt.services else {
                return Some(StepReport::failed_for_good(
                    crate::policy::refuse_without_run(&rule, &message),
                ));
            };
            let request = approval::GateRequest {
                message: message.clone(),
                approvers: Vec::new(),
                quorum: 1,
                timeout: None,
                on_timeout: approval::TimeoutDecision::Reject,
                input: serde_json::json!([]),
            };
            match services.await_approval(input, request, &rt.cancel).await {
                Ok(approval::Resolution::Approved { .. })
                | Ok(approval::Resolution::TimedOut { approve: true, .. }) => None,
                Ok(other) => Some(StepReport::failed_for_good(format!(
                    "{message}: {}",
                    approval::describe(&other)
                ))),
                Err(WaitEnd::Cancelled) => Some(StepReport::cancelled()),
                Err(WaitEnd::Failed(why)) => Some(StepReport::failed(why)),
            }
        }
    }
}

/// What a kind's loader works with: the diagnostics of the file, expression checks, and what
/// the generic step loader already read.
#[derive(Debug)]
pub struct LoadCx<'a> {
    pub r: &'a mut Reader,
    pub eval: &'a Evaluator,
    /// The step's name, for messages.
    pub step: &'a str,
    /// Its `type:` as written (`approval_gate`).
    pub type_name: &'a str,
    /// The step's own `timeout:`, when it has one.
    pub timeout: Option<Duration>,
}

impl LoadCx<'_> {
    /// Checks the `${{ }}` expressions in a string value.
    pub fn template(&mut self, node: &Node, text: &str) {
        for e in self.eval.check_template(text) {
            self.r.err(node.pos, format!("invalid expression: {e}"));
        }
    }

    /// Checks the expressions of a shell command, also refusing places where no value could
    /// ever be quoted safely.
    pub fn shell_template(&mut self, node: &Node, text: &str) {
        for e in self.eval.check_shell_template(text) {
            self.r.err(node.pos, format!("invalid expression: {e}"));
        }
    }

    /// Checks every string under a node for expressions.
    pub fn templates_in(&mut self, node: &Node) {
        match &node.value {
            Value::Str(s) => self.template(node, s),
            Value::Seq(items) => items.iter().for_each(|n| self.templates_in(n)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| self.templates_in(v)),
            _ => {}
        }
    }

    /// A string field that may hold expressions: read and checked.
    pub fn template_string(&mut self, node: &Node, field: &str) -> Option<String> {
        let text = self.r.string(node, field)?;
        self.template(node, &text);
        Some(text)
    }
}

impl std::ops::Deref for LoadCx<'_> {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        self.r
    }
}

impl std::ops::DerefMut for LoadCx<'_> {
    fn deref_mut(&mut self) -> &mut Reader {
        self.r
    }
}

/// Reports an unknown `type:` (with the accepted names and a suggestion).
pub fn unknown_type(r: &mut Reader, node: &Node, written: &str) {
    let names = type_names();
    r.err_help(
        node.pos,
        format!(
            "unknown step type `{written}` (expected one of: {})",
            names.join(", ")
        ),
        did_you_mean(written, names.iter().copied()),
    );
}

/// What preparing an attempt works with: the run's expression context and secrets, where
/// things are, and the step's common fields already rendered.
pub struct PrepareCx<'a> {
    pub eval: &'a Evaluator,
    /// The run's context (`params`, `env`, `steps`, `run`, `trigger`, `secrets`); `None` when no
    /// field of the step holds an expression.
    pub context: Option<&'a minijinja::Value>,
    /// The secrets the step names, by vault key (their values reach a shell command through
    /// its environment, never its text).
    pub secrets: &'a BTreeMap<String, String>,
    /// How a secret's environment variable is named (`CLAW_SECRET_<KEY>`).
    pub secret_var: &'a dyn Fn(&str) -> String,
    pub dirs: &'a Dirs,
    /// The step's `args`, rendered.
    pub args: &'a [(String, String)],
    /// The file named by `$CLAW_OUTPUT`.
    pub outputs_path: &'a Path,
    /// Masks the run's secrets (a message shown to approvers is masked with it).
    pub redactor: &'a Redactor,
    /// Secret values the prepared step will hold (a skill's vault grants): the engine adds them
    /// to the run's redactor.
    pub new_secrets: Vec<String>,
}

impl std::fmt::Debug for PrepareCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrepareCx")
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field(
                "args",
                &self.args.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("outputs_path", &self.outputs_path)
            .finish_non_exhaustive()
    }
}

impl PrepareCx<'_> {
    /// Renders a field as plain text (a URL, a header, a message: not a shell command).
    pub fn plain(&self, text: &str) -> Result<String, String> {
        match self.context {
            Some(c) if crate::expr::has_expressions(text) => {
                self.eval.render_plain(text, c).map_err(|e| e.to_string())
            }
            _ => Ok(text.to_owned()),
        }
    }

    /// Renders a shell command: every value quoted for where it lands, a secret as a quoted
    /// reference to its environment variable.
    pub fn shell(&self, text: &str) -> Result<String, String> {
        match self.context {
            Some(c) if crate::expr::has_expressions(text) => self
                .eval
                .render_shell_with(text, c, &|name| {
                    self.secrets
                        .contains_key(name)
                        .then(|| (self.secret_var)(name))
                })
                .map_err(|e| e.to_string()),
            _ => Ok(text.to_owned()),
        }
    }
}

/// How an attempt ended, for [`Kind::audit`].
#[derive(Debug)]
pub struct AttemptAudit<'a> {
    /// Who started the run (`cli:alice`, `cron`, ...).
    pub actor: &'a str,
    pub run_id: &'a str,
    pub workflow: &'a str,
    pub step: &'a str,
    /// `ok`, `failed`, `cancelled`, or `refused` (it could not start).
    pub outcome: &'a str,
    /// Why it failed (masked).
    pub reason: &'a str,
    pub exit_code: Option<i32>,
}

/// What one attempt of a step is given, every expression already rendered.
#[derive(Debug, Clone)]
pub struct StepInput {
    /// The prepared step.
    pub kind: StepKind,
    /// The run this attempt belongs to.
    pub run_id: String,
    /// The step's record name (`deploy`, `rollback:undo`, `compensate:deploy`).
    pub step: String,
    pub attempt: u32,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub log_path: PathBuf,
    pub max_log_bytes: u64,
    /// The file named by `$CLAW_OUTPUT`.
    pub outputs_path: PathBuf,
    /// Masks secret values in everything the step's output turns into (log, stored output,
    /// outputs).
    pub redactor: Redactor,
}

impl StepInput {
    /// `run/step/attempt`: the same for every retry of nothing, different for each attempt
    /// (exported as `CLAW_IDEMPOTENCY_KEY`, sent as `Idempotency-Key`).
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}/{}", self.run_id, self.step, self.attempt)
    }
}

/// What the engine lends a step at run time.
#[derive(Clone)]
pub struct Runtime {
    /// Stops the attempt (the run is cancelled, timed out, or the daemon is shutting down).
    pub cancel: CancellationToken,
    /// What kinds that wait on the store use; `None` where no engine is around (a process run
    /// outside any workflow).
    pub services: Option<Arc<dyn Services>>,
    /// Open once the attempt's `running` record is on disk: nothing the attempt does outside
    /// claw may happen before (see [`Kind::passes_start_gate`]).
    pub start_gate: crate::proc::StartGate,
    /// Where a spare file for the next `$CLAW_OUTPUT` is made while this attempt's process runs
    /// ([`crate::fsutil::make_spare`]): the run's log directory, whose spare the engine removes
    /// when the run ends. `None`: no spare.
    pub spare_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cancelled", &self.cancel.is_cancelled())
            .field("services", &self.services.is_some())
            .finish()
    }
}

impl Runtime {
    /// A runtime with no engine behind it.
    pub fn detached(cancel: CancellationToken) -> Self {
        Self {
            cancel,
            services: None,
            start_gate: crate::proc::StartGate::default(),
            spare_dir: None,
        }
    }
}

/// A future the engine's services return (they are called through `dyn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The capability kinds that wait on the store get from the engine: it owns the store, records
/// every transition and audits; the kind says what it waits for and what the answer means.
pub trait Services: Send + Sync {
    /// Opens the approval request of this attempt (or finds it again after a restart: same
    /// request, same deadline), has the step and the run recorded as waiting, and waits until
    /// the request is decided or its deadline passes (a deadline's decision is recorded, dated
    /// at the deadline, also when claw was down then).
    fn await_approval<'a>(
        &'a self,
        input: &'a StepInput,
        request: approval::GateRequest,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<approval::Resolution, WaitEnd>>;

    /// Creates the child run of this attempt (or finds it again after a restart), has it
    /// executed by a process of its own, and — with `wait` — waits for its end (a cancel of
    /// this run cancels the child).
    fn await_child<'a>(
        &'a self,
        input: &'a StepInput,
        child: &'a subworkflow::SubWorkflowStep,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<subworkflow::ChildEnd, WaitEnd>>;

    /// A step that waited on a sub-gate of its own (an llm step's tool call, `STEP#KEY`) goes
    /// on: the step and the run are recorded as running again.
    fn gate_closed(&self, _input: &StepInput) {}

    /// Queues a notify step's message in the outbox and tries to deliver it for a short while
    /// (what is left, `claw serve` delivers); how its messages stand then.
    fn send_message<'a>(
        &'a self,
        input: &'a StepInput,
        step: &'a notify::NotifyStep,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<notify::Sent, WaitEnd>>;
}

/// Why a wait on the store ended without its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// The attempt was stopped (cancel, timeout, shutdown).
    Cancelled,
    /// It could not wait (the request is gone, the child does not load, ...).
    Failed(String),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Succeeded,
    Failed { reason: String },
    Cancelled,
}

/// What a step reports back to the engine.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub outcome: StepOutcome,
    pub exit_code: Option<i32>,
    /// stdout, kept up to [`crate::proc::STDOUT_CAPTURE`] bytes (the end is kept if longer).
    pub stdout: String,
    pub stderr_tail: String,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// What to say about a success (an approval's approvers, a child run's id).
    pub note: Option<String>,
    /// When the step ended, if not now (an approval decided by its deadline while claw was
    /// down is dated at the deadline).
    pub finished_at: Option<i64>,
    /// Whether another attempt could go differently (a failed step is retried, when its `retry`
    /// allows, only if this is true). An HTTP 400 is not worth retrying; a 503 is.
    pub retryable: bool,
    /// The wait the other side asked for before another attempt (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl StepReport {
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            outcome: StepOutcome::Failed {
                reason: reason.into(),
            },
            exit_code: None,
            stdout: String::new(),
            stderr_tail: String::new(),
            outputs: serde_json::Map::new(),
            note: None,
            finished_at: None,
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that another attempt would repeat.
    pub fn failed_for_good(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::failed(reason)
        }
    }

    /// A success with nothing to report yet.
    pub fn succeeded() -> Self {
        Self {
            outcome: StepOutcome::Succeeded,
            ..Self::failed("")
        }
    }

    /// The attempt was stopped.
    pub fn cancelled() -> Self {
        Self {
            outcome: StepOutcome::Cancelled,
            ..Self::failed("")
        }
    }
}
