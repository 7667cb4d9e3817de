//! The simulated world: GitHub (as the validators' credential checker and the miner's preflight) and
//! the validators themselves — each a real [`PatValidator`] with a real [`PatStore`] on tmpfs and a
//! real [`ScoringGate`] — plus the faults' effects on them. No sockets: a "down" validator simply
//! doesn't answer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::faults::Effect;
use super::scenario::GithubScope;
use crate::github::{IdentityResult, Mode, PreflightOutcome, TestQueryResult};
use crate::lab::validator::handlers::BoxFuture;
use crate::lab::validator::scoring::PrFetch;
use crate::lab::validator::store::RawPat;
use crate::lab::validator::{CredentialChecker, Metagraph, PatStore, PatValidator, RegisteredMiner, ScoringGate};

/// GitHub as seen at one moment: which tokens work, and what is failing for whom.
#[derive(Debug, Default)]
pub struct GithubState {
    /// token → (id, login)
    pub tokens: HashMap<String, (u64, String)>,
    /// Our miner's tokens (every one it ever had): calls with them are counted.
    ours: std::collections::HashSet<String>,
    /// Calls made with our tokens because of patrol (validator handlers, our preflight).
    pub patrol_calls: u64,
    /// Calls made with our tokens by the validators' scoring rounds.
    pub scoring_calls: u64,
    validators_down: u32,
    miner_down: u32,
    /// Active rate limits: retry-after seconds, per scope.
    validators_rl: Vec<u64>,
    miner_rl: Vec<u64>,
}

impl GithubState {
    fn failing(&self, miner: bool) -> Option<Option<u64>> {
        let (down, rl) =
            if miner { (self.miner_down, &self.miner_rl) } else { (self.validators_down, &self.validators_rl) };
        if down > 0 { Some(None) } else { rl.first().map(|r| Some(*r)) }
    }

    fn apply(&mut self, scope: GithubScope, rate_limit: Option<u64>, start: bool) {
        for miner in [false, true] {
            let hit = matches!(
                (scope, miner),
                (GithubScope::Both, _) | (GithubScope::Validators, false) | (GithubScope::Miner, true)
            );
            if !hit {
                continue;
            }
            match rate_limit {
                None => {
                    let c = if miner { &mut self.miner_down } else { &mut self.validators_down };
                    *c = if start { *c + 1 } else { c.saturating_sub(1) };
                }
                Some(r) => {
                    let l = if miner { &mut self.miner_rl } else { &mut self.validators_rl };
                    if start {
                        l.push(r);
                    } else if let Some(i) = l.iter().position(|x| *x == r) {
                        l.remove(i);
                    }
                }
            }
        }
    }

    /// What the validator-side `/user` lookup returns for `token` now.
    pub fn identity(&self, token: &str) -> IdentityResult {
        match self.failing(false) {
            Some(None) => IdentityResult::Transient { detail: "GitHub /user returned 503".into(), retry_after: None },
            Some(Some(r)) => IdentityResult::Transient {
                detail: "GitHub /user returned 429".into(),
                retry_after: Some(Duration::from_secs(r)),
            },
            None => match self.tokens.get(token) {
                Some((id, login)) => IdentityResult::Valid { id: id.to_string(), login: login.clone() },
                None => IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() },
            },
        }
    }

    /// The validator-side GraphQL test query, classified as today's upstream does (parity: every
    /// failure permanent) — the bug patrol reads around.
    pub fn test_query(&self, token: &str) -> TestQueryResult {
        match self.failing(false) {
            Some(None) => TestQueryResult::Failed {
                detail: "GitHub GraphQL API returned 503".into(),
                transient: false,
                retry_after: None,
            },
            Some(Some(_)) => TestQueryResult::Failed {
                detail: "GitHub GraphQL API returned 429".into(),
                transient: false,
                retry_after: None,
            },
            None if self.tokens.contains_key(token) => TestQueryResult::Ok,
            None => TestQueryResult::Failed {
                detail: "GitHub GraphQL API returned 401".into(),
                transient: false,
                retry_after: None,
            },
        }
    }

    fn count(&mut self, token: &str, scoring: bool) {
        if self.ours.contains(token) {
            if scoring {
                self.scoring_calls += 1;
            } else {
                self.patrol_calls += 1;
            }
        }
    }

    /// The miner's local preflight of `token` (`/user`, then the GraphQL query if it passed).
    pub fn preflight(&mut self, token: &str) -> PreflightOutcome {
        self.count(token, false);
        let outcome = self.preflight_outcome(token);
        if matches!(outcome, PreflightOutcome::Valid { .. }) {
            self.count(token, false);
        }
        outcome
    }

    fn preflight_outcome(&self, token: &str) -> PreflightOutcome {
        match self.failing(true) {
            Some(r) => PreflightOutcome::Transient {
                reason: "GitHub unavailable from the miner".into(),
                retry_after: r.map(Duration::from_secs),
            },
            None => match self.tokens.get(token) {
                Some((id, login)) => PreflightOutcome::Valid { login: login.clone(), id: id.to_string() },
                None => PreflightOutcome::Invalid { reason: "GitHub /user returned 401: Bad credentials".into() },
            },
        }
    }
}

