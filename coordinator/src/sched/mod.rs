//! The scheduling state machine: sweeps, units, leases, fencing and attempts. Time is a
//! parameter (unix milliseconds) so simulations drive it with a fake clock; the actor in
//! [`crate::actor`] owns one instance and feeds it the wall clock.

use std::collections::{BTreeMap, HashSet};

use compsafe_core::unit::{UnitId, UnitKind, UnitResult, UnitSpec};

use crate::store::{Store, StoreError, SweepRow, SweepState, UnitRow, UnitState};

mod entry;
mod types;

use entry::{slot, SweepEntry};
pub use types::{Fault, Lease, Progress, SchedConfig, SchedError};

/// How the error of a sweep failed by a unit's input error begins (the client's exit 2).
pub const INPUT_ERROR: &str = "input error";

/// The scheduler's state, written through to a [`Store`].
pub struct Scheduler<S: Store> {
    store: S,
    cfg: SchedConfig,
    sweeps: BTreeMap<String, SweepEntry>,
    /// Sweep ids in submission order.
    order: Vec<String>,
    next_lease: u64,
    next_worker: u64,
    /// No lease of a running sweep ends before this (a lower bound; `u64::MAX`: none).
    earliest_deadline: u64,
    /// Last call of each worker (unix milliseconds).
    seen: std::collections::HashMap<String, u64>,
}

impl<S: Store> std::fmt::Debug for Scheduler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("sweeps", &self.order)
            .finish_non_exhaustive()
    }
}

fn parse_unit_id(id: &str) -> Result<UnitId, SchedError> {
    id.parse().map_err(SchedError::Invalid)
}

