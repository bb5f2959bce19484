//! Loading of `type: skill` steps: `skill: NAME` (or the seed's `command: NAME`) names the skill;
//! the step's common `args` are its arguments. Whether the skill exists is checked by
//! `claw workflow validate --env` and at run time, not here: validation of a file is pure.

use std::time::Duration;

use super::Cx;
use crate::workflow::SkillStep;
use crate::yaml::node::Node;

impl Cx<'_> {
    pub(super) fn skill_step(
        &mut self,
        node: &Node,
        step: &str,
        timeout: Duration,
    ) -> Option<SkillStep> {
        let Some(field) = node.get("skill").or_else(|| node.get("command")) else {
            self.err(
                node.pos,
                format!("step `{step}` (skill) needs `skill: NAME` (the skill to run)"),
            );
            return None;
        };
        let name = self.string(field, "skill")?;
        if name.contains("${{") {
            self.err(
                field.pos,
                "the skill must be named literally (it is looked up before the run), not with an expression",
            );
            return None;
        }
        if !crate::skills::manifest::valid_name(name.trim()) {
            self.err(
                field.pos,
                format!("`{name}` is not a skill name (letters, digits, `-`, `_`, `.`)"),
            );
            return None;
        }
        Some(SkillStep {
            name: name.trim().to_owned(),
            timeout: node.get("timeout").map(|_| timeout),
        })
    }
}
