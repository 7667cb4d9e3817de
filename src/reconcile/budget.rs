//! The GitHub budget: how many calls on the miner's PAT patrol may cause per hour, and how the
//! reconciler spends them. Pure: time is passed in.
//!
//! Why: a `PatCheckSynapse` makes the validator call GitHub with our PAT — `GET /user` and, if that
//! succeeds, the GraphQL viewer query — but only when it holds a PAT for us; a broadcast costs the
//! same two calls; the miner's own preflight costs two more. The validators' scoring uses the same
//! token (about one `/user` per validator per two-hour round), so patrol keeps its own traffic to
//! `[reconcile] github_budget` calls an hour (default 150, 3 % of GitHub's 5,000).
//!
//! # Cost model (estimated, per answer category; docs/gittensor-pat-semantics.md §2.3, §2.5)
//! | what | calls |
//! |---|---|
//! | check of a validator that holds a PAT for us (`valid`, `inconclusive`, `invalid_pat`) | 2 |
//! | check answered `no_pat` / `store_unavailable`, no answer, HTTP rejection | 0 |
//! | broadcast | 2 |
//! | our preflight (`/user` + GraphQL) | 2 |
//! | liveness probe | 0 (no handler runs) |
//!
//! # Spending rules
//! - Spending is tracked in a sliding hour ([`Ledger`], persisted with the state, so `reconcile`
//!   from cron and `patrol run` share it).
//! - The routine check interval stretches so that steady-state checks plan for at most
//!   [`ROUTINE_SHARE`] of the budget; validators that lost our PAT in the last
//!   [`LOSS_MEMORY`](super::core::LOSS_MEMORY) are checked twice as often as the others
//!   ([`intervals`]).
//! - Routine checks are admitted while the hour's spending stays under [`ROUTINE_GUARD`] of the
//!   budget. Free checks (a validator not believed to hold a PAT) are always admitted.
//! - Repairs (a broadcast and its confirming check), checks triggered by a restart or a revival,
//!   the checks of a re-assertion (start-up, a rotated PAT) and the preflight never wait for
//!   routine checks: they may fill the hour up to the budget plus one re-assertion
//!   ([`CALLS_PER_REASSERT`] calls) per eligible validator ([`Budget::repair_limit`]). A miner
//!   unscored for an hour after a rotation costs more than a burst of GitHub calls well inside the
//!   token's 5,000 an hour; the spacing and backoff rules keep a repair from repeating, so the
//!   allowance is spent only when coverage was really lost. Steady state (routine checks, the
//!   occasional repair) stays within the budget.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::core::Secs;
use crate::observe::Category;

/// The sliding window.
pub const WINDOW: Secs = 3600;
/// GitHub calls a check of a validator holding a PAT for us costs (REST `/user` + GraphQL).
pub const CALLS_PER_HELD_CHECK: u32 = 2;
/// GitHub calls a broadcast costs at the validator (identity + test query).
pub const CALLS_PER_BROADCAST: u32 = 2;
/// GitHub calls of our own preflight.
pub const CALLS_PER_PREFLIGHT: u32 = 2;
/// A repair: the broadcast plus the check that confirms it.
pub const CALLS_PER_REPAIR: u32 = CALLS_PER_BROADCAST + CALLS_PER_HELD_CHECK;
/// Re-asserting the PAT at one validator: a check, a broadcast, the confirm.
pub const CALLS_PER_REASSERT: u32 = CALLS_PER_HELD_CHECK + CALLS_PER_REPAIR;
/// The share of the budget the routine interval plans for.
pub const ROUTINE_SHARE: f64 = 0.75;
/// Routine checks are deferred once the hour's spending would pass this share of the budget.
pub const ROUTINE_GUARD: f64 = 0.85;
/// The agent's own telemetry preflight runs at most hourly: planned for in the interval.
pub const PREFLIGHTS_PER_HOUR: u32 = 1;
/// The longest the routine interval stretches to.
pub const MAX_INTERVAL: Secs = 24 * 3600;
/// Each eligible validator's share of the repair allowance an hour: one re-assertion (a check, a
/// broadcast, the confirm; or a preflight, a broadcast and the confirm of a wiped store). Held
/// back for it while it is unspent, so no other validator — a churning or hostile one — can spend
/// it ([`Ledger::share_spent`]).
pub const SHARE: u32 = CALLS_PER_REASSERT;

