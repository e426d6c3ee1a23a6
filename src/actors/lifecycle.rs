//! The lifecycle of an adapter on one device, owned by the merger:
//! `Absent → Fetching → OnHost → Docking → Docked → Undocking → Absent`, `Failed` from any
//! phase (and `Fetching` again from `Failed`). Every move is checked against that graph.

use std::collections::HashMap;

use crate::store::Digest;

/// Where an adapter is on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Absent,
    Fetching,
    OnHost,
    Docking,
    Docked,
    Undocking,
    Failed,
}

/// True when `from → to` is a move of the lifecycle graph.
pub(crate) fn legal(from: Phase, to: Phase) -> bool {
    use Phase::*;
    matches!(
        (from, to),
        (Absent, Fetching)
            | (Fetching, OnHost)
            | (OnHost, Docking)
            | (Docking, Docked)
            | (Docked, Undocking)
            | (Undocking, Absent)
            | (Failed, Fetching)
            | (_, Failed)
    )
}

/// Phases by digest; absent digests are `Absent`.
#[derive(Default)]
pub(crate) struct Lifecycle {
    phases: HashMap<Digest, Phase>,
    illegal: u64,
}

impl Lifecycle {
    pub(crate) fn phase(&self, d: &Digest) -> Phase {
        self.phases.get(d).copied().unwrap_or(Phase::Absent)
    }

    /// Move `d` to `to`; an illegal move is a bug: asserted in debug builds, logged and
    /// counted in release builds (the move is still recorded so the table follows reality).
    pub(crate) fn go(&mut self, d: Digest, to: Phase) {
        let from = self.phase(&d);
        if !legal(from, to) {
            self.illegal += 1;
            debug_assert!(false, "illegal adapter lifecycle move {from:?} -> {to:?} for {d}");
            log::error!("illegal adapter lifecycle move {from:?} -> {to:?} for {d}");
        }
        if to == Phase::Absent {
            self.phases.remove(&d);
        } else {
            self.phases.insert(d, to);
        }
    }

    /// Walk `d` along the graph to `to` through the phases in between (e.g. a fetch whose
    /// digest was unknown until it finished: `Absent → Fetching → OnHost`).
    pub(crate) fn reach(&mut self, d: Digest, to: Phase) {
        use Phase::*;
        let order = [Absent, Fetching, OnHost, Docking, Docked];
        let from = match self.phase(&d) {
            Failed => {
                self.go(d, Fetching);
                Fetching
            }
            p => p,
        };
        let (Some(i), Some(j)) = (order.iter().position(|p| *p == from), order.iter().position(|p| *p == to))
        else {
            self.go(d, to);
            return;
        };
        for p in order.iter().take(j + 1).skip(i + 1) {
            self.go(d, *p);
        }
    }

    #[cfg(test)]
    pub(crate) fn illegal_moves(&self) -> u64 {
        self.illegal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    #[test]
    fn the_full_cycle_is_legal_and_ends_absent() {
        let mut l = Lifecycle::default();
        for p in
            [Phase::Fetching, Phase::OnHost, Phase::Docking, Phase::Docked, Phase::Undocking, Phase::Absent]
        {
            l.go(d(1), p);
        }
        assert_eq!(l.phase(&d(1)), Phase::Absent);
        assert_eq!(l.illegal_moves(), 0);
    }

    #[test]
    fn skipping_phases_is_illegal_but_reach_walks_them() {
        assert!(!legal(Phase::Absent, Phase::Docked));
        assert!(!legal(Phase::Docked, Phase::Absent));
        assert!(legal(Phase::Docking, Phase::Failed));
        let mut l = Lifecycle::default();
        l.reach(d(2), Phase::OnHost);
        assert_eq!(l.phase(&d(2)), Phase::OnHost);
        l.go(d(2), Phase::Failed);
        l.reach(d(2), Phase::Docking);
        assert_eq!(l.phase(&d(2)), Phase::Docking);
        assert_eq!(l.illegal_moves(), 0);
    }
}
