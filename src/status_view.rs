//! `patrol status` and the agent's `/status`: what patrol knows about each miner and validator,
//! built by one pure function ([`build`]) from the miners' [`MinerState`] — the agent's in-memory
//! state, or the state files when no agent answers — plus what only a running agent knows (its
//! version, uptime, each miner's problem). Both paths give the same JSON for the same state.
//!
//! Nothing here contacts a validator or GitHub: it reads what the last pass recorded.
//!
//! # The verdict (the exit code, as `check`'s)
//! Per miner, over the eligible validators of its last pass: 0 all covered, 1 partial, 2 none
//! covered, 3 undetermined — nobody answered, no pass yet, a problem that stops its passes (not
//! registered, no PAT, no validator source), or a last pass older than [`Limits::stale_after`]
//! (2 × (interval + jitter), as `/readyz`): old state is never a 0. Several miners: the highest
//! code (the worst).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::coverage::{Summary, Verdict};
use crate::observe::{Category, Silence};
use crate::reconcile::core::{self, Alert, Secs};
use crate::reconcile::state::MinerState;

/// What the view is built from, besides the states.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The running agent (`/status`).
    Agent(AgentFacts),
    /// The state files in `state_dir`, because no agent answered (`note` says why).
    StateFiles { state_dir: String, note: String },
}

/// What only a running agent knows about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFacts {
    /// `patrol --version`'s long form.
    pub version: String,
    pub pid: u32,
    #[serde(with = "time_str")]
    pub started_at: Secs,
    /// The next round (every validator whose timer came, on a fresh validator set).
    #[serde(with = "time_str_opt")]
    pub next_round_at: Option<Secs>,
    /// Never sends the PAT, never writes state (`patrol run --dry-run`).
    pub dry_run: bool,
}

/// The settings the verdict depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub netuid: u16,
    /// `[reconcile] interval` and `jitter`: a round runs every interval + up to jitter.
    pub interval: Secs,
    pub jitter: Secs,
    /// `[reconcile] github_budget` (`None`: off).
    pub budget_per_hour: Option<u32>,
}

impl Limits {
    /// The limits of `settings` (the agent's view and the state files' are judged alike).
    pub fn of(settings: &crate::config::Settings) -> Limits {
        Limits {
            netuid: settings.chain.netuid,
            interval: settings.reconcile.interval.as_secs(),
            jitter: settings.reconcile.jitter.as_secs(),
            budget_per_hour: settings.reconcile.github_budget,
        }
    }

    /// A last pass older than this is stale (two rounds missed): exit 3.
    pub fn stale_after(&self) -> Secs {
        2 * (self.interval + self.jitter)
    }
}

/// One miner, as the agent or the state file knows it.
#[derive(Debug, Clone)]
pub struct MinerInput<'a> {
    pub name: &'a str,
    pub hotkey: &'a str,
    pub state: &'a MinerState,
    /// Why it is not reconciled now (the agent's problem, or an unreadable state file).
    pub problem: Option<Problem>,
}

/// One miner as the agent keeps it or the state dir holds it: name, hotkey (SS58), a copy of its
/// state, its problem.
pub type MinerRecord = (String, String, MinerState, Option<Problem>);

impl<'a> MinerInput<'a> {
    /// The inputs of `records`.
    pub fn of(records: &'a [MinerRecord]) -> Vec<MinerInput<'a>> {
        records
            .iter()
            .map(|(name, hotkey, state, problem)| MinerInput { name, hotkey, state, problem: problem.clone() })
            .collect()
    }
}

/// Why a miner is not reconciled now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `not_registered`, `pat_unavailable`, `no_validator_source`, `state_unreadable`.
    pub kind: String,
    pub message: String,
}

/// The whole view (`patrol status --json`, `/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// `agent` or `state_file`.
    pub source: String,
    /// Why the state files were read (no agent answered), else `null`.
    pub note: Option<String>,
    /// Where the state files were read from (`state_file` only).
    pub state_dir: Option<String>,
    #[serde(with = "time_str")]
    pub generated_at: Secs,
    pub agent: Option<AgentView>,
    pub netuid: u16,
    pub interval_s: Secs,
    pub stale_after_s: Secs,
    pub verdict: Verdict,
    pub exit_code: u8,
    pub miners: Vec<MinerView>,
}

/// The agent itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub facts: AgentFacts,
    pub uptime_s: Secs,
}

/// One miner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerView {
    pub name: String,
    pub hotkey: String,
    pub problem: Option<Problem>,
    #[serde(with = "time_str_opt")]
    pub last_pass_at: Option<Secs>,
    #[serde(with = "time_str_opt")]
    pub last_full_coverage_at: Option<Secs>,
    /// No pass for longer than `stale_after_s`.
    pub stale: bool,
    pub verdict: Verdict,
    pub total: usize,
    pub covered: usize,
    /// Validators per category (`pending`: eligible, never checked yet).
    pub counts: BTreeMap<String, usize>,
    pub github: GithubView,
    /// The alerts of the last pass.
    pub alerts: Vec<Alert>,
    pub validators: Vec<ValidatorView>,
}

/// The GitHub calls patrol caused on the miner's PAT (estimated, as the budget counts them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GithubView {
    /// In the hour before now.
    pub spent_last_hour: u32,
    pub budget_per_hour: Option<u32>,
    pub total: u64,
}

