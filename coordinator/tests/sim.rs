//! Deterministic simulation of the scheduler: a fake clock, fake runners, a store file that
//! survives a restart.

mod common;

use common::{result, sweep};
use compsafe_coordinator::sched::{Fault, SchedConfig, SchedError, Scheduler};
use compsafe_coordinator::store::{SqliteStore, SweepState};
use compsafe_proto::UnitResult;

const TTL: u64 = 1_000;

fn cfg() -> SchedConfig {
    SchedConfig {
        lease_ttl_ms: TTL,
        max_attempts: 3,
    }
}

fn open(path: &std::path::Path) -> Scheduler<SqliteStore> {
    Scheduler::open(SqliteStore::open(path).unwrap(), cfg()).unwrap()
}

#[test]
fn reference_units_gate_variant_units_of_their_suite() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 2, 2, 3);
    s.submit(row, units, "t").unwrap();
    let a = s.lease("w1", &[], 0, "t").unwrap().unwrap();
    let b = s.lease("w2", &[], 0, "t").unwrap().unwrap();
    assert_eq!(
        (a.spec.variant, a.spec.suite, b.spec.variant, b.spec.suite),
        (0, 0, 0, 1)
    );
    assert!(
        s.lease("w3", &[], 0, "t").unwrap().is_none(),
        "variants wait for the reference"
    );
    assert!(s
        .complete(&b.unit_id, b.lease_id, &result(3, "fp32"), 10, "t")
        .unwrap());
    let c = s.lease("w3", &[], 10, "t").unwrap().unwrap();
    assert_eq!((c.spec.variant, c.spec.suite), (1, 1));
    let r = c
        .spec
        .reference
        .expect("the reference's outputs travel with the unit");
    assert_eq!(r.tokens["p0"], (vec![1, 2], vec![3]));
}

#[test]
fn expired_lease_is_requeued_and_its_late_result_fenced() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 2);
    s.submit(row, units, "t").unwrap();
    let first = s.lease("w1", &[], 0, "t").unwrap().unwrap();
    // w1 goes silent; the lease runs out and the unit goes to w2.
    assert_eq!(s.expire(TTL + 1, "t").unwrap(), vec!["s".to_string()]);
    assert_eq!(s.progress("s").unwrap().queued, 1);
    let second = s.lease("w2", &[], TTL + 2, "t").unwrap().unwrap();
    assert_eq!(second.unit_id, first.unit_id);
    assert_ne!(second.lease_id, first.lease_id);
    // w1 comes back with its result: refused, and nothing changes.
    let late = s.complete(
        &first.unit_id,
        first.lease_id,
        &result(2, "late"),
        TTL + 3,
        "t",
    );
    assert!(matches!(late, Err(SchedError::Fenced(_))), "{late:?}");
    assert!(matches!(
        s.renew(&first.unit_id, first.lease_id, TTL + 3),
        Err(SchedError::Fenced(_))
    ));
    assert!(s
        .complete(
            &second.unit_id,
            second.lease_id,
            &result(2, "ok"),
            TTL + 4,
            "t"
        )
        .unwrap());
    let stored = s.results("s").unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].1.contains("\"ok\""));
    assert_eq!(s.progress("s").unwrap().state, SweepState::Done);
}

#[test]
fn a_result_after_the_deadline_is_refused_even_before_expiry_runs() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let l = s.lease("w1", &[], 0, "t").unwrap().unwrap();
    let r = s.complete(&l.unit_id, l.lease_id, &result(1, "x"), TTL + 1, "t");
    assert!(matches!(r, Err(SchedError::Fenced(_))), "{r:?}");
}

#[test]
fn renewal_keeps_a_lease_alive() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let l = s.lease("w1", &[], 0, "t").unwrap().unwrap();
    for t in [800, 1600, 2400] {
        assert_eq!(s.renew(&l.unit_id, l.lease_id, t).unwrap(), t + TTL);
        assert!(s.expire(t + 1, "t").unwrap().is_empty());
    }
    assert!(s
        .complete(&l.unit_id, l.lease_id, &result(1, "x"), 3000, "t")
        .unwrap());
}

