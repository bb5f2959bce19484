//! The store's behaviour, tested on both backends: every test here runs once on an in-memory
//! SQLite store and once on a PostgreSQL database of its own (created on the server of
//! `CLAW_TEST_PG`, default [`postgres::TEST_SERVER`], and dropped after). A test is a function of
//! `&dyn Store`; list it in `both!` at the bottom.

use super::postgres::{PgStore, ScratchDb};
use super::*;

/// A queued run of `workflow` created at `created` (also the SQLite-only tests' fixture).
pub(super) fn run(id: &str, workflow: &str, created: i64) -> RunRecord {
    RunRecord {
        workflow_path: "wf.yaml".into(),
        definition: "steps: []".into(),
        trigger: serde_json::json!({"type": "manual"}),
        ..RunRecord::queued(id, workflow, created)
    }
}

fn ids(v: Vec<RunRecord>) -> Vec<String> {
    v.into_iter().map(|r| r.id).collect()
}

fn webhook_deliveries_are_claimed_once(s: &dyn Store) -> Result<()> {
    assert_eq!(s.claim_delivery("gh", "d1", 100, 0)?, Delivery::New);
    assert_eq!(
        s.claim_delivery("gh", "d1", 101, 0)?,
        Delivery::Seen { run_id: None }
    );
    s.set_delivery_run("gh", "d1", Some("r1"))?;
    assert_eq!(
        s.claim_delivery("gh", "d1", 102, 0)?,
        Delivery::Seen {
            run_id: Some("r1".into())
        }
    );
    // Another hook has its own ids; a failed delivery is forgotten so a retry can run.
    assert_eq!(s.claim_delivery("other", "d1", 103, 0)?, Delivery::New);
    s.set_delivery_run("other", "d1", None)?;
    assert_eq!(s.claim_delivery("other", "d1", 104, 0)?, Delivery::New);
    // Old ids are forgotten.
    assert_eq!(s.claim_delivery("gh", "d1", 200, 150)?, Delivery::New);
    Ok(())
}

fn runs_round_trip_and_prefixes_resolve(s: &dyn Store) -> Result<()> {
    let mut full = run("01abc", "wf", 1);
    full.params = serde_json::json!({"a": [1, "x"]});
    full.dry_run = true;
    full.owner = Some("h/b/1/2".into());
    full.lease_until = Some(i64::MAX / 2);
    full.parent_run = Some("p".into());
    full.error = Some("é".into());
    s.create_run(&full)?;
    assert_eq!(s.get_run("01abc")?.as_ref(), Some(&full));
    s.create_run(&run("01abd", "wf", 2))?;
    assert_eq!(s.find_run("01abc")?.workflow, "wf");
    assert!(matches!(
        s.find_run("01ab"),
        Err(StoreError::Ambiguous { .. })
    ));
    assert!(matches!(s.find_run("zz"), Err(StoreError::NoSuchRun(_))));
    assert!(matches!(s.find_run("01%"), Err(StoreError::NoSuchRun(_))));
    assert_eq!(s.find_run("01ABD")?.created_at, 2);
    let listed = s.list_runs(&RunFilter::default())?;
    assert_eq!(ids(listed), ["01abd", "01abc"]);
    let filtered = s.list_runs(&RunFilter {
        parent: Some("p".into()),
        limit: Some(5),
        ..RunFilter::default()
    })?;
    assert_eq!(ids(filtered), ["01abc"]);
    let one = s.list_runs(&RunFilter {
        status: Some(RunStatus::Queued),
        limit: Some(1),
        ..RunFilter::default()
    })?;
    assert_eq!(ids(one), ["01abd"]);
    Ok(())
}

