//! The layering of `src/` (ARCHITECTURE.md): `scripts/deps.py --check` counts the module
//! dependency arrows from the source and fails on any that runs upward, on any cycle and on a
//! module without a layer. Its parser has a self-test of its own, run here too.

use std::process::{Command, Output};

fn deps(arg: &str) -> Output {
    Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deps.py"))
        .arg(arg)
        .output()
        .expect("run python3 scripts/deps.py")
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_dependency_counter_reads_every_construct_it_must() {
    let out = deps("--self-test");
    assert!(out.status.success(), "{}", report(&out));
}

#[test]
fn modules_depend_only_on_lower_layers_without_cycles() {
    let out = deps("--check");
    assert!(
        out.status.success(),
        "scripts/deps.py --check failed:\n{}",
        report(&out)
    );
}
