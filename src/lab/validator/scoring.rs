//! The scoring-round gate (`reward.get_rewards` → `inspections.validate_response_and_initialize_
//! miner_evaluation`, `Validator.store_or_use_cached_evaluation`, `detect_and_penalize_miners_
//! sharing_github`, `update_scores`), semantics doc §2.7.
//!
//! Pure: GitHub's identity answers and the PR fetch are passed in as closures, so a simulation can
//! run thousands of rounds without sockets and show what a lost PAT costs (one round at 0 leaves
//! 30% of the EMA, two leave 9%). Owns the per-round evaluation, the evaluation cache (in memory,
//! lost on restart) and the EMA scores; it does not read the store (callers pass a [`StoreSnapshot`]).

use std::collections::{BTreeMap, BTreeSet};

use super::store::{RawPat, StoreSnapshot};
use super::{Metagraph, short_hotkey};
use crate::github::IdentityResult;

/// Upstream's `RECYCLE_UID`.
pub const RECYCLE_UID: u16 = 0;

/// `neuron.moving_average_alpha` default.
pub const DEFAULT_ALPHA: f64 = 0.7;

/// What the PR fetch (mirror service) returned for a miner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PrFetch {
    /// PRs loaded and scored: the raw score (`total_score`) and how many PRs it came from.
    Loaded { score: f64, total_prs: u32 },
    /// The fetch failed (`github_pr_fetch_failed`): the cache may stand in.
    Failed,
}

/// One miner's evaluation in one round (the fields of upstream's `MinerEvaluation` that matter).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub uid: u16,
    /// Empty for uid 0 and empty slots, as upstream.
    pub hotkey: String,
    pub github_id: Option<String>,
    /// Why the miner scores nothing this round; `None` = evaluated.
    pub failed_reason: Option<String>,
    /// `github_pr_fetch_failed`: identity transient (stored id used) or the PR fetch failed.
    pub fetch_failed: bool,
    /// Raw score before normalisation.
    pub score: f64,
    pub total_prs: u32,
    /// This round's evaluation is last round's, restored from the cache.
    pub from_cache: bool,
}

impl Evaluation {
    fn new(uid: u16, hotkey: &str) -> Evaluation {
        Evaluation {
            uid,
            hotkey: hotkey.to_string(),
            github_id: None,
            failed_reason: None,
            fetch_failed: false,
            score: 0.0,
            total_prs: 0,
            from_cache: false,
        }
    }

    fn failed(uid: u16, hotkey: &str, reason: String) -> Evaluation {
        Evaluation { failed_reason: Some(reason), ..Evaluation::new(uid, hotkey) }
    }
}

/// `validate_response_and_initialize_miner_evaluation` plus the PR fetch, for one uid. `identity`
/// is asked only when a usable PAT exists; `prs` only when the identity is known and fresh.
pub fn evaluate_uid(
    uid: u16,
    hotkey: Option<&str>,
    snapshot: &StoreSnapshot,
    identity: impl FnOnce(&RawPat) -> IdentityResult,
    prs: impl FnOnce(&str) -> PrFetch,
) -> Evaluation {
    if uid == RECYCLE_UID {
        return Evaluation::failed(uid, "", "SPECIAL CASE UID 0 - RECYCLE UID".into());
    }
    let Some(hotkey) = hotkey.filter(|h| !h.is_empty()) else {
        return Evaluation::failed(uid, "", format!("No hotkey for miner {uid}"));
    };
    let (mut pat, mut stale, mut stored_id) = (None, None, None);
    if let Some(entry) = snapshot.entries.get(&uid) {
        if entry.hotkey.as_deref() == Some(hotkey) {
            pat = Some(&entry.pat);
            stored_id = entry.github_id.as_deref();
        } else {
            stale = entry.hotkey.as_deref();
        }
    }
    let Some(pat) = pat.filter(|p| !p.is_empty()) else {
        let reason = match stale.filter(|s| !s.is_empty()) {
            Some(old) => format!(
                "New miner registered on UID {uid}: hotkey changed {}... → {}... — miner must run `gitt miner post`",
                short_hotkey(old),
                short_hotkey(hotkey)
            ),
            None => format!("No stored PAT for miner {uid} — miner must run `gitt miner post`"),
        };
        return Evaluation::failed(uid, hotkey, reason);
    };
    let mut eval = Evaluation::new(uid, hotkey);
    match identity(pat) {
        IdentityResult::Valid { id, .. } => eval.github_id = Some(id),
        IdentityResult::Transient { .. } => match stored_id.filter(|id| !id.is_empty() && *id != "0") {
            // validate_github_credentials_result: the stored id stands in, PRs are not fetched.
            Some(id) => {
                eval.github_id = Some(id.to_string());
                eval.fetch_failed = true;
                return eval;
            }
            None => {
                eval.failed_reason = Some(format!(
                    "Could not validate Github id for miner {uid}: GitHub /user lookup failed transiently"
                ));
                return eval;
            }
        },
        IdentityResult::InvalidAuth { .. } => {
            eval.failed_reason = Some(format!("No Github id found for miner {uid}'s PAT"));
            return eval;
        }
    }
    match prs(eval.github_id.as_deref().unwrap_or_default()) {
        PrFetch::Loaded { score, total_prs } => {
            eval.score = if score.is_finite() { score.max(0.0) } else { 0.0 };
            eval.total_prs = total_prs;
        }
        PrFetch::Failed => eval.fetch_failed = true,
    }
    eval
}