#[test]
fn duplicate_completion_changes_nothing() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let l = s.lease("w1", &[], 0, "t").unwrap().unwrap();
    assert!(s
        .complete(&l.unit_id, l.lease_id, &result(1, "first"), 1, "t")
        .unwrap());
    assert!(!s
        .complete(&l.unit_id, l.lease_id, &result(1, "second"), 2, "t")
        .unwrap());
    let stored = s.results("s").unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].1.contains("\"first\""));
    assert_eq!(s.progress("s").unwrap().done, 1);
}

#[test]
fn attempts_are_bounded() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let mut now = 0;
    let l = s.lease("w", &[], now, "t").unwrap().unwrap();
    s.fail(
        &l.unit_id,
        l.lease_id,
        "out of memory",
        Fault::Transient,
        now,
        "t",
    )
    .unwrap();
    now += 1;
    s.lease("w", &[], now, "t").unwrap().unwrap();
    now += TTL + 1;
    s.expire(now, "t").unwrap();
    let l = s.lease("w", &[], now, "t").unwrap().unwrap();
    s.fail(
        &l.unit_id,
        l.lease_id,
        "out of memory again",
        Fault::Transient,
        now,
        "t",
    )
    .unwrap();
    let p = s.progress("s").unwrap();
    assert_eq!((p.state, p.failed), (SweepState::Failed, 1));
    assert!(p
        .error
        .unwrap()
        .contains("after 3 attempts: out of memory again"));
    assert!(s.lease("w", &[], now, "t").unwrap().is_none());
}

#[test]
fn an_internal_failure_fails_at_once_and_is_not_an_input_error() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let l = s.lease("w", &[], 0, "t").unwrap().unwrap();
    s.fail(
        &l.unit_id,
        l.lease_id,
        "tensor error: shape mismatch",
        Fault::Internal,
        0,
        "t",
    )
    .unwrap();
    let p = s.progress("s").unwrap();
    assert_eq!((p.state, p.failed), (SweepState::Failed, 1));
    let e = p.error.unwrap();
    assert!(e.starts_with("engine error in unit s:0"), "{e}");
    assert!(
        !e.starts_with(compsafe_coordinator::sched::INPUT_ERROR),
        "{e}"
    );
}

#[test]
fn a_non_retryable_failure_fails_at_once() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let l = s.lease("w", &[], 0, "t").unwrap().unwrap();
    s.fail(
        &l.unit_id,
        l.lease_id,
        "model outside the root",
        Fault::Input,
        0,
        "t",
    )
    .unwrap();
    assert_eq!(s.progress("s").unwrap().state, SweepState::Failed);
}

#[test]
fn cancel_stops_leasing_and_refuses_results() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 2, 1, 1);
    s.submit(row, units, "t").unwrap();
    let l = s.lease("w", &[], 0, "t").unwrap().unwrap();
    assert_eq!(s.cancel("s", "t").unwrap().state, SweepState::Cancelled);
    let r = s.complete(&l.unit_id, l.lease_id, &result(1, "x"), 1, "t");
    assert!(matches!(r, Err(SchedError::Fenced(_))), "{r:?}");
    assert!(s.lease("w", &[], 1, "t").unwrap().is_none());
}

#[test]
fn placement_prefers_workers_holding_the_model() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("a", 1, 1, 1);
    s.submit(row, units, "t").unwrap();
    let (row, mut units) = sweep("b", 1, 1, 1);
    for u in &mut units {
        u.model = "/other".into();
    }
    s.submit(row, units, "t").unwrap();
    let l = s
        .lease("w", &["/other".to_string()], 0, "t")
        .unwrap()
        .unwrap();
    assert_eq!(l.spec.sweep_id, "b");
    let l = s
        .lease("w", &["/other".to_string()], 0, "t")
        .unwrap()
        .unwrap();
    assert_eq!(
        l.spec.sweep_id, "a",
        "other models when nothing of the held one is left"
    );
}