/// What a check answered with `category` cost at the validator.
pub fn check_cost(category: Category) -> u32 {
    if category.holds_a_pat() { CALLS_PER_HELD_CHECK } else { 0 }
}

/// Estimated GitHub calls on the PAT in the last hour, and the lifetime total.
///
/// Entries stamped in the future (a state written while the clock was ahead) are dropped, not
/// trusted: they would hold the budget spent until the clock caught up. Sums saturate (a tampered
/// count must not wrap to a small number).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// `(when, calls)`, oldest first, none older than [`WINDOW`].
    entries: VecDeque<(Secs, u32)>,
    /// Every call ever recorded (the `patrol_github_calls_estimated_total` counter's source).
    #[serde(default)]
    pub total: u64,
    /// Per validator uid: the calls of its priority work (triggered and first checks, repairs),
    /// as `(when, calls)` in the window — what its [`SHARE`] has used.
    #[serde(default)]
    shares: std::collections::BTreeMap<u16, VecDeque<(Secs, u32)>>,
}

/// Keep the entries of the hour before `now`: none older, none in the future.
fn in_window(entries: &mut VecDeque<(Secs, u32)>, now: Secs) {
    entries.retain(|(t, _)| *t <= now && t.saturating_add(WINDOW) > now);
}

fn sum(entries: &VecDeque<(Secs, u32)>, now: Secs) -> u32 {
    entries
        .iter()
        .filter(|(t, _)| *t <= now && t.saturating_add(WINDOW) > now)
        .fold(0u32, |a, (_, c)| a.saturating_add(*c))
}

fn push(entries: &mut VecDeque<(Secs, u32)>, now: Secs, calls: u32) {
    in_window(entries, now);
    match entries.back_mut() {
        Some((t, c)) if *t == now => *c = c.saturating_add(calls),
        _ => entries.push_back((now, calls)),
    }
}

impl Ledger {
    /// Drop what is outside the hour before `now`, future entries included.
    pub fn settle(&mut self, now: Secs) {
        in_window(&mut self.entries, now);
        self.shares.retain(|_, e| {
            in_window(e, now);
            !e.is_empty()
        });
    }

    /// Record `calls` spent at `now`.
    pub fn record(&mut self, now: Secs, calls: u32) {
        if calls == 0 {
            return;
        }
        self.total = self.total.saturating_add(u64::from(calls));
        push(&mut self.entries, now, calls);
    }

    /// Record that `calls` of what [`record`](Self::record) counted were validator `uid`'s
    /// priority work.
    pub fn record_share(&mut self, uid: u16, now: Secs, calls: u32) {
        if calls > 0 {
            push(self.shares.entry(uid).or_default(), now, calls);
        }
    }

    /// Calls spent in the hour before `now`.
    pub fn spent(&self, now: Secs) -> u32 {
        sum(&self.entries, now)
    }

    /// Calls of validator `uid`'s priority work in the hour before `now`.
    pub fn share_spent(&self, uid: u16, now: Secs) -> u32 {
        self.shares.get(&uid).map_or(0, |e| sum(e, now))
    }

    /// Whether `need` more calls at `now` keep the hour within `limit`.
    pub fn fits(&self, now: Secs, need: u32, limit: u32) -> bool {
        self.spent(now).saturating_add(need) <= limit
    }

    /// The earliest time from `now` on at which `need` more calls fit within `limit`.
    pub fn free_at(&self, now: Secs, need: u32, limit: u32) -> Secs {
        if need > limit {
            return now.saturating_add(WINDOW);
        }
        let mut spent = self.spent(now);
        if spent.saturating_add(need) <= limit {
            return now;
        }
        for (t, c) in self.entries.iter().filter(|(t, _)| *t <= now && t.saturating_add(WINDOW) > now) {
            spent = spent.saturating_sub(*c);
            if spent.saturating_add(need) <= limit {
                return t.saturating_add(WINDOW);
            }
        }
        now.saturating_add(WINDOW)
    }
}

/// A budget in calls per hour (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget(pub Option<u32>);

impl Budget {
    /// The budget itself (unlimited: `u32::MAX`).
    pub fn limit(self) -> u32 {
        self.0.unwrap_or(u32::MAX)
    }

    /// What repairs, triggered and re-assertion checks and the preflight may fill the hour up to,
    /// with `eligible` validators: the budget plus one re-assertion of every one of them.
    pub fn repair_limit(self, eligible: usize) -> u32 {
        let wave = u32::try_from(eligible).unwrap_or(u32::MAX).saturating_mul(CALLS_PER_REASSERT);
        self.0.map_or(u32::MAX, |b| b.saturating_add(wave))
    }

