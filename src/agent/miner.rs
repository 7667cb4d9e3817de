//! One miner inside the agent: its hotkey and dendrite, its state file (locked for the agent's
//! lifetime), and what has already been logged about it.
//!
//! Owns the "log a state change once" rule: after each pass [`Miner::absorb`] compares the pass
//! outcome with what was last logged (each validator's category, the active alerts, the preflight
//! verdict, the miner's own problem) and logs only the differences. Does no network I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::schedule::PlanInput;
use super::status::MinerView;
use crate::config::{MinerSettings, Settings};
use crate::github::{PreflightOutcome, PreflightReport};
use crate::metrics::Metrics;
pub use crate::metrics::ProblemKind;
use crate::observe::Category;
use crate::reconcile::core::{AlertKind, ProbeVerdict};
use crate::reconcile::pass::PassOutcome;
use crate::reconcile::state::{MinerState, StateError, StateFile, StateLock};
use crate::wallet::{Hotkey, WalletError};
use crate::wire::Dendrite;
use crate::wire::dendrite::DendriteOptions;

/// Why a miner could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why a miner cannot be reconciled right now (shown in STATUS and `patrol_miner_problem`).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    /// A problem; anything in `message` that looks like a GitHub token is redacted (it reaches
    /// the log, STATUS and metrics; a PAT error may quote a path someone pasted a token into).
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Problem {
        let message = message.into();
        Problem { kind, message: crate::secret::redact_tokens(&message).into_owned() }
    }

    /// Is it of this kind?
    pub fn is(&self, kind: ProblemKind) -> bool {
        self.kind == kind
    }
}

/// What has been logged already.
#[derive(Debug, Default)]
struct Logged {
    categories: BTreeMap<u16, Category>,
    alerts: BTreeSet<(AlertKind, Option<u16>)>,
    preflight: Option<&'static str>,
    coverage: Option<(usize, usize)>,
    interval: Option<u64>,
}

/// A miner the agent reconciles.
pub struct Miner {
    pub settings: MinerSettings,
    pub hotkey: Arc<Hotkey>,
    pub dendrite: Arc<Dendrite>,
    /// `<state dir>/state-<hotkey>-<netuid>.json`: which miner this is, on disk.
    pub file: StateFile,
    /// Held for the agent's lifetime (`None` in a dry run, which never writes).
    lock: Option<StateLock>,
    pub state: MinerState,
    pub problem: Option<Problem>,
    pub view: MinerView,
    /// Its next round checks every validator not in backoff, not only the due ones: set at start-up
    /// until a round's pass ran (a rotated PAT does the same through the wake-up plan).
    pub force_full: bool,
    /// Why the last save failed (`None`: saved, or nothing saved yet).
    pub save_error: Option<String>,
    logged: Logged,
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner").field("name", &self.settings.name).field("hotkey", &self.hotkey.ss58()).finish()
    }
}

impl Miner {
    /// Open a miner whose hotkey is already loaded: dendrite, state lock (unless `dry_run`), state.
    pub fn open(settings: &Settings, m: &MinerSettings, hotkey: Hotkey, dry_run: bool) -> Result<Miner, MinerError> {
        let hotkey = Arc::new(hotkey);
        let dendrite = dendrite(&hotkey, &settings.agent.external_ip)?;
        let file = StateFile::of(settings, hotkey.ss58());
        let lock = if dry_run { None } else { Some(file.try_lock()?) };
        let state = file.load(hotkey.ss58(), settings.chain.netuid);
        Ok(Miner {
            settings: m.clone(),
            dendrite,
            file,
            lock,
            state,
            problem: None,
            view: MinerView::Pending,
            force_full: true,
            save_error: None,
            logged: Logged::default(),
            hotkey,
        })
    }

    /// Take a reloaded configuration for the same hotkey, state dir and netuid.
    pub fn update(&mut self, settings: &Settings, m: &MinerSettings) -> Result<(), MinerError> {
        if settings.agent.external_ip != self.dendrite.external_ip() {
            self.dendrite = dendrite(&self.hotkey, &settings.agent.external_ip)?;
        }
        self.settings = m.clone();
        Ok(())
    }

    /// The hotkey (SS58).
    pub fn ss58(&self) -> &str {
        self.hotkey.ss58()
    }