impl<S: Store> Scheduler<S> {
    /// Restores the scheduler from what `store` holds (empty for a new store).
    pub fn open(store: S, cfg: SchedConfig) -> Result<Scheduler<S>, SchedError> {
        let (rows, units) = store.load()?;
        let mut by_sweep: BTreeMap<String, Vec<UnitRow>> = BTreeMap::new();
        let mut next_lease = 1;
        for u in units {
            next_lease = next_lease.max(u.lease_id + 1);
            by_sweep.entry(u.sweep_id.clone()).or_default().push(u);
        }
        let mut sweeps = BTreeMap::new();
        let mut order = Vec::new();
        for row in rows {
            order.push(row.id.clone());
            let mut units = by_sweep.remove(&row.id).unwrap_or_default();
            units.sort_by_key(|u| u.ordinal);
            sweeps.insert(row.id.clone(), SweepEntry::new(row, units));
        }
        Ok(Scheduler {
            store,
            cfg,
            sweeps,
            order,
            next_lease,
            next_worker: 1,
            // Leases held when the store was written may have ended meanwhile.
            earliest_deadline: 0,
            seen: std::collections::HashMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> SchedConfig {
        self.cfg
    }

    /// Adds a planned sweep. A sweep without units is done at once.
    pub fn submit(
        &mut self,
        mut row: SweepRow,
        units: Vec<UnitRow>,
        now_rfc3339: &str,
    ) -> Result<Progress, SchedError> {
        if self.sweeps.contains_key(&row.id) {
            return Err(SchedError::Invalid(format!(
                "sweep {} already exists",
                row.id
            )));
        }
        if units.is_empty() {
            row.state = SweepState::Done;
            row.finished_at = Some(now_rfc3339.to_string());
        }
        self.store.create_sweep(&row, &units)?;
        let id = row.id.clone();
        self.order.push(id.clone());
        self.sweeps.insert(id.clone(), SweepEntry::new(row, units));
        self.progress(&id)
    }

    /// Gives a worker its id.
    pub fn register(&mut self) -> String {
        let id = format!("w{}", self.next_worker);
        self.next_worker += 1;
        id
    }

    /// Counts of one sweep.
    pub fn progress(&self, id: &str) -> Result<Progress, SchedError> {
        let s = self
            .sweeps
            .get(id)
            .ok_or_else(|| SchedError::NotFound(format!("sweep {id}")))?;
        Ok(Progress {
            id: s.row.id.clone(),
            name: s.row.name.clone(),
            state: s.row.state,
            queued: s.counts[0],
            leased: s.counts[1],
            done: s.counts[2],
            failed: s.counts[3],
            total: s.units.len() as u32,
            error: s.row.error.clone(),
        })
    }

    /// Counts of every sweep, in submission order.
    pub fn list(&self) -> Vec<Progress> {
        self.order
            .iter()
            .filter_map(|id| self.progress(id).ok())
            .collect()
    }

    /// The stored sweep.
    pub fn sweep(&self, id: &str) -> Result<SweepRow, SchedError> {
        self.sweeps
            .get(id)
            .map(|s| s.row.clone())
            .ok_or_else(|| SchedError::NotFound(format!("sweep {id}")))
    }

    /// The stored results of a sweep, by unit ordinal.
    pub fn results(&self, id: &str) -> Result<Vec<(u32, String)>, SchedError> {
        self.sweep(id)?;
        Ok(self.store.results(id)?)
    }

    /// Cancels a running sweep; its queued units are no longer leased and results of its
    /// leased units are refused. Returns the ids of sweeps whose progress changed.
    pub fn cancel(&mut self, id: &str, now_rfc3339: &str) -> Result<Progress, SchedError> {
        let s = self
            .sweeps
            .get_mut(id)
            .ok_or_else(|| SchedError::NotFound(format!("sweep {id}")))?;
        if !s.row.state.is_final() {
            s.row.state = SweepState::Cancelled;
            s.row.finished_at = Some(now_rfc3339.to_string());
            self.store.save_sweep(&s.row)?;
        }
        self.progress(id)
    }

    /// Requeues (or fails, when out of attempts) every unit whose lease expired before `now`.
    /// Returns the ids of sweeps whose progress changed.
    pub fn expire(&mut self, now: u64, now_rfc3339: &str) -> Result<Vec<String>, SchedError> {
        let mut changed = Vec::new();
        if now <= self.earliest_deadline {
            return Ok(changed);
        }
        let max = self.cfg.max_attempts;
        let mut earliest = u64::MAX;
        for s in self.sweeps.values_mut() {
            if s.row.state.is_final() || s.counts[slot(UnitState::Leased)] == 0 {
                continue;
            }
            let mut touched = false;
            let mut failure = None;
            for i in 0..s.units.len() {
                let u = &s.units[i];
                if u.state != UnitState::Leased {
                    continue;
                }
                if u.deadline_ms >= now {
                    earliest = earliest.min(u.deadline_ms);
                    continue;
                }
                s.cursor = s.cursor.min(i);
                touched = true;
                let error = format!("lease {} held by {} expired", u.lease_id, u.worker);
                let next = if u.attempts >= max {
                    failure = Some(format!(
                        "unit {} failed after {} attempts: {error}",
                        u.id(),
                        u.attempts
                    ));
                    UnitState::Failed
                } else {
                    UnitState::Queued
                };
                s.set_state(i, next);
                let u = &mut s.units[i];
                u.error = error;
                self.store.save_unit(u)?;
            }
            if let Some(err) = failure {
                s.row.state = SweepState::Failed;
                s.row.error = Some(err);
                s.row.finished_at = Some(now_rfc3339.to_string());
                self.store.save_sweep(&s.row)?;
            }
            if touched {
                changed.push(s.row.id.clone());
            }
        }
        self.earliest_deadline = earliest;
        Ok(changed)
    }

    /// The results of the units `u` depends on, in plan order.
    fn inputs_of(&self, s: &SweepEntry, u: &UnitRow) -> Result<Vec<UnitResult>, SchedError> {
        let me = u.planned();
        let mut out = Vec::new();
        for d in s
            .units
            .iter()
            .filter(|d| compsafe_core::unit::depends_on(&me, &d.planned()))
        {
            let Some(text) = self.store.result(&d.sweep_id, d.ordinal)? else {
                continue;
            };
            out.push(serde_json::from_str(&text).map_err(|e| {
                SchedError::Store(StoreError::Corrupt(format!(
                    "stored result of {}: {e}",
                    d.id()
                )))
            })?);
        }
        Ok(out)
    }

    /// Leases the next unit to `worker`: running sweeps in submission order, units in plan
    /// order, a unit only once the lower stages of its kind and group are done (a variant
    /// unit once the reference units of its suite are); units of a model in `loaded` first.
    /// `None` when nothing is leasable now.
    pub fn lease(
        &mut self,
        worker: &str,
        loaded: &[String],
        now: u64,
        now_rfc3339: &str,
    ) -> Result<Option<Lease>, SchedError> {
        self.expire(now, now_rfc3339)?;
        let loaded: HashSet<&str> = loaded.iter().map(String::as_str).collect();
        let mut pick: Option<(String, usize)> = None;
        'outer: for prefer_loaded in [true, false] {
            if prefer_loaded && loaded.is_empty() {
                continue;
            }
            for id in &self.order {
                let s = &self.sweeps[id];
                if s.row.state != SweepState::Running {
                    continue;
                }
                for (i, u) in s.units.iter().enumerate().skip(s.cursor) {
                    if u.state != UnitState::Queued
                        || (prefer_loaded && !loaded.contains(u.model.as_str()))
                    {
                        continue;
                    }
                    if s.blocked(u) {
                        continue;
                    }
                    pick = Some((id.clone(), i));
                    break 'outer;
                }
            }
        }
        let Some((sid, i)) = pick else {
            return Ok(None);
        };
        let deps = {
            let s = &self.sweeps[&sid];
            let u = &s.units[i];
            if u.stage == 0 {
                Vec::new()
            } else {
                self.inputs_of(s, u)?
            }
        };
        let lease_id = self.next_lease;
        self.next_lease += 1;
        let s = self.sweeps.get_mut(&sid).expect("picked sweep exists");
        s.set_state(i, UnitState::Leased);
        let u = &mut s.units[i];
        u.attempts += 1;
        u.lease_id = lease_id;
        u.deadline_ms = now + self.cfg.lease_ttl_ms;
        u.worker = worker.to_string();
        self.earliest_deadline = self.earliest_deadline.min(u.deadline_ms);
        self.store.save_unit(u)?;
        while s.cursor < s.units.len() && s.units[s.cursor].state != UnitState::Queued {
            s.cursor += 1;
        }
        let u = &s.units[i];
        Ok(Some(Lease {
            unit_id: u.id(),
            lease_id,
            deadline_ms: u.deadline_ms,
            spec: UnitSpec::new(
                &sid,
                u.ordinal,
                (&s.row.spec_text, &s.row.spec_path),
                &u.planned(),
                &deps.iter().collect::<Vec<_>>(),
            )
            .started(&s.row.started_at),
        }))
    }

    fn current<'a>(
        sweeps: &'a mut BTreeMap<String, SweepEntry>,
        unit_id: &str,
    ) -> Result<(&'a mut SweepEntry, usize), SchedError> {
        let id = parse_unit_id(unit_id)?;
        let ord = id.ordinal;
        let s = sweeps
            .get_mut(&id.sweep.0)
            .ok_or_else(|| SchedError::NotFound(format!("sweep {}", id.sweep)))?;
        if ord as usize >= s.units.len() {
            return Err(SchedError::NotFound(format!("unit {unit_id}")));
        }
        Ok((s, ord as usize))
    }

    fn check_lease(row: &SweepRow, u: &UnitRow, lease_id: u64, now: u64) -> Result<(), SchedError> {
        if row.state == SweepState::Cancelled {
            return Err(SchedError::Fenced(format!(
                "sweep {} was cancelled",
                row.id
            )));
        }
        if u.lease_id == lease_id && u.state != UnitState::Leased {
            return Err(SchedError::Fenced(format!(
                "lease {lease_id} of unit {} has ended: {}",
                u.id(),
                u.error
            )));
        }
        if u.state != UnitState::Leased || u.lease_id != lease_id {
            return Err(SchedError::Fenced(format!(
                "lease {lease_id} of unit {} is no longer current",
                u.id()
            )));
        }
        if now > u.deadline_ms {
            return Err(SchedError::Fenced(format!(
                "lease {lease_id} of unit {} expired",
                u.id()
            )));
        }
        Ok(())
    }

    /// Extends a current lease; returns the new deadline.
    pub fn renew(&mut self, unit_id: &str, lease_id: u64, now: u64) -> Result<u64, SchedError> {
        let ttl = self.cfg.lease_ttl_ms;
        let (s, i) = Self::current(&mut self.sweeps, unit_id)?;
        Self::check_lease(&s.row, &s.units[i], lease_id, now)?;
        let u = &mut s.units[i];
        u.deadline_ms = now + ttl;
        self.store.save_unit(u)?;
        Ok(u.deadline_ms)
    }

    /// Stores the result of a current lease. `Ok(false)` when the unit already had a result:
    /// the duplicate changes nothing. A result of an expired or superseded lease is refused.
    pub fn complete(
        &mut self,
        unit_id: &str,
        lease_id: u64,
        result: &str,
        now: u64,
        now_rfc3339: &str,
    ) -> Result<bool, SchedError> {
        let (s, i) = Self::current(&mut self.sweeps, unit_id)?;
        if s.units[i].state == UnitState::Done {
            return Ok(false);
        }
        Self::check_lease(&s.row, &s.units[i], lease_id, now)?;
        let parsed: UnitResult = serde_json::from_str(result)
            .map_err(|e| SchedError::Invalid(format!("result of unit {unit_id}: {e}")))?;
        let u = &s.units[i];
        // A variant that failed before evaluation (its files do not match their pins)
        // reports no records, by design; an analysis unit reports its result instead.
        let expected = if parsed.variant.failed() || u.kind != UnitKind::Evaluate {
            0
        } else {
            (u.end - u.start) as usize
        };
        if parsed.records.len() != expected {
            return Err(SchedError::Invalid(format!(
                "result of unit {unit_id} has {} records, expected {expected}",
                parsed.records.len()
            )));
        }
        if u.kind != UnitKind::Evaluate && !parsed.variant.failed() && parsed.analysis.is_none() {
            return Err(SchedError::Invalid(format!(
                "result of {} unit {unit_id} has no analysis result",
                u.kind
            )));
        }
        s.set_state(i, UnitState::Done);
        let u = &mut s.units[i];
        u.error.clear();
        self.store.complete_unit(u, result)?;
        if s.counts[slot(UnitState::Done)] as usize == s.units.len() {
            s.row.state = SweepState::Done;
            s.row.finished_at = Some(now_rfc3339.to_string());
            self.store.save_sweep(&s.row)?;
        }
        Ok(true)
    }

    /// Records a failure of a current lease: a transient failure requeues the unit while it
    /// has attempts left; otherwise the unit (and its sweep) fail with `reason`.
    pub fn fail(
        &mut self,
        unit_id: &str,
        lease_id: u64,
        reason: &str,
        fault: Fault,
        now: u64,
        now_rfc3339: &str,
    ) -> Result<(), SchedError> {
        let max = self.cfg.max_attempts;
        let (s, i) = Self::current(&mut self.sweeps, unit_id)?;
        Self::check_lease(&s.row, &s.units[i], lease_id, now)?;
        if fault == Fault::Transient && s.units[i].attempts < max {
            s.set_state(i, UnitState::Queued);
            s.units[i].error = reason.to_string();
            self.store.save_unit(&s.units[i])?;
            s.cursor = s.cursor.min(i);
        } else {
            s.set_state(i, UnitState::Failed);
            let u = &mut s.units[i];
            u.error = reason.to_string();
            self.store.save_unit(u)?;
            s.row.state = SweepState::Failed;
            s.row.error = Some(match fault {
                Fault::Transient => format!(
                    "unit {} failed after {} attempts: {reason}",
                    u.id(),
                    u.attempts
                ),
                Fault::Input => format!("{INPUT_ERROR} in unit {}: {reason}", u.id()),
                Fault::Internal => format!("engine error in unit {}: {reason}", u.id()),
            });
            s.row.finished_at = Some(now_rfc3339.to_string());
            self.store.save_sweep(&s.row)?;
        }
        Ok(())
    }

    /// Takes back a current lease unfinished (its worker is shutting down): the unit is
    /// requeued and the attempt is not counted.
    pub fn release(
        &mut self,
        unit_id: &str,
        lease_id: u64,
        reason: &str,
        now: u64,
    ) -> Result<(), SchedError> {
        let (s, i) = Self::current(&mut self.sweeps, unit_id)?;
        Self::check_lease(&s.row, &s.units[i], lease_id, now)?;
        s.give_back(i, reason);
        self.store.save_unit(&s.units[i])?;
        Ok(())
    }

    /// Takes back every lease of every running sweep, as [`Scheduler::release`] does: for a
    /// coordinator that knows its earlier workers are gone (an interrupted local run).
    /// Returns the ids of sweeps whose progress changed.
    pub fn release_all(&mut self, reason: &str) -> Result<Vec<String>, SchedError> {
        let mut changed = Vec::new();
        for s in self.sweeps.values_mut() {
            if s.row.state.is_final() || s.counts[slot(UnitState::Leased)] == 0 {
                continue;
            }
            for i in 0..s.units.len() {
                if s.units[i].state == UnitState::Leased {
                    s.give_back(i, reason);
                    self.store.save_unit(&s.units[i])?;
                }
            }
            changed.push(s.row.id.clone());
        }
        Ok(changed)
    }

    /// Units of running sweeps per state: queued, leased, done, failed.
    pub fn totals(&self) -> [u64; 4] {
        let mut t = [0u64; 4];
        for s in self.sweeps.values() {
            if s.row.state == SweepState::Running {
                for (a, b) in t.iter_mut().zip(s.counts) {
                    *a += u64::from(b);
                }
            }
        }
        t
    }

    /// Notes that `worker` called at `now`.
    pub fn touch(&mut self, worker: &str, now: u64) {
        if let Some(t) = self.seen.get_mut(worker) {
            *t = now;
        } else {
            self.seen.insert(worker.to_string(), now);
        }
    }

    /// Workers that called within one lease duration of `now`; forgets the others.
    pub fn active_workers(&mut self, now: u64) -> usize {
        let horizon = now.saturating_sub(self.cfg.lease_ttl_ms);
        self.seen.retain(|_, t| *t >= horizon);
        self.seen.len()
    }

    /// Starts a group of store writes made durable together by [`Scheduler::end_batch`].
    pub fn begin_batch(&mut self) -> Result<(), SchedError> {
        Ok(self.store.begin_batch()?)
    }

    /// Makes the store writes since [`Scheduler::begin_batch`] durable.
    pub fn end_batch(&mut self) -> Result<(), SchedError> {
        Ok(self.store.end_batch()?)
    }

    /// The ids of sweeps a unit belongs to (for progress notifications).
    pub fn sweep_of(unit_id: &str) -> Option<String> {
        parse_unit_id(unit_id).ok().map(|id| id.sweep.0)
    }

    /// The units of a sweep, in plan order.
    pub fn units(&self, id: &str) -> Result<Vec<UnitRow>, SchedError> {
        self.sweeps
            .get(id)
            .map(|s| s.units.clone())
            .ok_or_else(|| SchedError::NotFound(format!("sweep {id}")))
    }
}
