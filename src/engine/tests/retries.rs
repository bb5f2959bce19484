//! Retries with backoff, failures that are not retried, and step timeouts.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::store::RunStatus;

/// A step that fails until its counter file has `n` lines (one line per attempt).
fn succeed_on_attempt(counter: &str, n: u32) -> String {
    format!("echo x >> {counter}; test $(wc -l < {counter}) -ge {n}")
}

#[test]
fn a_failed_attempt_is_retried_with_backoff_until_it_succeeds() {
    let h = Harness::new();
    let counter = h.file("count");
    let done = h.run(&format!(
        "steps:
  - name: flaky
    command: {}
    retry: {{limit: 3, delay: 20ms, backoff: 2}}
  - name: after
    command: 'true'
",
        succeed_on_attempt(&counter, 3)
    ));
    assert_eq!(
        done.events,
        [
            "start flaky#1",
            "note: flaky: attempt 1 failed: exited with code 1; retrying in 20ms",
            "start flaky#2",
            "note: flaky: attempt 2 failed: exited with code 1; retrying in 40ms",
            "start flaky#3",
            "end flaky succeeded",
            "start after#1",
            "end after succeeded",
        ]
    );
    let s = done.step("flaky");
    assert_eq!(s.status, StepStatus::Succeeded);
    assert_eq!(s.attempts, 3);
    assert_eq!(s.exit_code, Some(0));
    assert_eq!(s.message, None);
    assert_eq!(lines_of(&counter).len(), 3);
    // The waits (20 ms, then 40 ms) lie between the first start and the end.
    let took = s.finished_at.unwrap() - s.started_at.unwrap();
    assert!(
        took >= 60,
        "three attempts with 60 ms of backoff took {took} ms"
    );
    assert_eq!(done.run.status, RunStatus::Succeeded);
}

#[test]
fn a_step_that_keeps_failing_gives_up_after_its_retries_and_max_delay_caps_the_wait() {
    let h = Harness::new();
    let counter = h.file("count");
    let done = h.run(&format!(
        "steps:
  - name: broken
    command: echo x >> {counter}; exit 5
    retry: {{limit: 2, delay: 30ms, backoff: 10, max_delay: 50ms}}
"
    ));
    assert_eq!(
        done.events_like("note: "),
        [
            "note: broken: attempt 1 failed: exited with code 5; retrying in 30ms",
            "note: broken: attempt 2 failed: exited with code 5; retrying in 50ms",
        ]
    );
    let s = done.step("broken");
    assert_eq!(s.status, StepStatus::Failed);
    assert_eq!(s.attempts, 3);
    assert_eq!(s.exit_code, Some(5));
    assert_eq!(
        s.message.as_deref(),
        Some("exited with code 5 (after 3 attempts)")
    );
    assert_eq!(lines_of(&counter).len(), 3, "one attempt and two retries");
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `broken` failed: exited with code 5 (after 3 attempts)")
    );
}

#[test]
fn a_step_that_cannot_be_prepared_is_not_retried() {
    let h = Harness::new();
    let done = h.run(
        "steps:
  - name: a
    command: 'true'
  - name: b
    command: echo ${{ steps.a.outputs.missing }}
    retry: {limit: 3, delay: 10ms}
",
    );
    let b = done.step("b");
    assert_eq!(b.status, StepStatus::Failed);
    assert_eq!(b.attempts, 1);
    let msg = b.message.as_deref().unwrap_or_default();
    assert!(msg.starts_with("cannot render the command: "), "{msg}");
    assert!(!msg.contains("attempts"), "{msg}");
    assert!(done.events_like("note: ").is_empty(), "{:#?}", done.events);
    assert!(
        !done.events.iter().any(|e| e == "start b#1"),
        "nothing was started"
    );
}

/// An HTTP server on 127.0.0.1 that answers every request with `status` and counts them.
struct Canned {
    url: String,
    hits: Arc<AtomicUsize>,
}

fn canned(status: &'static str) -> Canned {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    Canned {
        url: format!("http://127.0.0.1:{port}/thing"),
        hits,
    }
}

