//! Any bytes given as a workflow file: loading must return a workflow or diagnostics, never
//! panic, hang or blow the stack, and every diagnostic must render.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("fuzz.yaml");
    match claw::config::workflow_file::load_str(path, text.to_owned()) {
        Ok(wf) => {
            // A loaded workflow is consistent: dependencies point at earlier-or-later real steps.
            for s in &wf.steps {
                assert!(s.needs.iter().all(|&d| d < wf.steps.len() && d != s.index));
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty());
            let _ = e.render();
        }
    }
});