/// The validators' credential checker, reading the shared GitHub state.
#[derive(Clone, Default)]
pub struct SimGithub(pub Arc<Mutex<GithubState>>);

impl SimGithub {
    fn with<R>(&self, f: impl FnOnce(&mut GithubState) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Apply a GitHub effect.
    pub fn apply(&self, e: &Effect) {
        match e {
            Effect::GithubStart { scope, rate_limit } => self.with(|g| g.apply(*scope, *rate_limit, true)),
            Effect::GithubEnd { scope, rate_limit } => self.with(|g| g.apply(*scope, *rate_limit, false)),
            _ => {}
        }
    }

    pub fn add_token(&self, token: &str, id: u64, login: &str) {
        self.with(|g| g.tokens.insert(token.to_string(), (id, login.to_string())));
    }

    /// A token of our miner's: GitHub calls with it are counted.
    pub fn add_our_token(&self, token: &str, id: u64, login: &str) {
        self.add_token(token, id, login);
        self.with(|g| g.ours.insert(token.to_string()));
    }

    /// `(patrol-caused, scoring)` calls with our tokens so far.
    pub fn our_calls(&self) -> (u64, u64) {
        self.with(|g| (g.patrol_calls, g.scoring_calls))
    }

    pub fn revoke(&self, token: &str) {
        self.with(|g| g.tokens.remove(token));
    }

    /// A scoring round's identity lookup.
    pub fn identity_now(&self, token: &str) -> IdentityResult {
        self.with(|g| {
            g.count(token, true);
            g.identity(token)
        })
    }

    pub fn preflight(&self, token: &str) -> PreflightOutcome {
        self.with(|g| g.preflight(token))
    }

    pub fn is_valid(&self, token: &str) -> bool {
        self.with(|g| g.tokens.contains_key(token))
    }
}

impl CredentialChecker for SimGithub {
    fn identity<'a>(&'a self, token: &'a str) -> BoxFuture<'a, IdentityResult> {
        let r = self.with(|g| {
            g.count(token, false);
            g.identity(token)
        });
        Box::pin(async move { r })
    }

    fn test_query<'a>(&'a self, token: &'a str) -> BoxFuture<'a, TestQueryResult> {
        let r = self.with(|g| {
            g.count(token, false);
            g.test_query(token)
        });
        Box::pin(async move { r })
    }
}

/// One simulated validator.
pub struct SimValidator {
    pub index: u16,
    pub stake: f64,
    pub validator: Arc<PatValidator>,
    pub store: Arc<PatStore>,
    pub gate: ScoringGate,
    /// Nesting count of faults holding its process down (connections refused).
    pub down: u32,
    /// Nesting count of network partitions (calls time out); the process keeps running.
    pub partitioned: u32,
    /// Process starts so far: a restart makes a new axon uuid.
    pub generation: u32,
    /// Nesting count of corruption windows, and the bytes to restore afterwards.
    pub corrupt: u32,
    pub backup: Option<Vec<u8>>,
    /// Its store was wiped; background miners re-post when it comes back.
    pub wiped: bool,
    /// Our miner's normalised weight after the last round.
    pub weight: f64,
}

impl SimValidator {
    /// Its process runs (it may still be unreachable).
    pub fn up(&self) -> bool {
        self.down == 0
    }