#[test]
fn a_restart_from_the_store_resumes_mid_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let (done_unit, held);
    {
        let mut s = open(&db);
        let (row, units) = sweep("s", 2, 2, 2);
        s.submit(row, units, "t").unwrap();
        let a = s.lease("w1", &[], 0, "t").unwrap().unwrap();
        held = s.lease("w2", &[], 0, "t").unwrap().unwrap();
        assert!(s
            .complete(&a.unit_id, a.lease_id, &result(2, "a"), 5, "t")
            .unwrap());
        done_unit = a.unit_id;
        // The coordinator dies here.
    }
    let mut s = open(&db);
    let p = s.progress("s").unwrap();
    assert_eq!(
        (p.state, p.done, p.leased, p.queued),
        (SweepState::Running, 1, 1, 2)
    );
    // A completed unit stays completed; a held lease stays valid until its deadline and
    // lease ids never repeat.
    assert!(!s
        .complete(&done_unit, 1, &result(2, "dup"), 6, "t")
        .unwrap());
    assert!(s
        .complete(&held.unit_id, held.lease_id, &result(2, "b"), 6, "t")
        .unwrap());
    let mut now = 10;
    let mut seen = vec![held.lease_id];
    while let Some(l) = s.lease("w3", &[], now, "t").unwrap() {
        assert!(!seen.contains(&l.lease_id));
        seen.push(l.lease_id);
        assert!(s
            .complete(&l.unit_id, l.lease_id, &result(2, "v"), now + 1, "t")
            .unwrap());
        now += 2;
    }
    let p = s.progress("s").unwrap();
    assert_eq!((p.state, p.done), (SweepState::Done, 4));
    drop(s);
    assert_eq!(open(&db).progress("s").unwrap().state, SweepState::Done);
}

#[test]
fn simulated_fleet_with_crashing_workers_finishes_every_unit_once() {
    // 5 workers, 40 units; every 7th lease is abandoned (the worker dies). The clock only
    // moves forward; every unit ends with exactly one stored result.
    let mut s = Scheduler::open(
        SqliteStore::in_memory().unwrap(),
        SchedConfig {
            lease_ttl_ms: TTL,
            max_attempts: 10,
        },
    )
    .unwrap();
    let (row, units) = sweep("s", 5, 8, 1);
    s.submit(row, units, "t").unwrap();
    let mut now = 0;
    let mut n = 0u64;
    while !s.progress("s").unwrap().state.is_final() {
        now += 100;
        for w in 0..5 {
            if let Some(l) = s.lease(&format!("w{w}"), &[], now, "t").unwrap() {
                n += 1;
                if !n.is_multiple_of(7) {
                    s.complete(&l.unit_id, l.lease_id, &result(1, "r"), now + 50, "t")
                        .unwrap();
                }
            }
        }
        assert!(now < 1_000_000, "the sweep finishes");
    }
    let p = s.progress("s").unwrap();
    assert_eq!((p.state, p.done), (SweepState::Done, 40));
    assert_eq!(s.results("s").unwrap().len(), 40);
}

#[test]
fn a_released_unit_is_requeued_at_once_without_spending_an_attempt() {
    let mut s = Scheduler::open(SqliteStore::in_memory().unwrap(), cfg()).unwrap();
    let (row, units) = sweep("s", 1, 1, 2);
    s.submit(row, units, "t").unwrap();
    // Released three times (max_attempts is 3), the unit is still leasable.
    for i in 0..3 {
        let l = s.lease("w1", &[], i, "t").unwrap().unwrap();
        s.release(&l.unit_id, l.lease_id, "worker stopping", i)
            .unwrap();
        let p = s.progress("s").unwrap();
        assert_eq!((p.queued, p.leased), (1, 0));
        // The released lease is fenced.
        assert!(matches!(
            s.complete(&l.unit_id, l.lease_id, &result(2, "late"), i, "t"),
            Err(SchedError::Fenced(_))
        ));
    }
    let l = s.lease("w2", &[], 10, "t").unwrap().unwrap();
    assert!(s
        .complete(&l.unit_id, l.lease_id, &result(2, "r"), 11, "t")
        .unwrap());
    assert_eq!(s.progress("s").unwrap().state, SweepState::Done);
}

#[test]
fn release_all_takes_back_every_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    {
        let mut s = open(&db);
        let (row, units) = sweep("s", 1, 3, 1);
        s.submit(row, units, "t").unwrap();
        for w in ["a", "b", "c"] {
            s.lease(w, &[], 0, "t").unwrap().unwrap();
        }
    }
    let mut s = open(&db);
    assert_eq!(s.progress("s").unwrap().leased, 3);
    assert_eq!(s.release_all("interrupted").unwrap(), vec!["s".to_string()]);
    let p = s.progress("s").unwrap();
    assert_eq!((p.queued, p.leased), (3, 0));
    // Leasable at once, long before the old deadlines.
    assert!(s.lease("d", &[], 1, "t").unwrap().is_some());
}

