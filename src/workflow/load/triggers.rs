//! The `triggers:` key of a workflow file (see [`crate::workflow::trigger`]).

use super::{Cx, Diagnostic, Node, Pos, Value, did_you_mean};
use crate::workflow::trigger::Method;
use crate::workflow::trigger::{SecretRef, Trigger, WebhookTrigger};

const TRIGGER_KINDS: &[&str] = &["webhook", "command"];
const WEBHOOK_KEYS: &[&str] = &["name", "verify", "secret"];

impl Cx<'_> {
    pub(super) fn triggers(&mut self, node: &Node) -> Vec<Trigger> {
        let Value::Seq(items) = &node.value else {
            if node.value != Value::Null {
                self.err(
                    node.pos,
                    format!(
                        "`triggers` must be a list (e.g. `- webhook: {{name: …, verify: …, secret: …}}`), found {}",
                        node.kind()
                    ),
                );
            }
            return Vec::new();
        };
        let mut out: Vec<Trigger> = Vec::new();
        for item in items {
            let entries = self.entries(item, TRIGGER_KINDS, "a trigger");
            if entries.len() != 1 {
                if entries.len() > 1 {
                    self.err(
                        item.pos,
                        "a trigger has exactly one kind (`webhook:` or `command:`); write one list item per trigger",
                    );
                } else if matches!(item.value, Value::Map(ref m) if m.is_empty()) {
                    self.err(
                        item.pos,
                        "empty trigger (expected `webhook:` or `command:`)",
                    );
                }
                continue;
            }
            let (kind, value) = entries[0];
            match kind {
                "webhook" => {
                    if let Some(w) = self.webhook(value, item.pos) {
                        let dup = out
                            .iter()
                            .any(|t| matches!(t, Trigger::Webhook(o) if o.name == w.name));
                        if dup {
                            self.err(w.pos, format!("webhook `{}` is declared twice", w.name));
                        } else {
                            out.push(Trigger::Webhook(w));
                        }
                    }
                }
                "command" => {
                    if let Some(name) = self.string(value, "command") {
                        let name = name.trim_start_matches('!').to_owned();
                        if name.is_empty() || name.contains(char::is_whitespace) {
                            self.err(
                                value.pos,
                                "`command` must be one word (the `!command` of chat)",
                            );
                        } else {
                            out.push(Trigger::Command {
                                name,
                                pos: value.pos,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn webhook(&mut self, node: &Node, item_pos: Pos) -> Option<WebhookTrigger> {
        let entries = self.entries(node, WEBHOOK_KEYS, "`webhook`");
        if !matches!(node.value, Value::Map(_)) {
            return None;
        }
        let mut name = None;
        let mut verify = None;
        let mut secret = None;
        let mut ok = true;
        for (k, v) in entries {
            match k {
                "name" => {
                    let n = self.string(v, "name")?;
                    if n.is_empty()
                        || n.len() > 100
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    {
                        self.err(
                            v.pos,
                            format!("webhook name `{n}` must be 1 to 100 letters, digits, `-`, `_` or `.` (it is a URL path segment)"),
                        );
                        ok = false;
                    } else {
                        name = Some(n);
                    }
                }
                "verify" => {
                    let m = self.string(v, "verify")?;
                    match Method::parse(&m) {
                        Some(method) => verify = Some(method),
                        None => {
                            self.err_help(
                                v.pos,
                                format!("unknown webhook verification `{m}` (expected hmac-sha256, slack, telegram or bearer)"),
                                did_you_mean(&m, Method::ALL.iter().map(|m| m.as_str())),
                            );
                            ok = false;
                        }
                    }
                }
                "secret" => {
                    if v.value == Value::Null {
                        continue;
                    }
                    let s = self.string(v, "secret")?;
                    match parse_secret(&s) {
                        Ok(r) => secret = r,
                        Err(why) => {
                            self.diags.push(
                                Diagnostic::error(v.pos, why)
                                    .with_help("write `secret: ${{ secrets.NAME }}` and store it with `claw vault set NAME`"),
                            );
                            ok = false;
                        }
                    }
                }
                _ => {}
            }
        }
        if name.is_none() && ok && node.get("name").is_none() {
            self.err(
                item_pos,
                "the webhook has no `name` (its URL is /hooks/<name>)",
            );
        }
        if verify.is_none() && ok && node.get("verify").is_none() {
            self.err(
                item_pos,
                "the webhook has no `verify` (expected hmac-sha256, slack, telegram or bearer)",
            );
        }
        Some(WebhookTrigger {
            name: name?,
            verify: verify?,
            secret,
            pos: node.pos,
        })
    }
}

/// `${{ secrets.NAME }}` → the vault key; any other text → a literal; an empty text → none.
fn parse_secret(s: &str) -> Result<Option<SecretRef>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if !t.contains("${{") {
        return Ok(Some(SecretRef::Literal(crate::vault::Secret::new(
            t.to_owned(),
        ))));
    }
    let inner = t
        .strip_prefix("${{")
        .and_then(|r| r.strip_suffix("}}"))
        .map(str::trim)
        .and_then(|r| r.strip_prefix("secrets."))
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    match inner {
        Some(name) => Ok(Some(SecretRef::Vault(name.to_owned()))),
        None => Err(format!(
            "`secret` must be `${{{{ secrets.NAME }}}}` or a literal value, found `{t}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::workflow::load::load_str;
    use crate::workflow::trigger::Method;
    use crate::workflow::trigger::{SecretRef, Trigger};

    const STEPS: &str = "steps:\n  - name: s\n    command: 'true'\n";

    #[test]
    fn webhooks_and_commands_load() {
        let wf = load_str(
            Path::new("wf.yaml"),
            format!("{STEPS}triggers:\n  - webhook:\n      name: gh\n      verify: hmac-sha256\n      secret: ${{{{ secrets.GH }}}}\n  - webhook: {{name: open, verify: bearer}}\n  - command: '!deploy'\n"),
        )
        .unwrap();
        let [
            Trigger::Webhook(gh),
            Trigger::Webhook(open),
            Trigger::Command { name, .. },
        ] = wf.triggers.as_slice()
        else {
            panic!("{:?}", wf.triggers)
        };
        assert_eq!(gh.verify, Method::HmacSha256);
        assert!(matches!(&gh.secret, Some(SecretRef::Vault(k)) if k == "GH"));
        assert!(open.secret.is_none());
        assert_eq!(open.warnings().len(), 1);
        assert_eq!(name, "deploy");
    }

    #[test]
    fn every_problem_is_reported() {
        let err = load_str(
            Path::new("wf.yaml"),
            format!("{STEPS}triggers:\n  - webhook:\n      name: a b\n      verify: hmac\n      secret: ${{{{ env.X }}}}\n  - webhok: {{}}\n  - webhook: {{verify: slack}}\n"),
        )
        .unwrap_err();
        let got: Vec<String> = err
            .diagnostics
            .iter()
            .map(crate::diagnostic::Diagnostic::headline)
            .collect();
        assert_eq!(
            got,
            vec![
                "wf.yaml:6:13: webhook name `a b` must be 1 to 100 letters, digits, `-`, `_` or `.` (it is a URL path segment)",
                "wf.yaml:7:15: unknown webhook verification `hmac` (expected hmac-sha256, slack, telegram or bearer)",
                "wf.yaml:8:15: `secret` must be `${{ secrets.NAME }}` or a literal value, found `${{ env.X }}`",
                "wf.yaml:9:5: unknown key `webhok` in a trigger",
                "wf.yaml:10:5: the webhook has no `name` (its URL is /hooks/<name>)",
            ]
        );
        assert_eq!(
            err.diagnostics[3].help.as_deref(),
            Some("did you mean `webhook`?")
        );
    }
}