    /// What routine checks may fill the hour up to.
    pub fn routine_limit(self) -> u32 {
        self.0.map_or(u32::MAX, |b| (f64::from(b) * ROUTINE_GUARD).floor() as u32)
    }
}

/// Routine check intervals, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// For validators that did not lose our PAT lately.
    pub steady: Secs,
    /// For validators that did ([`super::core::LOSS_MEMORY`]).
    pub lossy: Secs,
}

/// The routine intervals that keep steady-state checks of `steady` + `lossy` validators holding a
/// PAT within [`ROUTINE_SHARE`] of the budget: `base` (the configured interval) when that fits,
/// longer otherwise; lossy validators get half the steady interval, never less than `base`.
pub fn intervals(base: Secs, budget: Budget, steady: usize, lossy: usize) -> Intervals {
    let base = base.max(1);
    let Some(b) = budget.0 else { return Intervals { steady: base, lossy: base } };
    let target = f64::from(b) * ROUTINE_SHARE - f64::from(PREFLIGHTS_PER_HOUR * CALLS_PER_PREFLIGHT);
    let weight = 2.0 * lossy as f64 + steady as f64;
    if weight == 0.0 {
        return Intervals { steady: base, lossy: base };
    }
    let needed = if target <= 0.0 {
        MAX_INTERVAL as f64
    } else {
        f64::from(CALLS_PER_HELD_CHECK) * WINDOW as f64 * weight / target
    };
    let steady = (needed.ceil() as Secs).clamp(base, MAX_INTERVAL.max(base));
    Intervals { steady, lossy: (steady / 2).max(base) }
}

/// Estimated calls an hour that checking `held` validators every `interval` costs, plus the hourly
/// preflight: what `doctor` compares with the budget.
pub fn hourly_cost(held: usize, interval: Secs) -> f64 {
    held as f64 * f64::from(CALLS_PER_HELD_CHECK) * WINDOW as f64 / interval.max(1) as f64
        + f64::from(PREFLIGHTS_PER_HOUR * CALLS_PER_PREFLIGHT)
}

/// What one pass has spent and reserved of the hour's GitHub budget (pure: the ledger and the time
/// are passed in). Holds every eligible validator's share of the repair allowance: priority work
/// at a validator — its restart and first checks, a re-assertion, its repair and the preflight it
/// needs — comes from what is left of its own [`SHARE`] first, and from the allowance only beyond
/// what is held back for every other validator's unspent share, so one validator's churn can never
/// spend another's repair. Routine checks stay under [`Budget::routine_limit`].
#[derive(Debug, Clone)]
pub struct Reservations {
    budget: Budget,
    /// The eligible validators (each has a share).
    eligible: Vec<u16>,
    /// Spent in the hour before the pass, plus what the pass has admitted (estimated).
    reserved: u32,
    /// Priority calls per validator this hour (the ledger's, plus this pass's).
    share_used: std::collections::BTreeMap<u16, u32>,
    /// This pass's priority calls per validator (recorded in the ledger at the end).
    share_pass: std::collections::BTreeMap<u16, u32>,
    /// What each admitted check was estimated to cost, and whether it was priority work.
    estimates: std::collections::BTreeMap<u16, (u32, bool)>,
}

impl Reservations {
    /// A pass starting at `now` over `eligible`, with the hour's spending in `ledger`.
    pub fn new(ledger: &Ledger, budget: Budget, eligible: Vec<u16>, now: Secs) -> Reservations {
        let share_used =
            eligible.iter().map(|uid| (*uid, ledger.share_spent(*uid, now))).filter(|(_, n)| *n > 0).collect();
        Reservations {
            budget,
            eligible,
            reserved: ledger.spent(now),
            share_used,
            share_pass: Default::default(),
            estimates: Default::default(),
        }
    }

    /// Spent in the hour plus admitted by this pass.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }

    /// What priority work may fill the hour up to ([`Budget::repair_limit`]).
    pub fn repair_limit(&self) -> u32 {
        self.budget.repair_limit(self.eligible.len())
    }

    /// What is left of validator `uid`'s share this hour.
    fn unspent(&self, uid: u16) -> u32 {
        SHARE.saturating_sub(self.share_used.get(&uid).copied().unwrap_or(0))
    }