#[test]
fn a_batch_is_durable_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    {
        let mut s = open(&db);
        let (row, units) = sweep("s", 1, 2, 1);
        s.submit(row, units, "t").unwrap();
        s.begin_batch().unwrap();
        let a = s.lease("a", &[], 0, "t").unwrap().unwrap();
        s.complete(&a.unit_id, a.lease_id, &result(1, "r"), 1, "t")
            .unwrap();
        s.end_batch().unwrap();
        // This batch never commits: the coordinator dies inside it.
        s.begin_batch().unwrap();
        let b = s.lease("b", &[], 2, "t").unwrap().unwrap();
        s.complete(&b.unit_id, b.lease_id, &result(1, "r"), 3, "t")
            .unwrap();
        assert_eq!(s.progress("s").unwrap().state, SweepState::Done);
    }
    let s = open(&db);
    let p = s.progress("s").unwrap();
    assert_eq!(
        (p.state, p.done, p.queued, p.leased),
        (SweepState::Running, 1, 1, 0)
    );
    assert_eq!(s.results("s").unwrap().len(), 1);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Lease(u8),
        Complete(u8),
        Fail(u8, bool),
        Release(u8),
        Advance(u16),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4).prop_map(Op::Lease),
            4 => (0u8..8).prop_map(Op::Complete),
            1 => (0u8..8, any::<bool>()).prop_map(|(i, r)| Op::Fail(i, r)),
            1 => (0u8..8).prop_map(Op::Release),
            2 => (0u16..1500).prop_map(Op::Advance),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever workers do (and however often the coordinator restarts), the counts match
        /// the units, lease ids never repeat, a unit has a result exactly when it is done, and
        /// a done unit's first result is the one kept.
        #[test]
        fn scheduler_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
            let tmp = tempfile::tempdir().unwrap();
            let db = tmp.path().join("state.db");
            let mut s = open(&db);
            let (row, units) = sweep("s", 2, 3, 1);
            let total = units.len() as u32;
            s.submit(row, units, "t").unwrap();
            let mut now = 0u64;
            let mut held: Vec<compsafe_coordinator::sched::Lease> = Vec::new();
            let mut leases = std::collections::HashSet::new();
            let mut first_result = std::collections::BTreeMap::new();
            for op in ops {
                match op {
                    Op::Lease(w) => {
                        if let Some(l) = s.lease(&format!("w{w}"), &[], now, "t").unwrap() {
                            prop_assert!(leases.insert(l.lease_id), "lease id repeated");
                            held.push(l);
                        }
                    }
                    Op::Complete(i) if !held.is_empty() => {
                        let l = held.remove(i as usize % held.len());
                        let tag = format!("r{}", l.lease_id);
                        if let Ok(true) = s.complete(&l.unit_id, l.lease_id, &result(1, &tag), now, "t") {
                            prop_assert!(first_result.insert(l.unit_id.clone(), tag).is_none());
                        }
                    }
                    Op::Fail(i, retryable) if !held.is_empty() => {
                        let l = held.remove(i as usize % held.len());
                        let fault = if retryable { Fault::Transient } else { Fault::Input };
                        let _ = s.fail(&l.unit_id, l.lease_id, "boom", fault, now, "t");
                    }
                    Op::Release(i) if !held.is_empty() => {
                        let l = held.remove(i as usize % held.len());
                        let _ = s.release(&l.unit_id, l.lease_id, "bye", now);
                    }
                    Op::Advance(ms) => {
                        now += u64::from(ms);
                        s.expire(now, "t").unwrap();
                    }
                    Op::Restart => {
                        drop(s);
                        s = open(&db);
                    }
                    _ => {}
                }
                let p = s.progress("s").unwrap();
                prop_assert_eq!(p.queued + p.leased + p.done + p.failed, total);
                let stored = s.results("s").unwrap();
                prop_assert_eq!(stored.len() as u32, p.done);
                // Counts kept incrementally agree with a scheduler rebuilt from the store.
                let fresh = open(&db).progress("s").unwrap();
                prop_assert_eq!(
                    (fresh.queued, fresh.leased, fresh.done, fresh.failed, fresh.state),
                    (p.queued, p.leased, p.done, p.failed, p.state)
                );
                for (ord, text) in stored {
                    let r: UnitResult = serde_json::from_str(&text).unwrap();
                    let want = &first_result[&format!("s:{ord}")];
                    prop_assert_eq!(r.variant.name.as_str(), want.as_str());
                }
            }
        }
    }
}