fn the_queue_reads_a_page_at_a_time_and_counts_waiting_runs(s: &dyn Store) -> Result<()> {
    // Same creation time for two: the id breaks the tie, as in `unfinished_runs`.
    for (id, at) in [("a", 1), ("c", 2), ("b", 2), ("d", 3), ("e", 4)] {
        s.create_run(&run(id, "wf", at))?;
    }
    s.update_run("d", RunStatus::Succeeded, None, None, 9)?;
    s.update_run("c", RunStatus::Waiting, None, None, 9)?;
    assert_eq!(ids(s.unfinished_runs_after(None, 2, &[])?), ["a", "b"]);
    assert_eq!(
        ids(s.unfinished_runs_after(Some((2, "b")), 2, &[])?),
        ["c", "e"]
    );
    assert_eq!(
        ids(s.unfinished_runs_after(Some((4, "e")), 2, &[])?),
        Vec::<String>::new()
    );
    assert_eq!(ids(s.unfinished_runs(None)?), ["a", "b", "c", "e"]);
    assert_eq!(ids(s.unfinished_runs(Some("other"))?), Vec::<String>::new());
    assert_eq!(s.count_waiting(&["a", "c", "d", "nope"])?, 1);
    assert_eq!(s.count_waiting(&[])?, 0);
    assert_eq!(
        ids(s.unfinished_runs_after(None, 2, &["a", "c"])?),
        ["b", "e"]
    );
    let mut sched = run("f", "wf", 5);
    sched.trigger = serde_json::json!({"type": "schedule", "schedule": "wf:0"});
    s.create_run(&sched)?;
    sched.id = "g".into();
    s.create_run(&sched)?;
    assert!(!s.schedule_run_before("wf:0", 5, "f")?);
    assert!(s.schedule_run_before("wf:0", 5, "g")?);
    assert!(!s.schedule_run_before("other", 5, "g")?);
    Ok(())
}

fn claim_respects_live_owner(s: &dyn Store) -> Result<()> {
    s.create_run(&run("r1", "wf", 1))?;
    assert!(s.claim_run("r1", "a", 10, &|_| false)?.is_some());
    assert!(s.claim_run("r1", "b", 10, &|_| false)?.is_none());
    assert!(s.claim_run("r1", "b", 10, &|_| true)?.is_some());
    assert_eq!(s.get_run("r1")?.and_then(|r| r.owner).as_deref(), Some("b"));
    assert!(matches!(
        s.claim_run("nope", "b", 10, &|_| true),
        Err(StoreError::NoSuchRun(_))
    ));
    s.heartbeat("r1", "b", 99)?;
    assert_eq!(s.get_run("r1")?.and_then(|r| r.lease_until), Some(99));
    Ok(())
}

fn admission_honours_limit_and_order(s: &dyn Store) -> Result<()> {
    s.create_run(&run("r1", "wf", 1))?;
    s.create_run(&run("r2", "wf", 2))?;
    assert!(
        !s.admit_run("r2", 1, 5, &|_| false)?,
        "r1 is queued ahead of r2"
    );
    assert!(s.admit_run("r1", 1, 5, &|_| false)?);
    assert!(!s.admit_run("r2", 1, 5, &|_| false)?);
    s.update_run("r1", RunStatus::Succeeded, None, None, 6)?;
    assert!(s.admit_run("r2", 1, 7, &|_| false)?);
    let r2 = s
        .get_run("r2")?
        .ok_or_else(|| StoreError::NoSuchRun("r2".into()))?;
    assert_eq!((r2.status, r2.started_at), (RunStatus::Running, Some(7)));
    Ok(())
}

fn steps_and_decisions(s: &dyn Store) -> Result<()> {
    s.create_run(&run("r1", "wf", 1))?;
    let mut st = StepRecord::new("a", Phase::Main, 0);
    st.status = StepStatus::Interrupted;
    st.exit_code = Some(-9);
    st.outputs = serde_json::json!({"k": "v"});
    st.stdout_tail = "out".into();
    let mut rb = StepRecord::new("rollback:x", Phase::Rollback, 0);
    rb.status = StepStatus::Succeeded;
    s.record_steps("r1", &[rb.clone(), st.clone()], Some(RunStatus::Waiting))?;
    assert_eq!(s.get_run("r1")?.map(|r| r.status), Some(RunStatus::Waiting));
    assert!(s.decide_step("r1", "a", Decision::Retry, "me")?);
    assert!(!s.decide_step("r1", "zz", Decision::Retry, "me")?);
    let steps = s.steps("r1")?;
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].name, "a", "main steps first");
    assert_eq!(steps[0].decision, Some(Decision::Retry));
    assert_eq!(steps[0].decided_by.as_deref(), Some("me"));
    assert_eq!(steps[0].exit_code, Some(-9));
    assert_eq!(steps[0].outputs, st.outputs);
    assert_eq!(steps[1], rb);
    // A record written again replaces the first.
    st.status = StepStatus::Succeeded;
    st.decision = None;
    st.decided_by = None;
    s.finish_run(
        "r1",
        std::slice::from_ref(&st),
        RunStatus::Succeeded,
        None,
        Some(&serde_json::json!({"out": 1})),
        50,
    )?;
    let r = s
        .get_run("r1")?
        .ok_or_else(|| StoreError::NoSuchRun("r1".into()))?;
    assert_eq!(
        (r.status, r.finished_at, r.outputs),
        (
            RunStatus::Succeeded,
            Some(50),
            serde_json::json!({"out": 1})
        )
    );
    assert_eq!(s.steps("r1")?[0], st);
    Ok(())
}