    /// What is held back for every validator's unspent share.
    fn held(&self) -> u32 {
        self.eligible.iter().fold(0u32, |a, u| a.saturating_add(self.unspent(*u)))
    }

    /// Admit `cost` calls of priority work at validator `uid`. What is left of its own share is
    /// always there (the share is one re-assertion an hour, so spending the allowance did not plan
    /// — a check that cost more than estimated, `patrol check` runs — can delay a repair by an hour
    /// at most, never starve it); the rest comes from the allowance beyond what is held back for
    /// the others.
    pub fn admit_priority(&mut self, uid: u16, cost: u32) -> bool {
        if cost == 0 {
            return true;
        }
        let beyond = cost.saturating_sub(self.unspent(uid));
        if beyond > 0 && self.reserved.saturating_add(self.held()).saturating_add(beyond) > self.repair_limit() {
            return false;
        }
        self.add(uid, cost, true);
        true
    }

    /// Admit a routine check costing `cost`: free ones always, the others while the hour stays
    /// under [`Budget::routine_limit`].
    pub fn admit_routine(&mut self, cost: u32) -> bool {
        if cost > 0 && self.reserved.saturating_add(cost) > self.budget.routine_limit() {
            return false;
        }
        self.reserved = self.reserved.saturating_add(cost);
        true
    }

    /// Admit our own hourly telemetry preflight: planned for in the intervals, so only when the
    /// allowance has room beyond what is held back for the validators' repairs.
    pub fn admit_telemetry(&mut self, need: u32) -> bool {
        if self.reserved.saturating_add(self.held()).saturating_add(need) > self.repair_limit() {
            return false;
        }
        self.reserved = self.reserved.saturating_add(need);
        true
    }

    /// A check of `uid` was admitted at an estimated `cost`.
    pub fn estimate(&mut self, uid: u16, cost: u32, priority: bool) {
        self.estimates.insert(uid, (cost, priority));
    }

    /// The check of `uid` cost `actual`: settle it against its estimate.
    pub fn checked(&mut self, uid: u16, actual: u32) {
        if let Some((estimate, priority)) = self.estimates.get(&uid).copied() {
            self.settle(uid, estimate, actual, priority);
        }
    }

    /// Give back calls reserved for `uid` that were not spent (an answer that cost less, a
    /// confirming check that did not happen).
    pub fn refund(&mut self, uid: u16, calls: u32, priority: bool) {
        self.reserved = self.reserved.saturating_sub(calls);
        if priority {
            for m in [&mut self.share_used, &mut self.share_pass] {
                if let Some(n) = m.get_mut(&uid) {
                    *n = n.saturating_sub(calls);
                }
            }
        }
    }

    /// A call to `uid` estimated at `estimate` cost `actual`: give back the difference, or count
    /// what it cost beyond (a validator believed to have lost our PAT that holds one again).
    pub fn settle(&mut self, uid: u16, estimate: u32, actual: u32, priority: bool) {
        if actual <= estimate {
            self.refund(uid, estimate - actual, priority);
        } else {
            self.add(uid, actual - estimate, priority);
        }
    }

    fn add(&mut self, uid: u16, calls: u32, priority: bool) {
        self.reserved = self.reserved.saturating_add(calls);
        if priority {
            // saturating: the ledger's counts come from a state file
            for m in [&mut self.share_used, &mut self.share_pass] {
                let n = m.entry(uid).or_default();
                *n = n.saturating_add(calls);
            }
        }
    }

