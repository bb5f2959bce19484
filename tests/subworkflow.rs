//! Sub-workflows: a `type: workflow` step runs another workflow as a child run linked to its
//! parent, waits for it, and takes its outputs; recursion is refused before anything runs.

use crate::common::*;

#[test]
fn a_child_run_is_linked_to_its_parent_and_its_outputs_become_the_steps() {
    let env = Env::new();
    env.workflow(
        "child",
        "name: child\nparams:\n  who: {type: string}\noutputs:\n  greeting: \"${{ steps.hi.outputs.text }}\"\nsteps:\n  - name: hi\n    command: echo \"text=hello ${{ params.who }}\" >> \"$CLAW_OUTPUT\"\n",
    );
    env.workflow(
        "parent",
        "name: parent\nsteps:\n  - name: prep\n    command: echo who=world >> \"$CLAW_OUTPUT\"\n  - name: sub\n    type: workflow\n    workflow: child\n    params:\n      who: \"${{ steps.prep.outputs.who }}\"\n  - name: use\n    command: echo \"${{ steps.sub.outputs.greeting }}\" > got.txt\n",
    );
    let r = env.claw(&["workflow", "run", "parent", "--json"]);
    r.expect_code(0);
    let parent = r.json();
    assert_eq!(read(&env.path("got.txt")).trim(), "hello world");
    let sub = step(&parent, "sub");
    let child_id = sub["outputs"]["run_id"].as_str().unwrap().to_owned();
    let child = env.show(&child_id);
    assert_eq!(child["status"], "succeeded");
    assert_eq!(child["parent_run"], parent["id"]);
    assert_eq!(child["params"]["who"], "world");
    let shown = env.claw(&["run", "show", parent["id"].as_str().unwrap()]);
    assert!(
        shown
            .stdout
            .contains(&format!("child     {child_id} (child, succeeded)")),
        "{}",
        shown.stdout
    );
}

#[test]
fn a_failed_child_fails_the_step() {
    let env = Env::new();
    env.workflow("child", "steps:\n  - name: boom\n    command: exit 3\n");
    env.workflow(
        "parent",
        "steps:\n  - name: sub\n    type: workflow\n    workflow: child\n",
    );
    let r = env.claw(&["workflow", "run", "parent", "--json"]);
    r.expect_code(1);
    let sub = step(&r.json(), "sub").clone();
    assert_eq!(sub["status"], "failed");
    assert!(
        sub["message"].as_str().unwrap().contains("failed"),
        "{sub:#}"
    );
}

#[test]
fn recursion_is_refused_at_validation_time() {
    let env = Env::new();
    env.workflow(
        "a",
        "steps:\n  - name: to-b\n    type: workflow\n    workflow: b\n",
    );
    env.workflow(
        "b",
        "steps:\n  - name: back\n    type: workflow\n    workflow: a\n",
    );
    env.workflow(
        "self",
        "steps:\n  - name: me\n    type: workflow\n    workflow: self\n",
    );
    let r = env.claw(&["workflow", "validate", "a"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("workflow recursion: a → b → a"),
        "{}",
        r.stderr
    );
    let r = env.claw(&["workflow", "validate", "self"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("recursion"), "{}", r.stderr);
    let r = env.claw(&["workflow", "run", "a"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("recursion"), "{}", r.stderr);
    assert!(env.last_run().is_none(), "nothing ran");
    env.workflow(
        "lost",
        "steps:\n  - name: s\n    type: workflow\n    workflow: nowhere\n",
    );
    let r = env.claw(&["workflow", "validate", "lost"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("child workflow `nowhere` not found"),
        "{}",
        r.stderr
    );
}