fn cancel_requests_are_seen(s: &dyn Store) -> Result<()> {
    s.create_run(&run("r1", "wf", 1))?;
    assert!(!s.cancel_requested("r1")?);
    s.request_cancel("r1")?;
    assert!(s.cancel_requested("r1")?);
    assert!(!s.cancel_requested("nope")?);
    Ok(())
}

fn prune_keeps_newest_and_unfinished(s: &dyn Store) -> Result<()> {
    for i in 0..5 {
        s.create_run(&run(&format!("r{i}"), "wf", i))?;
        s.update_run(&format!("r{i}"), RunStatus::Succeeded, None, None, i)?;
    }
    s.create_run(&run("q", "wf", 0))?;
    assert!(s.prune_runs("wf", -1, 10)?.is_empty());
    let mut gone = s.prune_runs("wf", -1, 2)?;
    gone.sort();
    assert_eq!(gone, ["r0", "r1", "r2"]);
    assert!(s.get_run("q")?.is_some());
    Ok(())
}

fn approvals_keep_their_first_request_and_one_vote_each(s: &dyn Store) -> Result<()> {
    s.create_run(&run("r1", "wf", 1))?;
    let req = ApprovalRequest {
        run_id: "r1".into(),
        step: "gate".into(),
        message: "deploy?".into(),
        approvers: vec!["ann".into(), "bob".into()],
        quorum: 2,
        deadline: Some(1000),
        on_timeout: "reject".into(),
        input: serde_json::json!([{"name": "why"}]),
        requested_at: 5,
    };
    let (stored, new) = s.open_approval(&req)?;
    assert!(new);
    assert_eq!(stored, req);
    let later = ApprovalRequest {
        deadline: Some(9999),
        ..req.clone()
    };
    let (stored, new) = s.open_approval(&later)?;
    assert!(!new);
    assert_eq!(
        stored.deadline,
        Some(1000),
        "a resumed run keeps its deadline"
    );
    let vote = Vote {
        approver: "ann".into(),
        decision: "approve".into(),
        reason: Some("ok".into()),
        input: serde_json::json!({"why": "x"}),
        decided_at: 7,
    };
    assert!(s.add_vote("r1", "gate", &vote)?);
    assert!(!s.add_vote("r1", "gate", &vote)?);
    assert!(s.pending_approvals()?.is_empty(), "the step is not waiting");
    let mut st = StepRecord::new("gate", Phase::Main, 0);
    st.status = StepStatus::Waiting;
    s.record_steps("r1", &[st], Some(RunStatus::Waiting))?;
    let pending = s.pending_approvals()?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].votes, vec![vote]);
    assert_eq!(s.approval("r1", "gate")?.map(|a| a.request), Some(req));
    assert!(s.approval("r1", "other")?.is_none());
    Ok(())
}