/// Everything one round produced.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    pub evaluations: BTreeMap<u16, Evaluation>,
    /// Normalised rewards of this round (sum 1 when anyone scored).
    pub rewards: BTreeMap<u16, f64>,
    /// Uids restored from the cache.
    pub cached: BTreeSet<u16>,
    /// Uids zeroed for sharing a GitHub account.
    pub penalized: BTreeSet<u16>,
    /// Why the store snapshot was empty, when it was unreadable.
    pub snapshot_problem: Option<String>,
}

/// A validator's scoring state across rounds: EMA scores and the evaluation cache.
#[derive(Debug, Clone)]
pub struct ScoringGate {
    alpha: f64,
    scores: BTreeMap<u16, f64>,
    hotkeys: BTreeMap<u16, String>,
    cache: BTreeMap<u16, Evaluation>,
}

impl Default for ScoringGate {
    fn default() -> Self {
        ScoringGate::new(DEFAULT_ALPHA)
    }
}

impl ScoringGate {
    /// Fresh state with EMA weight `alpha` on the new round.
    pub fn new(alpha: f64) -> ScoringGate {
        ScoringGate {
            alpha: alpha.clamp(0.0, 1.0),
            scores: BTreeMap::new(),
            hotkeys: BTreeMap::new(),
            cache: BTreeMap::new(),
        }
    }

    /// One scoring round over `uids`: evaluate each (store read once, as `snapshot`), apply the
    /// cache fallback and the duplicate-account penalty, normalise, update the EMA.
    pub fn run_round(
        &mut self,
        metagraph: &Metagraph,
        uids: impl IntoIterator<Item = u16>,
        snapshot: &StoreSnapshot,
        mut identity: impl FnMut(u16, &RawPat) -> IdentityResult,
        mut prs: impl FnMut(u16, &str) -> PrFetch,
    ) -> RoundReport {
        let mut evaluations = BTreeMap::new();
        for uid in uids {
            let hotkey = metagraph.hotkey_of(uid);
            let e = evaluate_uid(uid, hotkey, snapshot, |p| identity(uid, p), |id| prs(uid, id));
            evaluations.insert(uid, e);
        }
        let mut cached = self.store_or_use_cached(&mut evaluations);
        let penalized = penalize_shared_accounts(&mut evaluations);
        cached.retain(|u| !penalized.contains(u));
        for u in &penalized {
            self.cache.remove(u);
        }
        let rewards = normalize(&evaluations);
        self.update_scores(metagraph, &rewards, &penalized);
        RoundReport { evaluations, rewards, cached, penalized, snapshot_problem: snapshot.problem.clone() }
    }