/// One eligible validator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorView {
    pub uid: u16,
    pub hotkey: String,
    /// The last check's answer (`null`: not checked yet).
    pub category: Option<Category>,
    /// Since when checks answer `category`.
    #[serde(with = "time_str_opt")]
    pub since: Option<Secs>,
    pub reason: Option<String>,
    #[serde(with = "time_str_opt")]
    pub last_check_at: Option<Secs>,
    /// When it is checked next (`null`: at the next round).
    #[serde(with = "time_str_opt")]
    pub next_check_at: Option<Secs>,
    /// The axon's process uuid, when it was first seen, and how many other uuids replaced it.
    pub axon_uuid: Option<String>,
    #[serde(with = "time_str_opt")]
    pub axon_uuid_since: Option<Secs>,
    pub restarts: u32,
    /// Consecutive failures and the end of the backoff window (`null`: not backing off).
    pub backoff: Option<Backoff>,
    /// Since when, and how, it has not answered.
    pub silent: Option<SilentView>,
    /// Refused the PAT for good (until it changes).
    pub terminal: Option<String>,
    pub broadcasts: u32,
    #[serde(with = "time_str_opt")]
    pub last_broadcast_at: Option<Secs>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub failures: u32,
    #[serde(with = "time_str")]
    pub until: Secs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilentView {
    #[serde(with = "time_str")]
    pub since: Secs,
    pub kind: Silence,
}

/// The view at `now`. Pure.
pub fn build(source: &Source, limits: &Limits, miners: &[MinerInput<'_>], now: Secs) -> StatusView {
    let miners: Vec<MinerView> = miners.iter().map(|m| miner(m, limits, now)).collect();
    let verdict = miners.iter().map(|m| m.verdict).max_by_key(|v| v.exit_code()).unwrap_or(Verdict::Undetermined);
    let (source_label, note, state_dir, agent) = match source {
        Source::Agent(facts) => (
            "agent",
            None,
            None,
            Some(AgentView { facts: facts.clone(), uptime_s: now.saturating_sub(facts.started_at) }),
        ),
        Source::StateFiles { state_dir, note } => ("state_file", Some(note.clone()), Some(state_dir.clone()), None),
    };
    StatusView {
        source: source_label.into(),
        note,
        state_dir,
        generated_at: now,
        agent,
        netuid: limits.netuid,
        interval_s: limits.interval,
        stale_after_s: limits.stale_after(),
        verdict,
        exit_code: verdict.exit_code(),
        miners,
    }
}

fn miner(m: &MinerInput<'_>, limits: &Limits, now: Secs) -> MinerView {
    let st = m.state;
    let validators: Vec<ValidatorView> = core::active(&st.validators).map(|(uid, h)| validator(uid, h, now)).collect();
    // Never checked counts as no answer, as in reports.
    let summary = Summary::of(validators.iter().map(|v| (v.category.unwrap_or(Category::NoResponse), 0.0)));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in &validators {
        *counts.entry(v.category.map_or("pending", Category::as_str).to_string()).or_default() += 1;
    }
    let stale = st.last_pass_at.is_none_or(|t| now.saturating_sub(t) > limits.stale_after());
    let verdict = if m.problem.is_some() || stale { Verdict::Undetermined } else { summary.verdict() };
    MinerView {
        name: m.name.to_string(),
        hotkey: m.hotkey.to_string(),
        problem: m.problem.clone(),
        last_pass_at: st.last_pass_at,
        last_full_coverage_at: st.last_full_coverage_at,
        stale,
        verdict,
        total: summary.total,
        covered: summary.covered,
        counts,
        github: GithubView {
            spent_last_hour: st.github.spent(now),
            budget_per_hour: limits.budget_per_hour,
            total: st.github.total,
        },
        alerts: st.alerts.clone(),
        validators,
    }
}

fn validator(uid: u16, h: &core::History, now: Secs) -> ValidatorView {
    ValidatorView {
        uid,
        hotkey: h.hotkey.clone(),
        category: h.category,
        since: h.category.and(h.category_since),
        reason: h.reason.clone(),
        last_check_at: h.checked_at,
        next_check_at: (h.next_check_at > 0).then_some(h.next_check_at.max(h.not_before)),
        axon_uuid: h.axon_uuid.clone(),
        axon_uuid_since: h.axon_uuid_since,
        restarts: h.restarts,
        backoff: (h.failures > 0 && h.not_before > now)
            .then_some(Backoff { failures: h.failures, until: h.not_before }),
        silent: h.silent.map(|s| SilentView { since: s.since, kind: s.kind }),
        terminal: h.terminal.as_ref().map(|t| t.reason.clone()),
        broadcasts: h.broadcasts,
        last_broadcast_at: h.last_broadcast_at,
    }
}

/// Unix seconds as RFC 3339 in JSON (what a human and `jq` read), parsed back by `patrol status`.
mod time_str {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::reconcile::core::{Secs, rfc3339};

    pub fn serialize<S: Serializer>(t: &Secs, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Secs, String> {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
        Secs::try_from(t.unix_timestamp()).map_err(|_| format!("{text:?} is before 1970"))
    }
}

/// [`time_str`] for an optional time (`null`).
mod time_str_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::reconcile::core::Secs;

    pub fn serialize<S: Serializer>(t: &Option<Secs>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::time_str::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secs>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::time_str::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
