//! gittensor's two forward handlers, blacklist and priority (`gittensor/validator/pat_handler.py`),
//! with upstream's step order and reason texts (semantics doc §2.1–§2.3, §2.6).
//!
//! Owns the decision logic only: it gets the caller's hotkey and token from the axon, asks GitHub
//! through a [`CredentialChecker`], and reads/writes the [`PatStore`]. It never sees HTTP, never
//! logs a token (only `***` + last 4), and never blocks the executor.
//!
//! Mode (§2.6): in [`Mode::Parity`] a failed test query is always permanent ("PAT test query failed:
//! …"); in [`Mode::Fixed`] a transient one (5xx, 408, 429, rate-limited 403, transport) makes a check
//! answer `pat_valid = null` with the identity path's retry message and a broadcast reject with
//! "GitHub API temporarily unavailable during PAT test query; …". The classification itself lives
//! in [`crate::github`]; this module only acts on its `transient` flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use super::store::{PatEntry, PatStore, RawPat, SaveOutcome, StoreError};
use super::{Metagraph, short_hotkey};
use crate::github::{GithubClient, IdentityResult, Mode, TestQueryResult};
use crate::wire::{BroadcastFields, CheckFields};

/// "Hotkey not registered on subnet" (broadcast step 1).
pub const REASON_NOT_REGISTERED: &str = "Hotkey not registered on subnet";
/// The identity pin (broadcast steps 3 and 5).
pub const REASON_IDENTITY_LOCKED: &str =
    "GitHub identity is locked for this hotkey. Deregister and re-register to change GitHub accounts.";
/// Store read or write failed. The broadcast appends ` (<err>)`; the check does not.
pub const REASON_STORE_UNAVAILABLE: &str = "Validator PAT store temporarily unavailable; please retry.";
/// Check: no entry, or an entry of a previous miner on this uid.
pub const REASON_NO_PAT_STORED: &str = "No PAT stored for this miner";
/// Check: GitHub could not say (the identity path's message, reused by fixed mode's test query).
pub const REASON_CHECK_RETRY: &str = "GitHub API temporarily unavailable; retry the check in a few minutes.";

/// "No Github PAT provided by miner N" (empty token).
pub fn reason_no_pat_provided(uid: u16) -> String {
    format!("No Github PAT provided by miner {uid}")
}

/// "No Github id found for miner N's PAT" (`/user` 4xx).
pub fn reason_no_github_id(uid: u16) -> String {
    format!("No Github id found for miner {uid}'s PAT")
}

/// The broadcast's transient `/user` failure (no stored id to fall back on).
pub fn reason_identity_transient(uid: u16) -> String {
    format!("Could not validate Github id for miner {uid}: GitHub /user lookup failed transiently")
}

/// `"PAT test query failed: <detail>"`.
pub fn reason_test_failed(detail: &str) -> String {
    format!("PAT test query failed: {detail}")
}

/// Fixed mode, broadcast, transient test-query failure (upstream PR #1332).
pub fn reason_test_transient_broadcast(detail: &str) -> String {
    format!(
        "GitHub API temporarily unavailable during PAT test query; retry the broadcast in a few minutes. ({detail})"
    )
}

/// The broadcast's store failure, with the error (file name only, no path).
pub fn reason_store_unavailable(e: &StoreError) -> String {
    format!("{REASON_STORE_UNAVAILABLE} ({})", e.brief())
}

/// A boxed `Send` future (object-safe async trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The two GitHub calls a validator makes with a miner's token, as received (untrimmed).
/// [`GithubClient`] is the real one; tests script their own.
pub trait CredentialChecker: Send + Sync {
    /// `get_github_identity`: `GET /user`, retried per the client's mode.
    fn identity<'a>(&'a self, token: &'a str) -> BoxFuture<'a, IdentityResult>;
    /// `_test_pat_against_repo`: the GraphQL viewer query.
    fn test_query<'a>(&'a self, token: &'a str) -> BoxFuture<'a, TestQueryResult>;
}

impl CredentialChecker for GithubClient {
    fn identity<'a>(&'a self, token: &'a str) -> BoxFuture<'a, IdentityResult> {
        Box::pin(async move { self.identity_raw(token).await.result })
    }

