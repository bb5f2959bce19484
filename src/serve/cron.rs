//! The daemon's scheduler: when each schedule ([`crate::triggers::cron::sources`]) is due, and
//! one pass over the due ones ([`Scheduler::tick`]).
//!
//! A pass asks [`crate::scheduler::plan()`] what each due schedule should enqueue and what it
//! missed, applies the overlap policy, and commits everything in one store transaction: each
//! fire is the row `(schedule, scheduled_for)` under a unique key (a workflow fire's run is
//! created in that same transaction), and each schedule's `last_fire` moves forward. A fire
//! already in the store is never enqueued again, whichever process tries. The time is passed in,
//! so tests drive the scheduler with a clock of their own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::audit::Event;
use crate::engine::{Engine, NewRun};
use crate::scheduler::{Overlap, plan};
use crate::store::{Advance, FireBatch, FireStatus, NewFire, StoreError};
use crate::time::{self, at, ms};
use crate::triggers::cron::sources::{Entry, Sources, Target};

/// The audit actor of scheduler entries.
pub const ACTOR: &str = "claw:scheduler";

/// Something a pass started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// Run this job now; with `queue`, after the schedule's fire still going.
    Job {
        schedule: String,
        scheduled_for: i64,
        job_id: String,
        /// Run after the schedule's previous fire ends (any overlap policy but `allow`).
        serialize: bool,
    },
    /// A workflow run was created (queued, unowned): the daemon's queue runs it.
    Run { schedule: String, run_id: String },
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Tick {
    pub dispatch: Vec<Dispatch>,
    /// Entries for the audit log (missed and skipped fires).
    pub audit: Vec<Event>,
    pub missed: u64,
    pub skipped: u64,
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// The newest fire handled (or the anchor).
    last: DateTime<Utc>,
    due: Option<DateTime<Utc>>,
    generation: u32,
}

/// The slots, sorted by schedule id (compact: a daemon may hold tens of thousands).
#[derive(Debug, Default)]
struct Slots(Vec<Slot>);

impl Slots {
    fn index(&self, id: &str) -> Option<usize> {
        self.0
            .binary_search_by(|s| s.entry.id.as_str().cmp(id))
            .ok()
    }

    fn get(&self, id: &str) -> Option<&Slot> {
        self.index(id).map(|i| &self.0[i])
    }
}

/// The schedules and their next due times.
#[derive(Debug)]
pub struct Scheduler {
    engine: Arc<Engine>,
    slots: Slots,
    /// `(due ms, generation, slot index)`; an entry whose generation is not its slot's is stale.
    heap: BinaryHeap<Reverse<(i64, u32, u32)>>,
}

fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Job, Target::Job) => true,
        (Target::Workflow(x), Target::Workflow(y)) => x.source == y.source,
        _ => false,
    }
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            slots: Slots::default(),
            heap: BinaryHeap::new(),
        }
    }

    /// How many schedules are active.
    pub fn len(&self) -> usize {
        self.slots.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.0.is_empty()
    }

    /// Forgets every schedule (the next [`Scheduler::set_entries`] reads their state again).
    pub fn reset(&mut self) {
        self.slots.0.clear();
        self.heap.clear();
    }

    /// Replaces the schedule set. A schedule seen for the first time is registered in the store
    /// (its anchor is `now`); one known before continues from its persisted last fire.
    pub fn set_entries(&mut self, sources: Sources, now: DateTime<Utc>) -> Result<(), StoreError> {
        let store = self.engine.store.clone();
        if !sources.paused.is_empty() {
            let batch = FireBatch {
                fires: Vec::new(),
                advances: sources
                    .paused
                    .iter()
                    .map(|id| Advance {
                        schedule: id.clone(),
                        last_fire: ms(now),
                        missed: 0,
                    })
                    .collect(),
            };
            store.commit_fires(&batch, ms(now))?;
        }
        let mut wanted = sources.entries;
        wanted.sort_by(|a, b| a.id.cmp(&b.id));
        wanted.dedup_by(|a, b| a.id == b.id);
        let fresh: Vec<String> = wanted
            .iter()
            .filter(|e| self.slots.get(&e.id).is_none())
            .map(|e| e.id.clone())
            .collect();
        let mut states = store.register_schedules(&fresh, ms(now))?.into_iter();
        let old = std::mem::take(&mut self.slots.0);
        let mut old = old.into_iter().peekable();
        let mut slots = Vec::with_capacity(wanted.len());
        for entry in wanted {
            while old.peek().is_some_and(|o| o.entry.id < entry.id) {
                old.next();
            }
            let known = old.next_if(|o| o.entry.id == entry.id);
            let slot = match known {
                Some(o)
                    if o.entry.policy == entry.policy
                        && same_target(&o.entry.target, &entry.target) =>
                {
                    Slot { entry, ..o }
                }
                Some(o) => Slot {
                    entry,
                    last: o.last,
                    due: None,
                    generation: o.generation.wrapping_add(1),
                },
                None => {
                    let last = states
                        .next()
                        .map_or(now, |st| at(st.last_fire.unwrap_or(st.first_seen)));
                    Slot {
                        entry,
                        last,
                        due: None,
                        generation: 0,
                    }
                }
            };
            slots.push(slot);
        }
        self.slots.0 = slots;
        self.heap = BinaryHeap::with_capacity(self.slots.0.len());
        for i in 0..self.slots.0.len() {
            let last = self.slots.0[i].last;
            self.place(i, last);
        }
        Ok(())
    }

    /// Copies every slot into fresh allocations and drops the old ones. After a reload, the
    /// schedules' small strings sit scattered among the freed memory of the parsed files, which
    /// keeps that memory from going back to the system; copied once the parse and the reload's
    /// own temporaries are freed, they are packed together instead.
    pub fn compact(&mut self) {
        let packed: Vec<Slot> = self
            .slots
            .0
            .iter()
            .map(|s| Slot {
                entry: s.entry.clone(),
                last: s.last,
                due: s.due,
                generation: s.generation,
            })
            .collect();
        self.slots.0 = packed;
    }

    /// Computes the slot's next due time from `last` and puts it in the heap.
    fn place(&mut self, i: usize, last: DateTime<Utc>) {
        let Some(slot) = self.slots.0.get_mut(i) else {
            return;
        };
        slot.last = last;
        slot.generation = slot.generation.wrapping_add(1);
        let offset = crate::scheduler::jitter_offset(&slot.entry.id, slot.entry.policy.jitter);
        slot.due = slot
            .entry
            .schedule
            .next_after(last)
            .map(|f| f + chrono::TimeDelta::from_std(offset).unwrap_or_default());
        if let (Some(due), Ok(index)) = (slot.due, u32::try_from(i)) {
            self.heap.push(Reverse((ms(due), slot.generation, index)));
        }
    }

    fn live(&self, generation: u32, index: u32) -> Option<&Slot> {
        self.slots
            .0
            .get(index as usize)
            .filter(|s| s.generation == generation)
    }

    /// When the next schedule is due.
    pub fn next_due(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((due, generation, index))) = self.heap.peek() {
            if self.live(*generation, *index).is_some() {
                return Some(at(*due));
            }
            self.heap.pop();
        }
        None
    }

    /// One pass at `now`: enqueues what is due, records what was missed or skipped.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Result<Tick, StoreError> {
        let mut due_ids: Vec<String> = Vec::new();
        while let Some(Reverse((due, generation, index))) = self.heap.peek() {
            if *due > ms(now) {
                break;
            }
            if let Some(slot) = self.live(*generation, *index) {
                due_ids.push(slot.entry.id.clone());
            }
            self.heap.pop();
        }
        let mut tick = Tick::default();
        if due_ids.is_empty() {
            return Ok(tick);
        }
        let result = self.pass(&due_ids, now, &mut tick);
        if result.is_err() {
            // The store did not take the pass: read every schedule's state again next time.
            self.reset();
        }
        result.map(|()| tick)
    }

    fn pass(
        &mut self,
        due_ids: &[String],
        now: DateTime<Utc>,
        tick: &mut Tick,
    ) -> Result<(), StoreError> {
        let store = self.engine.store.clone();
        let mut batch = FireBatch::default();
        let mut places: Vec<(String, DateTime<Utc>)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for id in due_ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let Some(slot) = self.slots.get(id) else {
                continue;
            };
            let entry = &slot.entry;
            let p = plan(&entry.schedule, id, slot.last, now, &entry.policy);
            for (i, fire) in p.enqueue.iter().enumerate() {
                // Later catch-up fires of one pass queue behind the first one.
                let busy =
                    entry.policy.overlap != Overlap::Allow && (i > 0 || store.schedule_busy(id)?);
                let skip = busy && i == 0 && entry.policy.overlap == Overlap::Skip;
                let queue = busy && !skip;
                let mut new = NewFire {
                    schedule: id.clone(),
                    scheduled_for: ms(fire.scheduled_for),
                    due_at: ms(fire.due_at),
                    late: fire.late,
                    status: FireStatus::Queued,
                    run: None,
                    detail: None,
                };
                if skip {
                    new.status = FireStatus::Skipped;
                    new.detail =
                        Some("skipped: the previous fire was still running (overlap: skip)".into());
                } else if let Target::Workflow(wf) = &entry.target {
                    new.status = FireStatus::Run;
                    let mut trigger = serde_json::json!({
                        "type": "schedule",
                        "schedule": id,
                        "expr": entry.schedule.expr(),
                        "scheduled_for": time::rfc3339(&fire.scheduled_for),
                        "late": fire.late,
                    });
                    if queue {
                        trigger["overlap"] = "queue".into();
                    }
                    let params = wf.bind_params(&[]).unwrap_or_default();
                    let run = self.engine.run_record(
                        &NewRun {
                            workflow: wf,
                            params,
                            trigger,
                            dry_run: false,
                            claim: false,
                        },
                        ms(now),
                    );
                    new.run = Some(run);
                } else if queue {
                    new.detail = Some("queued behind the previous fire (overlap: queue)".into());
                }
                batch.fires.push(new);
            }
            let mut missed = 0u64;
            for m in &p.missed {
                missed += m.count;
                tick.audit.push(Event::new(
                    ACTOR,
                    crate::audit::Action::ScheduleMissed,
                    id,
                    "missed",
                    serde_json::json!({
                        "name": entry.label,
                        "reason": m.reason.as_str(),
                        "count": m.count,
                        "exact": m.exact,
                        "first": time::rfc3339(&m.first),
                        "last": time::rfc3339(&m.last),
                    }),
                ));
            }
            tick.missed += missed;
            if let Some(last) = p.last_fire {
                batch.advances.push(Advance {
                    schedule: id.clone(),
                    last_fire: ms(last),
                    missed,
                });
            }
            places.push((id.clone(), p.last_fire.unwrap_or(slot.last)));
        }
        let inserted = store.commit_fires(&batch, ms(now))?;
        for (fire, new) in batch.fires.into_iter().zip(inserted) {
            if !new {
                continue;
            }
            let label = self
                .slots
                .get(&fire.schedule)
                .map(|s| s.entry.label.clone())
                .unwrap_or_default();
            match (fire.status, fire.run) {
                (FireStatus::Skipped, _) => {
                    tick.skipped += 1;
                    tick.audit.push(Event::new(
                        ACTOR,
                        crate::audit::Action::ScheduleSkipped,
                        &fire.schedule,
                        "skipped",
                        serde_json::json!({
                            "name": label,
                            "scheduled_for": time::rfc3339(&at(fire.scheduled_for)),
                            "reason": "overlap",
                        }),
                    ));
                }
                (FireStatus::Run, Some(run)) => {
                    tick.dispatch.push(Dispatch::Run {
                        schedule: fire.schedule,
                        run_id: run.id,
                    });
                }
                (_, _) => {
                    let Some(slot) = self.slots.get(&fire.schedule) else {
                        continue;
                    };
                    let (Target::Job, Some(job_id)) =
                        (&slot.entry.target, fire.schedule.strip_prefix("job:"))
                    else {
                        continue;
                    };
                    tick.dispatch.push(Dispatch::Job {
                        job_id: job_id.to_owned(),
                        serialize: slot.entry.policy.overlap != Overlap::Allow,
                        schedule: fire.schedule,
                        scheduled_for: fire.scheduled_for,
                    });
                }
            }
        }
        for (id, last) in places {
            if let Some(i) = self.slots.index(&id) {
                self.place(i, last);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;