fn the_outbox_sends_in_order_per_target(s: &dyn Store) -> Result<()> {
    let msg = |target: &str, body: &str| NewMessage {
        channel: "telegram".into(),
        target: target.into(),
        body: body.into(),
        source: "cli".into(),
        extra: None,
    };
    let ids = s.enqueue_messages(&[msg("a", "1"), msg("a", "2"), msg("b", "3")], 10)?;
    assert_eq!(ids.len(), 3);
    let claimed = s.claim_messages("me", 10, 100, 10)?;
    let bodies: Vec<&str> = claimed.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["1", "3"], "one head per (channel, target)");
    assert!(s.claim_messages("other", 20, 100, 10)?.is_empty(), "held");
    s.finish_message(
        ids[0],
        &MessageOutcome::Sent {
            provider_id: "p1".into(),
        },
        30,
    )?;
    s.finish_message(ids[2], &MessageOutcome::Dead { error: "no".into() }, 30)?;
    let next = s.claim_messages("me", 40, 100, 10)?;
    assert_eq!(next.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
    s.finish_message(
        ids[1],
        &MessageOutcome::Retry {
            next_at: 500,
            error: "later".into(),
        },
        41,
    )?;
    assert!(s.claim_messages("me", 200, 300, 10)?.is_empty(), "not due");
    let failed = s.list_messages(true, 10)?;
    assert_eq!(
        failed.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    assert_eq!(s.list_messages(false, 2)?.len(), 2);
    let got = s.messages(&[ids[2], 999_999, ids[0]])?;
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[2], ids[0]]
    );
    assert_eq!(got[1].provider_id.as_deref(), Some("p1"));
    assert_eq!((got[0].status.as_str(), got[0].attempts), ("dead", 1));
    assert!(s.retry_message(ids[2], 60)?);
    assert!(!s.retry_message(ids[2], 60)?);
    Ok(())
}

fn chats_and_cursors(s: &dyn Store) -> Result<()> {
    let mut a = ChatAccess {
        channel: "telegram".into(),
        chat: "42".into(),
        status: "requested".into(),
        name: "ann".into(),
        decided_by: None,
        updated_at: 1,
    };
    s.set_chat_access(&a)?;
    a.status = "allowed".into();
    a.name = String::new();
    a.decided_by = Some("cli:me".into());
    a.updated_at = 2;
    s.set_chat_access(&a)?;
    let got = s.chat_access("telegram", "42")?;
    assert_eq!(got.as_ref().map(|g| g.name.as_str()), Some("ann"));
    assert_eq!(got.map(|g| g.status), Some("allowed".into()));
    assert_eq!(s.list_chat_access()?.len(), 1);
    assert!(s.remove_chat_access("telegram", "42")?);
    assert!(!s.remove_chat_access("telegram", "42")?);
    assert_eq!(s.inbound_cursor("telegram")?, None);
    s.set_inbound_cursor("telegram", 10, 1)?;
    s.set_inbound_cursor("telegram", 5, 2)?;
    assert_eq!(s.inbound_cursor("telegram")?, Some(10), "never back");
    Ok(())
}

fn fires_are_exactly_once(s: &dyn Store) -> Result<()> {
    let ids = ["job:a".to_owned(), "workflow:wf:* * * * *".to_owned()];
    let states = s.register_schedules(&ids, 100)?;
    assert_eq!(states[0].first_seen, 100);
    assert_eq!(s.register_schedules(&ids, 200)?[0].first_seen, 100);
    let mut r = run("fr1", "wf", 60_000);
    r.trigger = serde_json::json!({"type": "schedule", "schedule": ids[1]});
    let batch = FireBatch {
        fires: vec![
            NewFire {
                schedule: ids[0].clone(),
                scheduled_for: 60_000,
                due_at: 60_000,
                late: false,
                status: FireStatus::Queued,
                run: None,
                detail: None,
            },
            NewFire {
                schedule: ids[1].clone(),
                scheduled_for: 60_000,
                due_at: 60_000,
                late: true,
                status: FireStatus::Run,
                run: Some(r.clone()),
                detail: Some("d".into()),
            },
        ],
        advances: vec![Advance {
            schedule: ids[0].clone(),
            last_fire: 60_000,
            missed: 2,
        }],
    };
    assert_eq!(s.commit_fires(&batch, 61_000)?, [true, true]);
    assert_eq!(
        s.commit_fires(&batch, 62_000)?,
        [false, false],
        "exactly once"
    );
    assert!(s.get_run("fr1")?.is_some());
    let st = s.schedule_states()?;
    let a = st.iter().find(|x| x.id == ids[0]).cloned();
    assert_eq!(
        a.map(|a| (a.last_fire, a.fired, a.missed)),
        Some((Some(60_000), 1, 4))
    );
    assert!(s.schedule_busy(&ids[0])?);
    assert!(s.schedule_busy(&ids[1])?, "its run is queued");
    s.set_fire_status(&ids[0], 60_000, "running", None, 63_000)?;
    let rec = s.recover_fires(64_000)?;
    assert_eq!(rec.interrupted.len(), 1);
    assert!(rec.queued.is_empty());
    let fires = s.list_fires(Some(&ids[0]), 10)?;
    assert_eq!(fires[0].status, "interrupted");
    assert_eq!(fires[0].finished_at, Some(64_000));
    assert!(
        s.list_fires(None, 10)?
            .iter()
            .any(|f| f.late && f.run_id.as_deref() == Some("fr1"))
    );
    assert!(!s.schedule_busy(&ids[0])?);
    // Each schedule's newest fire is kept.
    assert_eq!(s.prune_fires(i64::MAX)?, 0);
    Ok(())
}