    fn test_query<'a>(&'a self, token: &'a str) -> BoxFuture<'a, TestQueryResult> {
        Box::pin(async move { self.test_query_raw(token).await.result })
    }
}

/// Why a handler could not answer at all: the axon turns it into HTTP 500, as Python does for an
/// exception in a forward function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The check handler indexes `metagraph.hotkeys` without a guard (upstream relies on the
    /// blacklist); a caller deregistered between blacklist and handler ends here.
    #[error("hotkey {0}... is not in the metagraph")]
    NotRegistered(String),
}

/// One reference validator: metagraph, store, GitHub, mode. Shared by all requests.
pub struct PatValidator {
    metagraph: RwLock<Arc<Metagraph>>,
    store: Arc<PatStore>,
    github: Arc<dyn CredentialChecker>,
    mode: Mode,
}

impl std::fmt::Debug for PatValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatValidator")
            .field("store", &self.store.path())
            .field("miners", &self.metagraph().len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl PatValidator {
    /// A validator over `store`, asking `github`.
    pub fn new(metagraph: Metagraph, store: Arc<PatStore>, github: Arc<dyn CredentialChecker>, mode: Mode) -> Self {
        PatValidator { metagraph: RwLock::new(Arc::new(metagraph)), store, github, mode }
    }

    /// The metagraph in force.
    pub fn metagraph(&self) -> Arc<Metagraph> {
        Arc::clone(&self.metagraph.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replace the metagraph (a resync: registrations, deregistrations, stake changes).
    pub fn set_metagraph(&self, metagraph: Metagraph) {
        *self.metagraph.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(metagraph);
    }

    /// The store.
    pub fn store(&self) -> &Arc<PatStore> {
        &self.store
    }

    /// The GitHub mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Upstream's `_blacklist_handler`: `Err(reason)` for a hotkey not in the metagraph (HTTP 403).
    pub fn blacklist(&self, hotkey: &str) -> Result<(), String> {
        match self.metagraph().uid_of(hotkey) {
            Some(_) => Ok(()),
            None => Err(format!("Hotkey {}... not registered", short_hotkey(hotkey))),
        }
    }

    /// Upstream's `_priority_handler`: the caller's stake, 0.0 when unregistered.
    pub fn priority(&self, hotkey: &str) -> f64 {
        self.metagraph().stake_of(hotkey)
    }

    /// `handle_pat_broadcast`: validate and store a miner's PAT. Every answer clears the token
    /// (the axon sends `github_access_token: ""` back).
    pub async fn broadcast(&self, hotkey: &str, token: RawPat) -> BroadcastFields {
        match self.broadcast_steps(hotkey, &token).await {
            Ok((uid, github_id)) => {
                tracing::info!(uid, hotkey = %short_hotkey(hotkey), pat = %token.redacted(), %github_id, "PAT broadcast accepted");
                BroadcastFields { accepted: Some(true), rejection_reason: None }
            }
            Err(reason) => {
                tracing::warn!(hotkey = %short_hotkey(hotkey), pat = %token.redacted(), %reason, "PAT broadcast rejected");
                BroadcastFields { accepted: Some(false), rejection_reason: Some(reason) }
            }
        }
    }

    /// Steps 1–6 of §2.2; `Err` is the rejection reason.
    async fn broadcast_steps(&self, hotkey: &str, token: &RawPat) -> Result<(u16, String), String> {
        // 1. registration (a second guard behind the blacklist)
        let uid = self.metagraph().uid_of(hotkey).ok_or(REASON_NOT_REGISTERED)?;
        // 2. credentials, with no stored id: a transient /user failure still rejects
        if token.is_empty() {
            return Err(reason_no_pat_provided(uid));
        }
        let github_id = match self.github.identity(token.expose()).await {
            IdentityResult::Valid { id, .. } => id,
            IdentityResult::Transient { .. } => return Err(reason_identity_transient(uid)),
            IdentityResult::InvalidAuth { .. } => return Err(reason_no_github_id(uid)),
        };
        // 3. identity pin
        let existing = self.store.get_by_uid_async(uid).await.map_err(|e| reason_store_unavailable(&e))?;
        if pin_conflicts(existing.as_ref(), hotkey, &github_id) {
            return Err(REASON_IDENTITY_LOCKED.to_string());
        }
        // 4. test query
        if let TestQueryResult::Failed { detail, transient, .. } = self.github.test_query(token.expose()).await {
            return Err(if transient && self.mode == Mode::Fixed {
                reason_test_transient_broadcast(&detail)
            } else {
                reason_test_failed(&detail)
            });
        }
        // 5 + 6. pin again and save, as one critical section under the store's write lock
        let saved_id = if github_id.is_empty() { "0".to_string() } else { github_id.clone() };
        let (hk, id) = (hotkey.to_string(), github_id.clone());
        let outcome = self
            .store
            .save_if_async(uid, hotkey.to_string(), token.clone(), saved_id, move |e| !pin_conflicts(e, &hk, &id))
            .await
            .map_err(|e| reason_store_unavailable(&e))?;
        match outcome {
            SaveOutcome::Saved => Ok((uid, github_id)),
            SaveOutcome::Refused => Err(REASON_IDENTITY_LOCKED.to_string()),
        }
    }

    /// `handle_pat_check`: does this validator hold a valid PAT for the caller? No PAT is sent; the
    /// miner is found by its hotkey.
    pub async fn check(&self, hotkey: &str) -> Result<CheckFields, HandlerError> {
        let uid = self.metagraph().uid_of(hotkey).ok_or_else(|| HandlerError::NotRegistered(short_hotkey(hotkey)))?;
        let answer = |has_pat, pat_valid, reason: Option<String>| CheckFields {
            has_pat: Some(has_pat),
            pat_valid,
            rejection_reason: reason,
        };
        let entry = match self.store.get_by_uid_async(uid).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(uid, error = %crate::secret::error_chain(&e), "PAT check: store unavailable");
                return Ok(answer(false, None, Some(REASON_STORE_UNAVAILABLE.into())));
            }
        };
        let Some(entry) = entry.filter(|e| e.hotkey.as_deref() == Some(hotkey)) else {
            tracing::info!(uid, hotkey = %short_hotkey(hotkey), "PAT check: no PAT stored");
            return Ok(answer(false, Some(false), Some(REASON_NO_PAT_STORED.into())));
        };
        let out = if entry.pat.is_empty() {
            answer(true, Some(false), Some(reason_no_pat_provided(uid)))
        } else {
            match self.github.identity(entry.pat.expose()).await {
                // Transient, with or without a stored id: inconclusive, and no test query (§2.3).
                IdentityResult::Transient { .. } => answer(true, None, Some(REASON_CHECK_RETRY.into())),
                IdentityResult::InvalidAuth { .. } => answer(true, Some(false), Some(reason_no_github_id(uid))),
                IdentityResult::Valid { .. } => match self.github.test_query(entry.pat.expose()).await {
                    TestQueryResult::Ok => answer(true, Some(true), None),
                    TestQueryResult::Failed { transient: true, .. } if self.mode == Mode::Fixed => {
                        answer(true, None, Some(REASON_CHECK_RETRY.into()))
                    }
                    TestQueryResult::Failed { detail, .. } => {
                        answer(true, Some(false), Some(reason_test_failed(&detail)))
                    }
                },
            }
        };
        tracing::info!(
            uid,
            hotkey = %short_hotkey(hotkey),
            pat = %entry.pat.redacted(),
            pat_valid = ?out.pat_valid,
            reason = out.rejection_reason.as_deref().unwrap_or(""),
            "PAT check"
        );
        Ok(out)
    }
}

/// Upstream's pin: an entry for this uid with the **same hotkey** and a non-empty `github_id` that
/// differs from the new one.
fn pin_conflicts(existing: Option<&PatEntry>, hotkey: &str, github_id: &str) -> bool {
    existing.is_some_and(|e| {
        e.hotkey.as_deref() == Some(hotkey)
            && e.github_id.as_deref().is_some_and(|id| !id.is_empty() && id != github_id)
    })
}

#[cfg(test)]
mod tests;
