//! One sweep's units in memory: their states, counts, the lease scan's cursor and the
//! pending units per (kind, group, stage) that gate later stages.

use std::collections::BTreeMap;

use compsafe_core::unit::UnitKind;

use crate::store::{SweepRow, UnitRow, UnitState};

pub(super) struct SweepEntry {
    pub(super) row: SweepRow,
    pub(super) units: Vec<UnitRow>,
    /// Every unit before this index is not queued (where the lease scan starts).
    pub(super) cursor: usize,
    /// Units per [`UnitState`] (queued, leased, done, failed).
    pub(super) counts: [u32; 4],
    /// Units without a result per (kind, group, stage): a unit waits while a lower stage of
    /// its kind and group has any.
    pub(super) pending: BTreeMap<(UnitKind, u32, u32), u32>,
}

pub(super) fn slot(state: UnitState) -> usize {
    match state {
        UnitState::Queued => 0,
        UnitState::Leased => 1,
        UnitState::Done => 2,
        UnitState::Failed => 3,
    }
}

impl SweepEntry {
    pub(super) fn new(row: SweepRow, units: Vec<UnitRow>) -> SweepEntry {
        let mut counts = [0; 4];
        let mut pending = BTreeMap::new();
        for u in &units {
            counts[slot(u.state)] += 1;
            if u.state != UnitState::Done {
                *pending.entry((u.kind, u.group, u.stage)).or_insert(0) += 1;
            }
        }
        SweepEntry {
            row,
            units,
            cursor: 0,
            counts,
            pending,
        }
    }

    /// Moves unit `i` to `state`, keeping the counts.
    pub(super) fn set_state(&mut self, i: usize, state: UnitState) {
        let u = &mut self.units[i];
        if u.state == state {
            return;
        }
        self.counts[slot(u.state)] -= 1;
        self.counts[slot(state)] += 1;
        if state == UnitState::Done {
            if let Some(n) = self.pending.get_mut(&(u.kind, u.group, u.stage)) {
                *n = n.saturating_sub(1);
            }
        }
        u.state = state;
    }

    /// Requeues leased unit `i` without counting its attempt.
    pub(super) fn give_back(&mut self, i: usize, reason: &str) {
        self.set_state(i, UnitState::Queued);
        let u = &mut self.units[i];
        u.attempts = u.attempts.saturating_sub(1);
        u.error = reason.to_string();
        self.cursor = self.cursor.min(i);
    }

    /// Whether unit `u` waits for a lower stage of its kind and group.
    pub(super) fn blocked(&self, u: &UnitRow) -> bool {
        let evaluating = || {
            self.pending
                .range((UnitKind::Evaluate, u.group, 0)..=(UnitKind::Evaluate, u.group, u32::MAX))
                .any(|(_, &n)| n > 0)
        };
        self.pending
            .range((u.kind, u.group, 0)..(u.kind, u.group, u.stage))
            .any(|(_, &n)| n > 0)
            || (compsafe_core::unit::waits_for_evaluation(u.kind, u.group) && evaluating())
    }
}