fn pages_and_counts(s: &dyn Store) -> Result<()> {
    for i in 0..5 {
        s.create_run(&run(
            &format!("p{i}"),
            if i % 2 == 0 { "a" } else { "b" },
            i,
        ))?;
    }
    let mut child = run("c", "a", 9);
    child.parent_run = Some("p0".into());
    s.create_run(&child)?;
    s.update_run("p4", RunStatus::Failed, Some("x"), None, 10)?;
    let page = s.runs_page(&RunQuery {
        limit: 2,
        offset: 1,
        ..RunQuery::default()
    })?;
    assert_eq!(ids(page), ["p3", "p2"]);
    let a = s.runs_page(&RunQuery {
        workflow: Some("a".into()),
        since: Some(1),
        limit: 10,
        ..RunQuery::default()
    })?;
    assert_eq!(ids(a), ["p4", "p2"]);
    let failed = s.runs_page(&RunQuery {
        status: Some(RunStatus::Failed),
        limit: 10,
        ..RunQuery::default()
    })?;
    assert_eq!(ids(failed), ["p4"]);
    assert_eq!(
        s.run_counts(None)?,
        [("failed".to_owned(), 1), ("queued".to_owned(), 5)]
    );
    assert_eq!(
        s.run_counts(Some(4))?,
        [("failed".to_owned(), 1), ("queued".to_owned(), 1)]
    );
    Ok(())
}

fn dashboard_users_sessions_and_tokens(s: &dyn Store) -> Result<()> {
    assert!(s.add_dashboard_user("ann", "h1", 1)?);
    assert!(!s.add_dashboard_user("ann", "h2", 1)?);
    assert_eq!(s.dashboard_password("ann")?.as_deref(), Some("h1"));
    let sess = DashboardSession {
        id_hash: "s1".into(),
        user: "ann".into(),
        csrf: "c".into(),
        created_at: 1,
        last_seen: 1,
    };
    s.create_session(&sess)?;
    s.touch_session("s1", 5)?;
    assert_eq!(s.session("s1")?.map(|x| x.last_seen), Some(5));
    assert!(s.add_api_token("t1", "ann", "ci", 1)?);
    assert!(!s.add_api_token("t2", "ann", "ci", 1)?);
    assert_eq!(s.api_token_user("t1", 100_000)?.as_deref(), Some("ann"));
    assert_eq!(s.api_tokens()?[0].last_used, Some(100_000));
    let users = s.dashboard_users()?;
    assert_eq!((users[0].sessions, users[0].tokens), (1, 1));
    assert!(s.set_dashboard_password("ann", "h3", 2)?);
    assert!(
        s.session("s1")?.is_none(),
        "a new password ends the sessions"
    );
    s.create_session(&sess)?;
    assert_eq!(s.prune_sessions(2, 0)?, 1);
    assert!(!s.end_session("s1")?);
    assert!(s.remove_api_token("ann", "ci")?);
    assert!(s.remove_dashboard_user("ann")?);
    assert!(!s.remove_dashboard_user("ann")?);
    Ok(())
}