    /// Record this pass's priority calls per validator in `ledger` (its total is recorded apart).
    pub fn record_shares(&self, ledger: &mut Ledger, now: Secs) {
        for (uid, calls) in &self.share_pass {
            ledger.record_share(*uid, now, *calls);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_the_answer() {
        for c in [Category::Valid, Category::Inconclusive, Category::InvalidPat] {
            assert_eq!(check_cost(c), 2, "{c}");
        }
        for c in [Category::NoPat, Category::StoreUnavailable, Category::NoResponse, Category::Rejected] {
            assert_eq!(check_cost(c), 0, "{c}");
        }
    }

    #[test]
    fn the_ledger_slides() {
        let mut l = Ledger::default();
        l.record(1000, 4);
        l.record(1000, 2);
        l.record(2000, 10);
        l.record(2500, 0);
        assert_eq!(l.spent(2500), 16);
        assert_eq!(l.spent(4600), 10, "the first entry left the window at 4600");
        assert_eq!(l.spent(5600), 0);
        assert_eq!(l.total, 16);
        assert!(l.fits(2500, 4, 20) && !l.fits(2500, 5, 20));
        assert_eq!(l.free_at(2500, 4, 20), 2500);
        assert_eq!(l.free_at(2500, 5, 20), 4600);
        assert_eq!(l.free_at(2500, 15, 20), 5600);
        assert_eq!(l.free_at(2500, 25, 20), 2500 + WINDOW, "never fits: an hour from now");
        // pruned on record, the lifetime total stays
        l.record(9000, 1);
        assert_eq!((l.spent(9000), l.total), (1, 17));
    }

    /// A tampered share count (at `u32::MAX`) neither wraps nor panics when a pass adds to it.
    #[test]
    fn share_counts_saturate_in_a_pass() {
        let mut l = Ledger::default();
        l.record_share(7, 100_000, u32::MAX);
        let mut r = Reservations::new(&l, Budget(Some(150)), vec![7], 100_000);
        r.settle(7, 0, 5, true);
        r.record_shares(&mut l, 100_000);
        assert_eq!(l.share_spent(7, 100_000), u32::MAX);
    }

    /// Issue 20 item 3: a ledger written with the clock ahead, or tampered with.
    #[test]
    fn future_entries_are_dropped_and_sums_saturate() {
        let mut l = Ledger::default();
        l.record(100_000 + 86_400, 100); // a day ahead
        l.record(100_000, 4);
        assert_eq!(l.spent(100_000), 4, "a day-ahead entry is not this hour's spending");
        l.settle(100_000);
        assert_eq!(l.entries, VecDeque::from([(100_000, 4)]));
        // entries after an unexpired one are pruned too (the front is not the only old one)
        let mut l: Ledger =
            serde_json::from_str(r#"{"entries": [[5000, 1], [1000, 7], [4990, 2]], "total": 10}"#).unwrap();
        l.settle(5000);
        assert_eq!(l.entries, VecDeque::from([(5000, 1), (4990, 2)]));
        // a tampered count does not wrap to a small number
        let l: Ledger = serde_json::from_str(r#"{"entries": [[5000, 4294967295], [5000, 3]], "total": 0}"#).unwrap();
        assert_eq!(l.spent(5000), u32::MAX);
        assert!(!l.fits(5000, 1, 1_000_000));
        let mut l = Ledger::default();
        l.record_share(7, 5000, 4);
        l.record_share(7, 6000, 2);
        assert_eq!(l.share_spent(7, 5000), 4, "the later share entry is in the future at 5000");
        assert_eq!((l.share_spent(7, 6000), l.share_spent(7, 9000), l.share_spent(8, 6000)), (6, 2, 0));
    }

    #[test]
    fn intervals_stretch_with_the_held_count() {
        let b = Budget(Some(150));
        // 16 validators at 15 m: 128 + 2 calls/h would pass 75 % (112.5): stretched to ~17.4 m
        let i = intervals(900, b, 16, 0);
        assert_eq!(i, Intervals { steady: 1043, lossy: 900 });
        assert!(hourly_cost(16, i.steady) <= 150.0 * ROUTINE_SHARE + 0.01, "{}", hourly_cost(16, i.steady));
        // few validators: the configured interval
        assert_eq!(intervals(900, b, 7, 0), Intervals { steady: 900, lossy: 900 });
        // lossy ones count double and get half the interval
        let i = intervals(900, b, 60, 4);
        assert_eq!(i.lossy, i.steady / 2);
        let cost = 4.0 * 7200.0 / i.lossy as f64 + 60.0 * 7200.0 / i.steady as f64 + 2.0;
        assert!(cost <= 150.0 * ROUTINE_SHARE + 0.5, "{cost}");
        // no budget: as configured; a budget too small for even the preflight: the cap
        assert_eq!(intervals(900, Budget(None), 256, 0), Intervals { steady: 900, lossy: 900 });
        assert_eq!(intervals(900, Budget(Some(2)), 3, 0).steady, MAX_INTERVAL);
        assert_eq!(Budget(Some(150)).routine_limit(), 127);
        assert_eq!(Budget(None).limit(), u32::MAX);
        // repairs: the budget plus one re-assertion (6 calls) per validator an hour
        assert_eq!(Budget(Some(150)).repair_limit(16), 246);
        assert_eq!(Budget(Some(150)).repair_limit(256), 1686);
        assert_eq!(Budget(Some(150)).repair_limit(0), 150);
        assert_eq!(Budget(None).repair_limit(256), u32::MAX);
    }
}
