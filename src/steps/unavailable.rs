//! Step kinds claw recognises but cannot run yet. A file using one validates (its fields are
//! checked for expressions, so it keeps working when the kind arrives); a run reaching such a
//! step fails it with a clear "not available yet". Each kind leaves this list when its own
//! module arrives.

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport};
use crate::config::Dirs;
use crate::yaml::Node;

/// A kind that is planned but not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    AutoAgent,
}

impl Planned {
    pub const ALL: [Self; 1] = [Self::AutoAgent];

    /// Its `type:` names: its own first, then the seed's.
    pub const fn names(self) -> &'static [&'static str] {
        match self {
            Self::AutoAgent => &["auto_agent"],
        }
    }

    /// The keys it will take (accepted now, so files written for it validate).
    pub const fn keys(self) -> &'static [&'static str] {
        match self {
            Self::AutoAgent => &[],
        }
    }
}

/// A step of a planned kind.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub kind: Planned,
    /// The `type:` as written in the file.
    pub written: String,
    /// What it would do: its `command`, or its main field (`prompt`, `url`, ...).
    pub summary: String,
}

impl Unavailable {
    /// What a step holds while it is being loaded, and keeps if its kind's fields are wrong
    /// (the file fails anyway; later references to the step are then not reported as unknown).
    pub fn placeholder(written: &str) -> Self {
        Self {
            kind: Planned::AutoAgent,
            written: written.to_owned(),
            summary: String::new(),
        }
    }

    /// Reads a step of kind `kind`.
    fn load_planned(kind: Planned, cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let main_field = [
            "prompt", "url", "skill", "workflow", "message", "profile", "to",
        ]
        .iter()
        .find_map(|k| node.get(k).and_then(Node::scalar_text));
        let summary = node
            .get("command")
            .and_then(Node::scalar_text)
            .or(main_field)
            .or_else(|| {
                node.get("args")
                    .and_then(|a| a.get("prompt"))
                    .and_then(Node::scalar_text)
            })
            .unwrap_or_else(|| format!("{} step", kind.names()[0]));
        let has_fields = kind.keys().iter().any(|k| node.get(k).is_some());
        if node.get("command").is_none() && !has_fields {
            let step = cx.step.to_owned();
            cx.err(
                node.pos,
                format!(
                    "step `{step}` ({}) has nothing to do: give it `command` or the fields of its kind",
                    kind.names()[0]
                ),
            );
        }
        Some(Self {
            kind,
            written: cx.type_name.to_owned(),
            summary,
        })
    }
}

impl Kind for Unavailable {
    /// Answered through [`Planned::names`] instead (the enum is closed over several names).
    const NAMES: &'static [&'static str] = &[];
    const KEYS: &'static [&'static str] = &[];

    /// The planned kind is the one whose names hold the step's `type:`.
    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let kind = Planned::ALL
            .iter()
            .copied()
            .find(|p| p.names().contains(&cx.type_name))?;
        Self::load_planned(kind, cx, node)
    }

    fn type_name(&self) -> &str {
        &self.written
    }

    /// Nothing planned is known to be safe to repeat.
    fn idempotent(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.summary.clone()
    }

    fn templates(&self) -> Vec<&str> {
        Vec::new()
    }

    fn prepare(&self, _cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        Ok(self.clone())
    }

    async fn run(&self, _input: &StepInput, _rt: &Runtime) -> StepReport {
        StepReport::failed(format!(
            "step type `{}` is not available yet in this version of claw",
            self.written
        ))
    }

    fn environment_problems(&self, _dirs: &Dirs) -> Vec<String> {
        vec![format!(
            "type `{}` cannot run in this version of claw yet",
            self.written
        )]
    }
}