fn runs_are_found_and_counted_by_trigger_and_steps_timed(s: &dyn Store) -> Result<()> {
    let mut hooked = run("w1", "wf", 1);
    hooked.trigger = serde_json::json!({"type": "webhook", "hook": "gh"});
    s.create_run(&hooked)?;
    let mut hooked2 = run("w2", "wf", 2);
    hooked2.trigger = serde_json::json!({"type": "webhook", "hook": "gh"});
    s.create_run(&hooked2)?;
    let mut watched = run("f1", "wf", 3);
    watched.trigger = serde_json::json!({"type": "watcher", "rule": "inbox"});
    s.create_run(&watched)?;
    s.create_run(&run("m1", "wf", 4))?;
    assert_eq!(ids(s.runs_by_trigger("webhook", 10)?), ["w2", "w1"]);
    assert_eq!(ids(s.runs_by_trigger("webhook", 1)?), ["w2"]);
    assert_eq!(ids(s.runs_by_trigger("watcher", 10)?), ["f1"]);
    assert!(s.runs_by_trigger("cron", 10)?.is_empty());
    assert_eq!(
        s.trigger_counts()?,
        [
            ("manual".to_owned(), String::new(), 1),
            ("watcher".to_owned(), "inbox".to_owned(), 1),
            ("webhook".to_owned(), "gh".to_owned(), 2),
        ]
    );

    let mut steps = Vec::new();
    for (i, ms) in [5_i64, 50, 500, 5000].into_iter().enumerate() {
        let mut st = StepRecord::new(&format!("s{i}"), Phase::Main, i as i64);
        st.status = StepStatus::Succeeded;
        st.started_at = Some(1000);
        st.finished_at = Some(1000 + ms);
        steps.push(st);
    }
    // A step still running is not counted.
    let mut running = StepRecord::new("r", Phase::Main, 9);
    running.status = StepStatus::Running;
    running.started_at = Some(1000);
    steps.push(running);
    s.record_steps("m1", &steps, None)?;
    assert!(s.message_counts()?.is_empty());
    let mut llm = StepRecord::new("ask", Phase::Main, 20);
    llm.status = StepStatus::Succeeded;
    llm.outputs = serde_json::json!({"provider": "anthropic", "model": "m1", "text": "hi",
        "usage": {"input_tokens": 11, "output_tokens": 7}});
    s.record_steps("w1", &[llm.clone()], None)?;
    llm.name = "again".into();
    s.record_steps("w2", &[llm], None)?;
    assert_eq!(
        s.llm_usage(None)?,
        [crate::store::LlmUsage {
            provider: "anthropic".into(),
            model: "m1".into(),
            steps: 2,
            input_tokens: 22,
            output_tokens: 14,
        }]
    );
    // w1 was created at 1, w2 at 2.
    assert_eq!(s.llm_usage(Some(2))?[0].steps, 1);
    let d = s.step_durations(&[10, 100, 1000])?;
    assert_eq!(d.buckets, [1, 2, 3]);
    assert_eq!(d.count, 4);
    assert_eq!(d.sum_ms, 5555);
    Ok(())
}

fn chat_watches_sessions_and_message_extras(s: &dyn Store) -> Result<()> {
    let watch = RunWatch {
        run_id: "r1".into(),
        channel: "telegram".into(),
        chat: "42".into(),
        workflow: "wf".into(),
        created_at: 5,
    };
    s.watch_run(&watch)?;
    s.watch_run(&watch)?;
    assert_eq!(s.run_watches()?, [watch]);
    let told = NewMessage {
        channel: "telegram".into(),
        target: "42".into(),
        body: "run r1 of wf succeeded".into(),
        source: "chat:telegram:42".into(),
        extra: Some(r#"{"buttons":[]}"#.into()),
    };
    // The one that ends the watch queues the message; a second end queues nothing.
    assert_eq!(s.end_watch("r1", std::slice::from_ref(&told), 10)?.len(), 1);
    assert!(
        s.end_watch("r1", std::slice::from_ref(&told), 11)?
            .is_empty()
    );
    assert!(s.run_watches()?.is_empty());
    let sent = s.messages_from("chat:telegram:42")?;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].extra.as_deref(), Some(r#"{"buttons":[]}"#));
    assert_eq!(
        s.message_counts()?,
        [("telegram".to_owned(), "pending".to_owned(), 1)]
    );
    // A dead daemon's claims are given back; the living one's are kept.
    assert_eq!(s.claim_messages("host/old", 20, 1000, 10)?.len(), 1);
    assert_eq!(s.release_messages("host/", "host/new")?, 1);
    assert_eq!(s.claim_messages("host/new", 21, 1000, 10)?.len(), 1);
    assert_eq!(s.release_messages("host/", "host/new")?, 0);

    assert_eq!(s.chat_session("telegram", "42")?, None);
    let mut session = ChatSession {
        channel: "telegram".into(),
        chat: "42".into(),
        mode: "chat".into(),
        model: None,
        history: vec![ChatTurn {
            role: "user".into(),
            text: "hi".into(),
            at: 1,
        }],
        updated_at: 1,
    };
    s.set_chat_session(&session)?;
    session.model = Some("gpt".into());
    session.updated_at = 2;
    s.set_chat_session(&session)?;
    assert_eq!(s.chat_session("telegram", "42")?, Some(session));
    Ok(())
}

/// Declares each test once per backend.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() -> super::Result<()> {
                    super::$name(&super::SqliteStore::in_memory()?)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() -> super::Result<()> {
                    let db = super::ScratchDb::create(stringify!($name))?;
                    let store = super::PgStore::open(&db.url)?;
                    super::$name(&store)
                }
            )*
        }
    };
}

