//! Templates and expressions from arbitrary input: parsing, checking, rendering for the shell
//! and as plain text must never panic or hang (fuel bounds evaluation).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Split the input: a template, and a value substituted into it.
    let (tpl, value) = text.split_once('\u{1}').unwrap_or((text, "x'y\"z$(id)`w`\n"));
    let eval = claw::workflow::expr::Evaluator::new();
    let _ = eval.check_template(tpl);
    let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
        "params": {"x": value, "n": 3, "list": [1, 2, 3]},
        "steps": {"a": {"status": "succeeded", "outputs": {"v": value}, "stdout": value}},
        "env": {"HOME": "/root"},
        "run": {"id": "r"},
        "trigger": {},
    })));
    let _ = eval.render_plain(tpl, &ctx);
    let _ = eval.render_shell(tpl, &ctx);
    let _ = eval.truthy(tpl, &ctx);
});
