//! What a pass produced: per validator what it did and found, the alerts, the preflight, the
//! GitHub spend, the counts the metrics total.

use std::time::Duration;

use super::super::core::{self, Action, ProbeVerdict, Secs};
use super::super::state::{PassKind, Totals};
use crate::github;
use crate::observe::{BroadcastOutcome, Category};
use crate::validators::Validator;

/// What a pass did about one validator (`reconcile --json` `action`, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTaken {
    /// Covered: nothing until the next check.
    None,
    /// The PAT was sent and accepted (then confirmed with a check).
    Broadcast,
    /// Checked again later (backoff, inconclusive, a refused broadcast, spacing, budget).
    Recheck,
    /// Terminal until the PAT changes.
    GiveUp,
    /// Dry run: the PAT would have been sent.
    WouldBroadcast,
    /// Not contacted this pass (its timer has not fired, in backoff, or deferred by the budget).
    NotDue,
}

impl ActionTaken {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionTaken::None => "none",
            ActionTaken::Broadcast => "broadcast",
            ActionTaken::Recheck => "recheck",
            ActionTaken::GiveUp => "give_up",
            ActionTaken::WouldBroadcast => "would_broadcast",
            ActionTaken::NotDue => "not_due",
        }
    }

    pub(super) fn of(a: &Action) -> ActionTaken {
        match a {
            Action::None { .. } => ActionTaken::None,
            Action::Broadcast => ActionTaken::Broadcast,
            Action::Recheck { .. } => ActionTaken::Recheck,
            Action::GiveUp { .. } => ActionTaken::GiveUp,
        }
    }
}

impl std::fmt::Display for ActionTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pass did about one eligible validator.
#[derive(Debug, Clone)]
pub struct ValidatorOutcome {
    pub validator: Validator,
    /// What the first check this pass said, read (`None`: not contacted for a check).
    pub checked: Option<crate::observe::CheckReading>,
    pub action: ActionTaken,
    /// Why (for recheck / give-up / backoff / budget).
    pub why: Option<String>,
    /// Broadcasts sent to it this pass.
    pub attempts: u32,
    /// Category after the pass (confirm check, or the last known one).
    pub final_category: Option<Category>,
    pub next_check_at: Secs,
    pub failures: u32,
    /// What a probe this pass said, if it was probed.
    pub probe: Option<ProbeVerdict>,
}

/// GitHub calls on the PAT: this pass, the last hour, the budget and the intervals it implies.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spend {
    /// Estimated calls this pass caused.
    pub pass_calls: u32,
    /// Estimated calls in the hour up to the end of the pass (this pass included).
    pub last_hour: u32,
    /// Calls per hour allowed (`null`: unlimited).
    pub budget_per_hour: Option<u32>,
    /// `[reconcile] interval`, seconds.
    pub configured_interval_s: Secs,
    /// The routine interval the budget allows (≥ the configured one), seconds.
    pub interval_s: Secs,
    /// The same for validators that lost the PAT lately.
    pub interval_lossy_s: Secs,
    /// Checks deferred this pass to stay within the budget.
    pub deferred: usize,
}

/// Everything a pass produced.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    pub started_at: Secs,
    pub duration: Duration,
    pub validators: Vec<ValidatorOutcome>,
    pub alerts: Vec<core::Alert>,
    /// The preflight, if it ran.
    pub preflight: Option<github::PreflightReport>,
    pub checks: Vec<Category>,
    /// How each broadcast of this pass ended.
    pub broadcasts: Vec<BroadcastOutcome>,
    /// Validators a dry run would have sent the PAT to.
    pub planned_broadcasts: Vec<u16>,
    /// Probes sent this pass.
    pub probes: usize,
    pub github: Spend,
}

impl PassOutcome {
    /// Final coverage categories with stakes (validators never observed count as no_response).
    pub fn final_rows(&self) -> impl Iterator<Item = (Category, f64)> + '_ {
        self.validators.iter().map(|v| (v.final_category.unwrap_or(Category::NoResponse), v.validator.stake))
    }

    /// Restarts and revivals the probes found this pass.
    pub fn restarts(&self) -> usize {
        self.validators.iter().filter(|v| v.probe.is_some_and(ProbeVerdict::is_restart)).count()
    }

    /// Add what this pass did to the lifetime counts.
    pub(super) fn tally(&self, totals: &mut Totals, kind: PassKind) {
        match kind {
            PassKind::Full => totals.passes += 1,
            PassKind::Recheck => totals.rechecks += 1,
        }
        for c in &self.checks {
            *totals.checks.entry(*c).or_default() += 1;
        }
        for b in &self.broadcasts {
            *totals.broadcasts.entry(*b).or_default() += 1;
        }
        totals.probes += self.probes as u64;
        totals.restarts += self.restarts() as u64;
    }
}