both!(
    webhook_deliveries_are_claimed_once,
    runs_round_trip_and_prefixes_resolve,
    the_queue_reads_a_page_at_a_time_and_counts_waiting_runs,
    claim_respects_live_owner,
    admission_honours_limit_and_order,
    steps_and_decisions,
    cancel_requests_are_seen,
    prune_keeps_newest_and_unfinished,
    approvals_keep_their_first_request_and_one_vote_each,
    the_outbox_sends_in_order_per_target,
    chats_and_cursors,
    fires_are_exactly_once,
    pages_and_counts,
    dashboard_users_sessions_and_tokens,
    runs_are_found_and_counted_by_trigger_and_steps_timed,
    chat_watches_sessions_and_message_extras,
);

// --- PostgreSQL only: what several processes sharing the store rely on ---

fn pg(tag: &str) -> Result<(PgStore, ScratchDb)> {
    let db = ScratchDb::create(tag)?;
    Ok((PgStore::open(&db.url)?, db))
}

#[test]
fn concurrent_starts_migrate_once() -> Result<()> {
    let db = ScratchDb::create("migrate_once")?;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|s| s.schema_version()))
        })
        .collect();
    for t in threads {
        let v = t
            .join()
            .map_err(|_| StoreError::Schema("thread panicked".into()))???;
        assert_eq!(v, i64::from(MIGRATIONS.last().map_or(0, |m| m.number)));
    }
    Ok(())
}

#[test]
fn a_stale_epoch_cannot_write() -> Result<()> {
    let (a, db) = pg("fencing")?;
    let b = PgStore::open(&db.url)?;
    a.create_run(&run("r1", "wf", 1))?;
    assert_eq!(a.claim_queued("wa", &[], 10, 20, 5)?, ["r1"]);
    a.heartbeat("r1", "wa", 25)?;
    let mut st = StepRecord::new("s", Phase::Main, 0);
    st.status = StepStatus::Running;
    a.record_steps("r1", std::slice::from_ref(&st), Some(RunStatus::Running))?;
    // Worker a pauses; its lease (25) expires; b claims the run with a new epoch.
    assert!(
        b.claim_queued("wb", &[], 20, 60, 5)?.is_empty(),
        "lease live"
    );
    assert_eq!(b.claim_queued("wb", &[], 30, 60, 5)?, ["r1"]);
    st.status = StepStatus::Succeeded;
    let refused = |r: Result<()>| matches!(r, Err(StoreError::Fenced { .. }));
    assert!(refused(a.record_steps(
        "r1",
        std::slice::from_ref(&st),
        None
    )));
    assert!(
        a.claim_queued("wa", &[], 40, 50, 5)?.is_empty(),
        "b holds it"
    );
    let r = b
        .get_run("r1")?
        .ok_or_else(|| StoreError::NoSuchRun("r1".into()))?;
    assert_eq!((r.owner.as_deref(), r.lease_until), (Some("wb"), Some(60)));
    assert_eq!(
        b.steps("r1")?[0].status,
        StepStatus::Running,
        "a's write refused"
    );
    b.finish_run("r1", &[st], RunStatus::Succeeded, None, None, 80)?;
    assert_eq!(
        b.get_run("r1")?.map(|r| r.status),
        Some(RunStatus::Succeeded)
    );
    Ok(())
}