    /// The name used in logs and STATUS.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// What the wake-up plan needs to know about this miner.
    pub fn plan_input(&self) -> PlanInput<'_> {
        PlanInput { state: &self.state, blocked: self.problem.is_some(), force_full: self.force_full }
    }

    /// Set (or clear) the miner's problem; logs and updates the metric only on a change.
    pub fn set_problem(&mut self, problem: Option<Problem>, metrics: &Metrics) {
        if self.problem == problem {
            return;
        }
        match (&self.problem, &problem) {
            (_, Some(p)) => tracing::error!(miner = %self.name(), kind = p.kind.as_str(), "{}", p.message),
            (Some(old), None) => {
                tracing::info!(miner = %self.name(), kind = old.kind.as_str(), "resolved: {}", old.message)
            }
            (None, None) => {}
        }
        metrics.set_miner_problem(self.ss58(), problem.as_ref().map(|p| p.kind));
        self.problem = problem;
    }

    /// What STATUS says about this miner.
    pub fn status_view(&self) -> MinerView {
        match &self.problem {
            Some(p) => MinerView::Problem(p.message.clone()),
            None => self.view.clone(),
        }
    }

    /// Take a pass outcome: update the status view and log what changed since the last pass.
    pub fn absorb(&mut self, out: &PassOutcome) {
        self.view = MinerView::of(out);
        self.log_probes(out);
        self.log_budget(out);
        self.log_validators(out);
        self.log_alerts(out);
        if let Some(pf) = &out.preflight {
            self.log_preflight(pf);
        }
        if let MinerView::Coverage { covered, total, stake, .. } = &self.view {
            let now = (*covered, *total);
            if self.logged.coverage != Some(now) {
                tracing::info!(miner = %self.name(), covered, total, stake_pct = format!("{:.1}", stake * 100.0), "coverage {covered}/{total}");
                self.logged.coverage = Some(now);
            }
        }
    }

    /// The routine interval, when the GitHub budget stretches it (logged on a change).
    fn log_budget(&mut self, out: &PassOutcome) {
        let g = &out.github;
        if self.logged.interval == Some(g.interval_s) {
            return;
        }
        let every = |s: u64| humantime::format_duration(Duration::from_secs(s)).to_string();
        if g.interval_s > g.configured_interval_s {
            tracing::warn!(
                miner = %self.name(), budget = g.budget_per_hour, validators = out.validators.len(),
                "checking every {} instead of every {}: that keeps the GitHub calls on the PAT within [reconcile] github_budget ({} an hour) with room for repairs",
                every(g.interval_s), every(g.configured_interval_s), g.budget_per_hour.unwrap_or(0)
            );
        } else if self.logged.interval.is_some() {
            tracing::info!(miner = %self.name(), "checking every {} again", every(g.interval_s));
        }
        self.logged.interval = Some(g.interval_s);
    }

    /// Restarts and revivals the probes found: checked in the same pass (said only when the check
    /// really ran), deferred (said why), or churning (said once, when it starts).
    fn log_probes(&self, out: &PassOutcome) {
        for v in &out.validators {
            let (uid, addr) = (v.validator.uid, v.validator.addr());
            let then = match (&v.checked, v.why.as_deref()) {
                (Some(_), _) => "checked at once".to_string(),
                (None, Some(why)) => format!("not checked yet: {why}"),
                (None, None) => "not checked yet".to_string(),
            };
            match v.probe {
                Some(ProbeVerdict::Restarted) => tracing::info!(
                    miner = %self.name(), uid, %addr, "validator {uid} restarted (new axon uuid); {then}"
                ),
                Some(ProbeVerdict::Revived { silent_for }) => tracing::info!(
                    miner = %self.name(), uid, %addr, silent_s = silent_for, "validator {uid} answers again after {silent_for} s of silence; {then}"
                ),
                Some(ProbeVerdict::Churning { since }) if since == out.started_at => tracing::warn!(
                    miner = %self.name(), uid, %addr,
                    "validator {uid} restarts more than {} times an hour (a crash loop, or several axons behind one address): treated as churn, checked at its routine interval until it settles",
                    crate::reconcile::core::MAX_TRIGGERS
                ),
                Some(ProbeVerdict::Churning { .. }) => {}
                Some(ProbeVerdict::WentSilent(kind)) => tracing::debug!(
                    miner = %self.name(), uid, %addr, kind = kind.as_str(), "validator {uid} stopped answering probes"
                ),
                Some(ProbeVerdict::Quiet) | None => {}
            }
        }
    }

    fn log_validators(&mut self, out: &PassOutcome) {
        let name = self.settings.name.clone();
        let mut seen = BTreeSet::new();
        for v in &out.validators {
            let uid = v.validator.uid;
            seen.insert(uid);
            let Some(now) = v.final_category else { continue };
            let reason = self.state.validators.get(&uid).and_then(|h| h.reason.clone()).unwrap_or_default();
            let addr = v.validator.addr();
            // e.g. a clock behind the validators' (401 "Nonce is too old"): say what to fix
            let hint = v.checked.as_ref().and_then(|c| c.hint.clone()).unwrap_or_default();
            let before = self.logged.categories.insert(uid, now);
            match before {
                None if now.is_covered() => {
                    tracing::debug!(miner = %name, uid, %addr, state = %now, "validator first seen")
                }
                Some(before) if before == now => {}
                Some(before) if now.is_covered() && !before.is_covered() => {
                    tracing::info!(miner = %name, uid, %addr, from = %before, to = %now, "validator {uid} is covered again: {now}")
                }
                Some(before) if now.is_covered() => {
                    tracing::info!(miner = %name, uid, %addr, from = %before, to = %now, "validator {uid} is {now} (was {before})")
                }
                // lost coverage, or uncovered from the start (e.g. after a restart): as loud either way
                _ => tracing::warn!(
                    miner = %name, uid, %addr, from = before.map(tracing::field::display), to = %now, %reason, %hint, action = %v.action, why = v.why.as_deref().unwrap_or(""), next_check_at = v.next_check_at,
                    "validator {uid} is not covered: {now}"
                ),
            }
        }
        let gone: Vec<u16> = self.logged.categories.keys().copied().filter(|u| !seen.contains(u)).collect();
        for uid in gone {
            self.logged.categories.remove(&uid);
            tracing::info!(miner = %name, uid, "validator {uid} left the eligible set");
        }
    }

    fn log_alerts(&mut self, out: &PassOutcome) {
        let now: BTreeSet<(AlertKind, Option<u16>)> = out.alerts.iter().map(|a| (a.kind, a.uid)).collect();
        for a in &out.alerts {
            if !self.logged.alerts.contains(&(a.kind, a.uid)) {
                tracing::warn!(miner = %self.settings.name, kind = a.kind.as_str(), uid = ?a.uid, "{}", a.message);
            }
        }
        for (kind, uid) in self.logged.alerts.difference(&now) {
            tracing::info!(miner = %self.settings.name, kind = kind.as_str(), uid = ?uid, "alert cleared");
        }
        self.logged.alerts = now;
    }

    fn log_preflight(&mut self, pf: &PreflightReport) {
        let label = match &pf.outcome {
            PreflightOutcome::Valid { .. } => "valid",
            PreflightOutcome::Transient { .. } => "transient",
            PreflightOutcome::Invalid { .. } => "invalid",
        };
        if self.logged.preflight == Some(label) {
            return;
        }
        let name = &self.settings.name;
        match &pf.outcome {
            PreflightOutcome::Valid { login, .. } => {
                tracing::info!(miner = %name, %login, "the PAT passes both GitHub checks")
            }
            PreflightOutcome::Transient { reason, .. } => {
                tracing::warn!(miner = %name, %reason, "cannot check the PAT with GitHub right now; not sending it until I can")
            }
            PreflightOutcome::Invalid { reason } => {
                tracing::error!(miner = %name, %reason, "the PAT is invalid (revoked, expired or lacks access); it will not be sent")
            }
        }
        self.logged.preflight = Some(label);
    }

    /// The state file a pass may checkpoint to, if this agent owns it (not in a dry run).
    pub fn checkpoint_file(&self) -> Option<StateFile> {
        self.lock.as_ref().map(|_| self.file.clone())
    }

    /// Re-read the state from disk (after abandoning a pass that may have checkpointed).
    pub fn reload_state(&mut self) {
        if self.lock.is_some() {
            self.state = self.file.load(self.ss58(), self.state.netuid);
        }
    }

    /// Persist the state (not in a dry run). A failure is kept in [`Miner::save_error`] and logged
    /// once per change (a full disk must not write an error line every sweep): the in-memory state
    /// stays good and the next pass tries again.
    pub fn save(&mut self) {
        if self.lock.is_none() {
            return;
        }
        match self.file.save(&self.state) {
            Ok(()) => {
                if let Some(was) = self.save_error.take() {
                    tracing::info!(miner = %self.name(), "the state is saved again (was: {was})");
                }
            }
            Err(e) => {
                let msg = crate::secret::error_chain(&e);
                if self.save_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(miner = %self.name(), error = %msg, "cannot save the state; retrying after every pass");
                }
                self.save_error = Some(msg);
            }
        }
    }
}

fn dendrite(hotkey: &Arc<Hotkey>, external_ip: &str) -> Result<Arc<Dendrite>, MinerError> {
    let opts = DendriteOptions { external_ip: external_ip.to_string(), ..DendriteOptions::default() };
    Ok(Arc::new(Dendrite::new(hotkey.clone(), opts).map_err(MinerError::Http)?))
}