    /// Up and reachable: it answers, and could accept the PAT.
    pub fn answering(&self) -> bool {
        self.down == 0 && self.partitioned == 0
    }

    /// The axon uuid of the current process.
    pub fn uuid(&self) -> String {
        format!("sim-{}-{}", self.index, self.generation)
    }

    pub fn path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }
}

/// Hotkey of background miner `i` (stable, distinct, valid SS58).
pub fn background_hotkey(i: u16) -> String {
    let mut seed = [0x5au8; 32];
    seed[0] = (i & 0xff) as u8;
    seed[1] = (i >> 8) as u8;
    seed[2] = 0xbb;
    crate::wallet::Hotkey::from_seed(&seed).ss58().to_string()
}

/// Token of background miner `i`.
pub fn background_token(i: u16) -> String {
    format!("ghp_background{i:06}")
}

/// What every simulated validator shares.
pub struct Setup<'a> {
    /// Where the stores live (tmpfs when available).
    pub dir: &'a std::path::Path,
    pub our_uid: u16,
    pub our_hotkey: &'a str,
    /// Other miners registered everywhere.
    pub background: u16,
    pub github: &'a SimGithub,
    pub alpha: f64,
}

/// Build validator `i` with `stake`.
pub fn validator(setup: &Setup<'_>, i: u16, stake: f64) -> SimValidator {
    let Setup { dir, our_uid, our_hotkey, background, github, alpha } = *setup;
    let mut miners = vec![RegisteredMiner { uid: our_uid, hotkey: our_hotkey.to_string(), stake: 0.0 }];
    for b in 0..background {
        miners.push(RegisteredMiner { uid: our_uid + 1 + b, hotkey: background_hotkey(b), stake: 0.0 });
    }
    // uids are distinct by construction, hotkeys distinct by seed: this cannot fail.
    let metagraph = Metagraph::new(miners).unwrap_or_default();
    let store = Arc::new(PatStore::new(dir.join(format!("v{i}")).join("miner_pats.json")).run_inline());
    let _ = std::fs::create_dir_all(dir.join(format!("v{i}")));
    let pv = Arc::new(PatValidator::new(metagraph, store.clone(), Arc::new(github.clone()), Mode::Parity));
    let v = SimValidator {
        index: i,
        stake,
        validator: pv,
        store,
        gate: ScoringGate::new(alpha),
        down: 0,
        partitioned: 0,
        generation: 0,
        corrupt: 0,
        backup: None,
        wiped: false,
        weight: 0.0,
    };
    restore_background(&v, our_uid, background);
    v
}

/// Background miners keep themselves covered (they stand for "everyone else"); after a wipe they
/// are back as soon as the validator is.
pub fn restore_background(v: &SimValidator, our_uid: u16, background: u16) {
    for b in 0..background {
        let _ = v.store.save(
            our_uid + 1 + b,
            &background_hotkey(b),
            &RawPat::new(background_token(b)),
            &(1000 + u64::from(b)).to_string(),
        );
    }
}

/// A scoring round at `v`: our weight afterwards. Every miner's PRs score the same, so coverage is
/// the only difference between miners.
pub fn scoring_round(
    v: &mut SimValidator,
    github: &SimGithub,
    uids: impl IntoIterator<Item = u16>,
    our_uid: u16,
) -> f64 {
    let snapshot = v.store.snapshot();
    let metagraph = v.validator.metagraph();
    v.gate.run_round(
        &metagraph,
        uids,
        &snapshot,
        |_, pat| github.identity_now(pat.expose()),
        |_, _| PrFetch::Loaded { score: 1.0, total_prs: 10 },
    );
    v.weight = v.gate.weights().get(&our_uid).copied().unwrap_or(0.0);
    v.weight
}