#[test]
fn claims_skip_locked_rows_and_honour_labels() -> Result<()> {
    let (s, db) = pg("skip_locked")?;
    for i in 0..40 {
        s.create_run(&run(&format!("r{i:02}"), "wf", i))?;
    }
    let mut gpu = run("gpu", "wf", 100);
    gpu.definition = "runs_on: [gpu]\nsteps: []\n".into();
    s.create_run(&gpu)?;
    // Four workers claim at once: every run exactly once.
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let url = db.url.clone();
            std::thread::spawn(move || -> Result<Vec<String>> {
                let s = PgStore::open(&url)?;
                let mut mine = Vec::new();
                loop {
                    let got = s.claim_queued(&format!("w{w}"), &[], 1, 1_000, 3)?;
                    if got.is_empty() {
                        return Ok(mine);
                    }
                    mine.extend(got);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| StoreError::Schema("thread panicked".into()))??,
        );
    }
    all.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("r{i:02}")).collect();
    assert_eq!(
        all, expected,
        "each run once; the gpu run left for a gpu worker"
    );
    assert_eq!(
        s.claim_queued("g", &["lan".into(), "gpu".into()], 1, 1_000, 5)?,
        ["gpu"]
    );
    Ok(())
}

#[test]
fn the_scheduler_role_is_held_by_one_at_a_time() -> Result<()> {
    let (s, _db) = pg("roles")?;
    assert_eq!(s.take_role("scheduler", "a", 0, 100)?, Some(1));
    assert_eq!(s.take_role("scheduler", "b", 50, 150)?, None);
    assert_eq!(s.take_role("scheduler", "a", 60, 160)?, Some(1), "renewed");
    assert_eq!(
        s.take_role("scheduler", "b", 170, 270)?,
        Some(2),
        "taken over"
    );
    assert_eq!(s.role_holder("scheduler")?, Some(("b".into(), 270)));
    Ok(())
}

#[test]
fn step_logs_are_stored_in_capped_chunks() -> Result<()> {
    let (s, _db) = pg("logs")?;
    s.create_run(&run("r1", "wf", 1))?;
    let big = "é".repeat(crate::store::postgres::LOG_CHUNK); // two bytes each: two chunks
    s.append_step_log("r1", "a", "first\n", u64::MAX)?;
    s.append_step_log("r1", "a", &big, u64::MAX)?;
    assert_eq!(s.step_log("r1", "a")?, format!("first\n{big}"));
    assert_eq!(s.step_log("r1", "b")?, "");
    let chunks = s.step_log_after("r1", "a", 0)?;
    assert_eq!(chunks.len(), 3);
    let rest = s.step_log_after("r1", "a", chunks[0].seq)?;
    assert_eq!(rest, chunks[1..], "continued after a chunk");
    Ok(())
}

#[test]
fn a_step_log_in_the_store_keeps_its_last_cap_bytes() -> Result<()> {
    let (s, _db) = pg("logcap")?;
    s.create_run(&run("r1", "wf", 1))?;
    for i in 0..10 {
        s.append_step_log("r1", "a", &format!("{i}").repeat(600), 2000)?;
    }
    let kept = s.step_log("r1", "a")?;
    assert!(kept.len() <= 2000, "{}", kept.len());
    assert!(
        kept.len() >= 1500,
        "three quarters of the cap: {}",
        kept.len()
    );
    assert!(
        kept.ends_with(&"9".repeat(600)),
        "the newest output is kept"
    );
    assert!(!kept.contains('0'), "the oldest is dropped");
    let chunks = s.step_log_after("r1", "a", 0)?;
    assert!(
        chunks[0].seq > 1,
        "numbers are not reused: {:?}",
        chunks[0].seq
    );
    // A piece larger than the cap keeps its end, cut at character boundaries.
    s.append_step_log("r1", "b", &"é".repeat(3000), 2000)?;
    let b = s.step_log("r1", "b")?;
    assert!(
        b.len() <= 2000 && b.chars().all(|c| c == 'é'),
        "{}",
        b.len()
    );
    Ok(())
}

#[test]
fn sqlite_keeps_no_copy_of_step_logs() -> Result<()> {
    let s = SqliteStore::in_memory()?;
    s.create_run(&run("r1", "wf", 1))?;
    s.append_step_log("r1", "a", "text", 1024)?;
    assert!(s.step_log_after("r1", "a", 0)?.is_empty());
    Ok(())
}

#[test]
fn a_wrong_url_is_a_clear_error() {
    let e = PgStore::open("postgres://postgres@127.0.0.1:5432/claw_no_such_database_here")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("claw_no_such_database_here"), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
}
