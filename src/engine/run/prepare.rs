//! Preparing one attempt: the secrets a step names, the run's expression context, and the
//! step's [`StepInput`] (its kind prepares its own fields through [`crate::steps::PrepareCx`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Exec, file_name, json_str, rec_name};
use crate::expr::{has_expressions, secrets_in};
use crate::params::env_key;
use crate::steps::{PrepareCx, StepInput};
use crate::store::Phase;
use crate::workflow::Step;

impl Exec<'_> {
    /// The values of the secrets a step mentions (`${{ secrets.NAME }}` in any of its fields or
    /// the workflow's `env`), read from the vault; they join the run's redactor.
    fn load_secrets(
        &mut self,
        step: &Step,
        templates: &[&str],
    ) -> Result<BTreeMap<String, String>, String> {
        let mut names: Vec<String> = Vec::new();
        let mut add = |t: &str| {
            for n in secrets_in(t) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        };
        for (_, v) in self.wf.env.iter().chain(&step.env) {
            add(v);
        }
        for (_, v) in &step.args {
            add(&json_str(v));
        }
        templates.iter().for_each(|t| add(t));
        let mut out = BTreeMap::new();
        if names.is_empty() {
            return Ok(out);
        }
        let vault = crate::vault::Vault::new(&self.engine.dirs.home);
        for name in names {
            match vault.get(&name) {
                Ok(Some(secret)) => {
                    out.insert(name, secret.expose().to_owned());
                }
                Ok(None) => {
                    return Err(format!(
                        "secret `{name}` is not in the vault (store it with `claw vault set {name}`)"
                    ));
                }
                Err(e) => return Err(format!("cannot read secret `{name}`: {e}")),
            }
        }
        self.add_secret_values(out.values().cloned());
        Ok(out)
    }

    /// Secret values the run now holds: they are masked in everything recorded from now on.
    pub(super) fn add_secret_values(&mut self, values: impl IntoIterator<Item = String>) {
        let before = self.secret_values.len();
        self.secret_values.extend(values);
        if self.secret_values.len() != before {
            crate::redact::register_global(self.secret_values.iter().map(String::as_str));
            self.redactor =
                crate::redact::Redactor::new(self.secret_values.iter().map(String::as_str));
        }
    }

    /// [`Exec::context`] plus `secrets` (for fields other than shell commands).
    fn context_with(&mut self, secrets: &BTreeMap<String, String>) -> minijinja::Value {
        self.context_of(Some(secrets))
    }

    /// The expression context: params, env, steps, run, trigger.
    pub(super) fn context(&mut self) -> minijinja::Value {
        self.context_of(None)
    }

    /// Built from parts kept between steps (the environment, every step's entry), so that it
    /// costs the same at the thousandth step as at the first.
    fn context_of(&mut self, secrets: Option<&BTreeMap<String, String>>) -> minijinja::Value {
        use minijinja::Value;
        let env = self
            .base_env
            .get_or_insert_with(|| {
                let mut m: BTreeMap<String, Value> = crate::config::env::process_env()
                    .into_iter()
                    .filter_map(|(k, v)| {
                        Some((k.into_string().ok()?, v.into_string().ok()?.into()))
                    })
                    .collect();
                for (k, v) in &self.wf.env {
                    if !has_expressions(v) {
                        m.insert(k.clone(), Value::from(v.as_str()));
                    }
                }
                Value::from_object(m)
            })
            .clone();
        let steps = Value::from_dyn_object(self.steps_view());
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        ctx.insert(
            "params".into(),
            Value::from(minijinja::value::Serde(&self.run.params)),
        );
        ctx.insert("env".into(), env);
        ctx.insert("steps".into(), steps);
        ctx.insert(
            "trigger".into(),
            Value::from(minijinja::value::Serde(&self.run.trigger)),
        );
        ctx.insert(
            "run".into(),
            Value::from(minijinja::value::Serde(serde_json::json!({
                "id": self.run.id,
                "workflow": self.run.workflow,
                "created_at": self.run.created_at,
                "started_at": self.run.started_at,
                "dry_run": self.run.dry_run,
            }))),
        );
        ctx.insert(
            "memory".into(),
            Value::from_object(crate::memory::ExprView::new(
                &self.engine.dirs.home,
                &format!("run:{}", self.run.id),
            )),
        );
        if let Some(secrets) = secrets.filter(|s| !s.is_empty()) {
            ctx.insert(
                "secrets".into(),
                Value::from(minijinja::value::Serde(secrets)),
            );
        }
        Value::from_object(ctx)
    }

    /// Every main step's entry in the context (`steps.<name>`), made once and then kept up to
    /// date by [`Exec::record`].
    fn steps_view(&mut self) -> std::sync::Arc<BTreeMap<String, minijinja::Value>> {
        let view = self.steps_view.get_or_insert_with(|| {
            std::sync::Arc::new(
                self.wf
                    .steps
                    .iter()
                    .map(|s| (s.name.clone(), step_entry(self.recs.get(&s.name))))
                    .collect(),
            )
        });
        std::sync::Arc::clone(view)
    }

    /// Whether any field of the step (or the workflow's `env`) holds an expression: only then is
    /// the run's context built for it.
    fn needs_context(&self, step: &Step, templates: &[&str]) -> bool {
        step.if_expr.is_some()
            || self.wf.env.iter().any(|(_, v)| has_expressions(v))
            || step.env.iter().any(|(_, v)| has_expressions(v))
            || step.args.iter().any(|(_, v)| has_expressions(&json_str(v)))
            || templates.iter().any(|t| has_expressions(t))
    }

    /// Renders a step's fields into the input of one attempt.
    pub(super) fn prepare(
        &mut self,
        step: &Step,
        phase: Phase,
        attempt: u32,
    ) -> Result<StepInput, String> {
        let name = rec_name(phase, step);
        let seq = self.recs.get(&name).map_or(step.index as i64, |r| r.seq);
        let templates = step.kind.templates();
        let secrets = self.load_secrets(step, &templates)?;
        let ctx = if self.needs_context(step, &templates) {
            Some(self.context_with(&secrets))
        } else {
            None
        };
        let eval = &self.engine.eval;
        let plain = |text: &str| -> Result<String, String> {
            match &ctx {
                Some(c) if has_expressions(text) => {
                    eval.render_plain(text, c).map_err(|e| e.to_string())
                }
                _ => Ok(text.to_owned()),
            }
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in self.wf.env.iter().chain(&step.env) {
            env.push((
                k.clone(),
                plain(v).map_err(|e| format!("cannot render env `{k}`: {e}"))?,
            ));
        }
        let mut args = Vec::with_capacity(step.args.len());
        for (k, v) in &step.args {
            let text = plain(&json_str(v)).map_err(|e| format!("cannot render arg `{k}`: {e}"))?;
            env.push((env_key("WF_", k), text.clone()));
            args.push((k.clone(), text));
        }
        if let serde_json::Value::Object(params) = &self.run.params {
            for (k, v) in params {
                env.push((env_key("CLAW_PARAM_", k), json_str(v)));
            }
        }
        // Secrets reach a command through its environment, never its command line.
        for (k, v) in &secrets {
            env.push((env_key("CLAW_SECRET_", k), v.clone()));
        }
        let base = file_name(seq, &name);
        let outputs_path = self.log_dir.join(format!("{base}.{attempt}.out"));
        let settings = self.engine.settings();
        let mut input = StepInput {
            kind: step.kind.clone(),
            run_id: self.run.id.clone(),
            step: name.clone(),
            attempt,
            env,
            timeout: step.timeout,
            kill_grace: settings.kill_grace,
            log_path: self.log_dir.join(format!("{base}.log")),
            max_log_bytes: settings.max_step_log_bytes,
            outputs_path: PathBuf::new(),
            redactor: self.redactor.clone(),
        };
        input.env.extend([
            ("CLAW_RUN_ID".to_owned(), self.run.id.clone()),
            ("CLAW_WORKFLOW".to_owned(), self.wf.name.clone()),
            ("CLAW_STEP".to_owned(), name),
            ("CLAW_ATTEMPT".to_owned(), attempt.to_string()),
            ("CLAW_IDEMPOTENCY_KEY".to_owned(), input.idempotency_key()),
            ("CLAW_OUTPUT".to_owned(), outputs_path.display().to_string()),
        ]);
        let secret_var = |name: &str| env_key("CLAW_SECRET_", name);
        let mut cx = PrepareCx {
            eval,
            context: ctx.as_ref(),
            secrets: &secrets,
            secret_var: &secret_var,
            dirs: &self.engine.dirs,
            args: &args,
            outputs_path: &outputs_path,
            redactor: &self.redactor,
            new_secrets: Vec::new(),
        };
        input.kind = step.kind.prepare(&mut cx)?;
        let new_secrets = std::mem::take(&mut cx.new_secrets);
        if !new_secrets.is_empty() {
            // A skill's vault grants: masked in its output like every secret of the run.
            self.add_secret_values(new_secrets);
            input.redactor = self.redactor.clone();
        }
        if let Some(t) = input.kind.timeout() {
            input.timeout = t;
        }
        input.outputs_path = outputs_path;
        Ok(input)
    }
}

/// A step's entry in the expression context.
pub(super) fn step_entry(rec: Option<&crate::store::StepRecord>) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(match rec {
        Some(r) => serde_json::json!({
            "status": r.status.as_str(),
            "exit_code": r.exit_code,
            "stdout": r.stdout_tail,
            "outputs": r.outputs,
            "attempts": r.attempts,
        }),
        None => {
            serde_json::json!({"status": "pending", "exit_code": null, "stdout": "", "outputs": {}})
        }
    }))
}