    /// `store_or_use_cached_evaluation`: cache every successful fetch; on a failed one, restore the
    /// cached evaluation only if hotkey and github id match and it had PRs.
    fn store_or_use_cached(&mut self, evaluations: &mut BTreeMap<u16, Evaluation>) -> BTreeSet<u16> {
        let mut cached = BTreeSet::new();
        for (uid, e) in evaluations.iter_mut() {
            if e.failed_reason.is_some() {
                continue;
            }
            if !e.fetch_failed {
                self.cache.insert(*uid, e.clone());
                continue;
            }
            if let Some(c) =
                self.cache.get(uid).filter(|c| c.hotkey == e.hotkey && c.github_id == e.github_id && c.total_prs > 0)
            {
                *e = Evaluation { from_cache: true, ..c.clone() };
                cached.insert(*uid);
            }
        }
        cached
    }

    /// `update_scores`: EMA over the round's uids; penalized uids drop to 0 at once. A uid whose
    /// hotkey changed since the last round starts from 0 (the metagraph resync).
    fn update_scores(&mut self, metagraph: &Metagraph, rewards: &BTreeMap<u16, f64>, penalized: &BTreeSet<u16>) {
        for (&uid, &reward) in rewards {
            let hotkey = metagraph.hotkey_of(uid).unwrap_or_default();
            if self.hotkeys.get(&uid).is_some_and(|h| h != hotkey) {
                self.scores.insert(uid, 0.0);
            }
            self.hotkeys.insert(uid, hotkey.to_string());
            let old = self.scores.get(&uid).copied().unwrap_or(0.0);
            self.scores.insert(uid, self.alpha * reward + (1.0 - self.alpha) * old);
        }
        for u in penalized {
            self.scores.insert(*u, 0.0);
        }
    }

    /// EMA scores by uid.
    pub fn scores(&self) -> &BTreeMap<u16, f64> {
        &self.scores
    }

    /// Weights as set on chain: scores L1-normalised (all zero when nobody scores).
    pub fn weights(&self) -> BTreeMap<u16, f64> {
        let total: f64 = self.scores.values().sum();
        self.scores.iter().map(|(&u, &s)| (u, if total > 0.0 { s / total } else { 0.0 })).collect()
    }

    /// A validator restart: the in-memory evaluation cache is lost; scores survive (state file).
    pub fn restart(&mut self) {
        self.cache.clear();
    }

    /// Uids with a cached evaluation.
    pub fn cached_uids(&self) -> BTreeSet<u16> {
        self.cache.keys().copied().collect()
    }
}

/// `detect_and_penalize_miners_sharing_github`: every uid in a group of evaluated miners sharing a
/// GitHub id (ignoring empty and `'0'`) is zeroed with upstream's reason.
pub fn penalize_shared_accounts(evaluations: &mut BTreeMap<u16, Evaluation>) -> BTreeSet<u16> {
    let mut groups: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for (uid, e) in evaluations.iter() {
        if e.failed_reason.is_some() {
            continue;
        }
        if let Some(id) = e.github_id.as_deref().filter(|id| !id.is_empty() && *id != "0") {
            groups.entry(id.to_string()).or_default().push(*uid);
        }
    }
    let mut penalized = BTreeSet::new();
    for (id, uids) in groups.iter().filter(|(_, u)| u.len() > 1) {
        for uid in uids {
            let others: Vec<String> = uids.iter().filter(|u| *u != uid).map(u16::to_string).collect();
            if let Some(e) = evaluations.get_mut(uid) {
                e.failed_reason =
                    Some(format!("Penalized: GitHub account {id} shared with UID(s) [{}]", others.join(", ")));
                e.score = 0.0;
                e.total_prs = 0;
            }
            penalized.insert(*uid);
        }
    }
    penalized
}

/// `normalize_rewards_linear`: each evaluated miner's share of the round's total score.
pub fn normalize(evaluations: &BTreeMap<u16, Evaluation>) -> BTreeMap<u16, f64> {
    let score = |e: &Evaluation| if e.failed_reason.is_none() { e.score } else { 0.0 };
    let total: f64 = evaluations.values().map(score).sum();
    evaluations.iter().map(|(&u, e)| (u, if total > 0.0 { score(e) / total } else { 0.0 })).collect()
}

#[cfg(test)]
mod tests;
