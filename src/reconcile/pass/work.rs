//! What a pass is asked to do: its knobs (from `[reconcile]`) and its work (which validators,
//! probes, the re-assertion, the telemetry preflight), as the agent's scheduler or `reconcile` plan
//! it.

use std::collections::BTreeSet;

use super::super::budget::Budget;
use super::super::core::{Due, Policy};
use super::super::state::PassKind;
use crate::config::Settings;

/// Knobs of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PassConfig {
    pub policy: Policy,
    /// GitHub calls per hour patrol may cause on the PAT.
    pub budget: Budget,
    /// Plan only; never send the PAT.
    pub dry_run: bool,
}

impl PassConfig {
    /// From `[reconcile]`.
    pub fn from_settings(settings: &Settings, dry_run: bool) -> PassConfig {
        PassConfig {
            policy: Policy::from(&settings.reconcile),
            budget: Budget(settings.reconcile.github_budget),
            dry_run,
        }
    }
}

/// What to do in a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Work {
    /// Check these validators (a wake-up's: the agent's scheduler found their timers fired); `None`:
    /// every one that is due by [`Work::due_rule`].
    pub only: Option<BTreeSet<u16>>,
    /// `reconcile` (and the agent's start, a rotation): every validator not in a backoff window is
    /// due; otherwise a validator is due when its own `next_check_at` has come.
    pub one_shot: bool,
    /// Probe these first; the revived and the restarted are checked too, due or not.
    pub probe: BTreeSet<u16>,
    /// Re-establishing coverage (the agent's start, a rotated PAT): the checks have a repair's
    /// priority in the GitHub budget.
    pub reassert: bool,
    /// Probe the validators that answered a check in this pass but whose axon uuid patrol has not
    /// seen yet: a success answer carries none, so without it a restart before the first sweep
    /// (the agent's start, a newcomer) would look like a first meeting, not a restart.
    pub learn_uuids: bool,
    /// When no answer needed a preflight, run one of our own anyway if the last one of this PAT
    /// is [`PREFLIGHT_REFRESH`](super::state::PREFLIGHT_REFRESH) old, so the PAT's validity and
    /// expiry stay known while every validator is covered (the agent's rounds, a `reconcile`).
    pub telemetry_preflight: bool,
}

impl Work {
    /// `patrol reconcile`: everything not in backoff.
    pub fn one_shot() -> Work {
        Work { one_shot: true, ..Work::default() }
    }

    /// Which timer a round or one-shot pass checks a validator by (a wake-up's `only` is decided
    /// already).
    pub fn due_rule(&self) -> Due {
        if self.one_shot { Due::OneShot } else { Due::Timer }
    }

    /// What kind of pass this is (the `pass` span's `kind`): `one_shot` (every validator out of
    /// backoff), `round`, `recheck` (validators whose timers fired) or `sweep` (probes only).
    pub fn label(&self) -> &'static str {
        match &self.only {
            None if self.one_shot => "one_shot",
            None => "round",
            Some(only) if only.is_empty() => "sweep",
            Some(_) => "recheck",
        }
    }

    /// A full pass (every due validator) or one limited to the validators whose timers fired.
    pub fn kind(&self) -> PassKind {
        if self.only.is_some() { PassKind::Recheck } else { PassKind::Full }
    }
}