#[test]
fn a_failure_another_attempt_would_repeat_is_not_retried() {
    let server = canned("400 Bad Request");
    let h = Harness::new();
    let done = h.run(&format!(
        "steps:
  - name: call
    type: http
    url: {}
    retry: {{limit: 3, delay: 10ms}}
",
        server.url
    ));
    let call = done.step("call");
    assert_eq!(call.status, StepStatus::Failed);
    assert_eq!(call.attempts, 1);
    assert_eq!(
        call.message.as_deref(),
        Some(
            format!(
                "HTTP 400 Bad Request from {} (expected 2xx) (not retried: another attempt would fail the same way)",
                server.url
            )
            .as_str()
        )
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_transient_http_failure_is_retried() {
    let server = canned("503 Service Unavailable");
    let h = Harness::new();
    let done = h.run(&format!(
        "steps:
  - name: call
    type: http
    url: {}
    retry: {{limit: 2, delay: 10ms}}
",
        server.url
    ));
    let call = done.step("call");
    assert_eq!(call.status, StepStatus::Failed);
    assert_eq!(call.attempts, 3);
    assert_eq!(
        call.message.as_deref(),
        Some(
            format!(
                "HTTP 503 Service Unavailable from {} (expected 2xx) (after 3 attempts)",
                server.url
            )
            .as_str()
        )
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

#[test]
fn a_step_timeout_stops_the_attempt() {
    let h = Harness::new();
    let started = Instant::now();
    let done = h.run(
        "steps:
  - name: slow
    command: sleep 5
    timeout: 100ms
  - name: after
    command: 'true'
",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let slow = done.step("slow");
    assert_eq!(slow.status, StepStatus::Failed);
    assert_eq!(slow.message.as_deref(), Some("timed out after 100ms"));
    assert_eq!(slow.exit_code, None);
    assert_eq!(done.status("after"), StepStatus::Skipped);
    assert_eq!(done.run.status, RunStatus::Failed);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `slow` failed: timed out after 100ms")
    );
}

#[test]
fn the_step_timeout_is_per_attempt_and_a_timeout_is_retried() {
    let h = Harness::new();
    let counter = h.file("count");
    // The first attempt hangs; the second is quick (shell builtins only: the timeout must not
    // catch a slow start on a busy machine).
    // `always-hangs` fails first; it continues, so that `hangs-once` may still be retried.
    let done = h.run(&format!(
        "steps:
  - name: hangs-once
    command: if [ -e {counter} ]; then exit 0; fi; echo x > {counter}; sleep 5
    timeout: 400ms
    retry: {{limit: 1, delay: 10ms}}
  - name: always-hangs
    needs: []
    on_failure: continue
    command: sleep 5
    timeout: 100ms
    retry: {{limit: 1, delay: 10ms}}
"
    ));
    let once = done.step("hangs-once");
    assert_eq!(once.status, StepStatus::Succeeded, "{once:?}");
    assert_eq!(once.attempts, 2);
    assert_eq!(
        done.events_like("note: hangs-once"),
        ["note: hangs-once: attempt 1 failed: timed out after 400ms; retrying in 10ms"]
    );
    let always = done.step("always-hangs");
    assert_eq!(always.status, StepStatus::Failed);
    assert_eq!(always.attempts, 2);
    assert_eq!(
        always.message.as_deref(),
        Some("timed out after 100ms (after 2 attempts)")
    );
}

#[test]
fn no_retry_starts_once_the_run_is_stopping() {
    let h = Harness::new();
    let counter = h.file("count");
    let done = h.run(&format!(
        "max_parallel: 2
steps:
  - name: broken
    needs: []
    command: 'false'
  - name: slow-and-flaky
    needs: []
    command: sleep 0.2; echo x >> {counter}; false
    retry: {{limit: 2, delay: 10ms}}
"
    ));
    assert_eq!(done.status("broken"), StepStatus::Failed);
    let s = done.step("slow-and-flaky");
    assert_eq!(s.status, StepStatus::Failed);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.message.as_deref(), Some("exited with code 1"));
    assert_eq!(lines_of(&counter).len(), 1);
    assert!(done.events_like("note: ").is_empty(), "{:#?}", done.events);
    assert_eq!(
        done.run.error.as_deref(),
        Some("step `broken` failed: exited with code 1")
    );
}
