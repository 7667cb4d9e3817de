//! The pure part: which events a pass (and the miner's state after it) calls for, given what was
//! already announced. No I/O, no clock (time is an input), so `patrol run`, `patrol reconcile` and
//! the tests run exactly this code, the tests in virtual time.
//!
//! [`derive`] takes the [`Announced`] record (persisted in the miner's state file), the pass
//! outcome, the state, the miner's problem and `now`, and returns the events to send and the new
//! record. Every event is said once per change of what it is about:
//!
//! - **coverage**: a validator uncovered (its category, or silent at the probes) is announced only
//!   once it has stayed so for `hold` (a restart repaired in 25 s pages nobody); then, once it is
//!   covered again, its recovery with how long it was uncovered. An episode interrupted by less than
//!   `hold` of coverage continues (a flapping validator is one episode), and a recovery is sent no
//!   sooner than `hold` after its loss: at most one message per validator per hold;
//! - raised/resolved **conditions**, each keyed, said when raised and when resolved: the miner's
//!   problems (not registered, no validator source, PAT unreadable), the PAT invalid, a validator
//!   terminal, a store unavailable past `alert_after`, a churning validator, the GitHub budget
//!   stretching the interval, the state not saved;
//! - the PAT's **expiry** at 14, 7 and 1 days (once per threshold and PAT), a **rotation**
//!   re-asserted, **repairs** made, the daily **digest**; agent **started** / **stopping**.

use std::collections::BTreeMap;

use crate::config::Severity;
use crate::metrics::ProblemKind;
use crate::observe::Category;
use crate::reconcile::core::{self, History, Secs};
use crate::reconcile::pass::{ActionTaken, PassOutcome};
use crate::reconcile::state::PreflightVerdict;

/// The events `input` calls for after `prev`, and the record to keep.
pub fn derive(prev: &Announced, input: &Input<'_>, rules: &Rules) -> (Vec<Event>, Announced) {
    let mut d = Deriving { input, rules, next: prev.clone(), events: Vec::new() };
    d.problems();
    d.saved();
    if let Some(out) = input.outcome {
        d.pat(out);
        d.validators();
        d.budget(out);
        d.repairs(out);
        d.digest(out);
    }
    (d.events, d.next)
}

struct Deriving<'a, 'b> {
    input: &'b Input<'a>,
    rules: &'b Rules,
    next: Announced,
    events: Vec<Event>,
}

impl Deriving<'_, '_> {
    fn event(&mut self, kind: EventKind, severity: Severity, title: String, detail: String) -> &mut Event {
        self.events.push(Event {
            kind,
            severity,
            resolved: false,
            at: self.input.now,
            miner: self.input.miner.to_string(),
            hotkey: self.input.hotkey.to_string(),
            title,
            detail,
            validator: None,
        });
        let n = self.events.len() - 1;
        &mut self.events[n]
    }

    /// Raise `key` (an event) while `on`, resolve it (another) once it is off.
    fn condition(
        &mut self,
        key: &str,
        on: bool,
        kind: EventKind,
        severity: Severity,
        raise: impl FnOnce() -> (String, String),
        resolve: Option<String>,
    ) {
        match (on, self.next.raised.contains_key(key)) {
            (true, false) => {
                let (title, detail) = raise();
                self.event(kind, severity, title, detail);
                self.next.raised.insert(key.to_string(), self.input.now);
            }
            (false, true) => {
                self.next.raised.remove(key);
                if let Some(title) = resolve {
                    self.event(kind, severity, title, String::new()).resolved = true;
                }
            }
            _ => {}
        }
    }

    fn problems(&mut self) {
        for p in PROBLEMS {
            let on = self.input.problem.filter(|(q, _)| *q == p);
            let message = on.map(|(_, m)| m.to_string()).unwrap_or_default();
            let (title, fix, resolved) = match p {
                ProblemKind::NotRegistered => (
                    "the hotkey is not registered on the subnet: nothing is sent",
                    "register the hotkey (btcli subnet register), or fix [wallet] / --netuid",
                    "the hotkey is registered again",
                ),
                ProblemKind::NoValidatorSource => (
                    "no validator source: neither the chain nor a recent enough metagraph cache can be read, nothing is sent",
                    "check [chain] network and the node's reachability; patrol retries with backoff",
                    "the validator set is readable again",
                ),
                ProblemKind::PatUnavailable => (
                    "the PAT cannot be read: nothing is sent",
                    "fix the PAT source named here ([pat] file / credential)",
                    "the PAT can be read again",
                ),
            };
            let key = format!("problem:{}", problem_event(p).as_str());
            let detail = format!("{message}; {fix}");
            self.condition(
                &key,
                on.is_some(),
                problem_event(p),
                Severity::Critical,
                || (title.to_string(), detail),
                Some(resolved.to_string()),
            );
        }
    }

    fn saved(&mut self) {
        let err = self.input.save_error.unwrap_or_default().to_string();
        self.condition(
            "state_not_saved",
            self.input.save_error.is_some(),
            EventKind::StateNotSaved,
            Severity::Warning,
            || ("the state file cannot be saved: a restart would forget the validators' history".into(), err),
            Some("the state file is saved again".into()),
        );
    }

    fn budget(&mut self, out: &PassOutcome) {
        let g = &out.github;
        let every = |s: Secs| humantime::format_duration(std::time::Duration::from_secs(s)).to_string();
        let detail = format!(
            "{} validators' routine checks would exceed [reconcile] github_budget ({} GitHub calls an hour on the PAT); repairs are not slowed",
            out.validators.len(),
            g.budget_per_hour.unwrap_or(0)
        );
        let title =
            format!("checking every {} instead of every {}", every(g.interval_s), every(g.configured_interval_s));
        self.condition(
            "budget",
            g.interval_s > g.configured_interval_s,
            EventKind::Budget,
            Severity::Warning,
            || (title, detail),
            Some(format!("checking every {} again", every(g.configured_interval_s))),
        );
    }

    fn pat(&mut self, out: &PassOutcome) {
        let state = self.input.state;
        let Some(fp) = state.fingerprint.clone() else { return };
        let now = self.input.now;
        // A rotation: the pass just run re-asserted the new PAT everywhere.
        if let Some(old) = self.next.fingerprint.replace(fp.clone()).filter(|old| *old != fp) {
            let covered = out.validators.iter().filter(|v| v.final_category.is_some_and(Category::is_covered)).count();
            self.event(
                EventKind::PatRotated,
                Severity::Info,
                "the PAT changed and was re-asserted at every validator".into(),
                format!("{covered}/{} validators hold the new PAT", out.validators.len()),
            );
            // What was said about the old PAT no longer holds.
            self.next.raised.retain(|k, _| !k.ends_with(&format!(":{old}")));
        }
        let record = state.preflight_of(&fp);
        let invalid = record.is_some_and(|r| r.verdict == PreflightVerdict::Invalid);
        let valid = record.is_some_and(|r| r.verdict == PreflightVerdict::Valid);
        let reason = match out.preflight.as_ref().map(|p| &p.outcome) {
            Some(crate::github::PreflightOutcome::Invalid { reason }) => reason.clone(),
            _ => "GitHub refuses it".into(),
        };
        let key = format!("pat_invalid:{fp}");
        if invalid || valid {
            self.condition(
                &key,
                invalid,
                EventKind::PatInvalid,
                Severity::Critical,
                || {
                    (
                        "the PAT is invalid (revoked, expired or lacking scope): nothing is being sent anywhere".into(),
                        format!("{}; create a new PAT and put it where [pat] points", short(&reason)),
                    )
                },
                Some("the PAT passes GitHub's checks again".into()),
            );
        }
        let Some(expiry) = record.and_then(|r| r.expiry) else { return };
        let left = expiry.saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
        let mut sent = match &self.next.expiry {
            Some((f, days)) if *f == fp => days.clone(),
            _ => Vec::new(),
        };
        let crossed: Vec<u32> = EXPIRY_DAYS.into_iter().filter(|d| left <= i64::from(*d) * 86_400).collect();
        if let Some(&smallest) = crossed.last().filter(|d| !sent.contains(d)) {
            let when = core::rfc3339(u64::try_from(expiry).unwrap_or(0));
            let title = if left <= 0 {
                format!("the PAT expired at {when}")
            } else {
                format!("the PAT expires in {} ({when})", human(u64::try_from(left).unwrap_or(0)))
            };
            let severity = if smallest <= 1 { Severity::Critical } else { Severity::Warning };
            self.event(
                EventKind::PatExpiry,
                severity,
                title,
                "create a new PAT before then and put it where [pat] points; patrol re-sends it everywhere".into(),
            );
            sent.extend(crossed);
            sent.sort_unstable();
            sent.dedup();
        }
        self.next.expiry = Some((fp, sent));
    }

    fn validators(&mut self) {
        let state = self.input.state;
        let now = self.input.now;
        let hold = self.rules.hold;
        let fp = state.fingerprint.clone().unwrap_or_default();
        let pat_invalid = self.next.raised.contains_key(&format!("pat_invalid:{fp}"));
        let active: BTreeMap<u16, &History> = core::active(&state.validators).collect();
        self.next.open.retain(|uid, _| active.contains_key(uid));
        let stale: Vec<String> = self
            .next
            .raised
            .keys()
            .filter(|k| validator_key_uid(k).is_some_and(|u| !active.contains_key(&u)))
            .cloned()
            .collect();
        for k in stale {
            self.next.raised.remove(&k);
        }
        for (&uid, h) in &active {
            let info = |category: &str| ValidatorInfo {
                uid,
                hotkey: h.hotkey.clone(),
                category: category.to_string(),
                reason: h.reason.as_deref().map(short),
                since: None,
                uncovered_for_s: None,
            };
            // terminal: refuses this PAT for good
            let terminal = h.terminal.as_ref().filter(|t| t.fingerprint == fp);
            if let Some(t) = terminal
                && !self.next.raised.contains_key(&format!("terminal:{uid}:{fp}"))
            {
                let e = self.event(
                    EventKind::Terminal,
                    Severity::Critical,
                    format!("validator {uid} refuses the PAT for good: {}", short(&t.reason)),
                    "patrol stops sending it there until the PAT changes".into(),
                );
                e.validator = Some(info(h.category.map_or("unknown", Category::as_str)));
                self.next.raised.insert(format!("terminal:{uid}:{fp}"), now);
            }
            // a store unavailable past alert_after
            let unavailable = h.unavailable_since.filter(|s| now.saturating_sub(*s) >= self.rules.alert_after);
            let key = format!("store:{uid}");
            match (unavailable, self.next.raised.contains_key(&key)) {
                (Some(since), false) => {
                    let e = self.event(
                        EventKind::StoreUnavailable,
                        Severity::Warning,
                        format!(
                            "validator {uid}'s PAT store has been unreadable for {} (more than a scoring round)",
                            human(now - since)
                        ),
                        "nothing a miner sends can fix it; tell the validator's operator".into(),
                    );
                    e.validator = Some(info(Category::StoreUnavailable.as_str()));
                    self.next.raised.insert(key, now);
                }
                (None, true) if h.unavailable_since.is_none() => {
                    self.next.raised.remove(&key);
                    let e = self.event(
                        EventKind::StoreUnavailable,
                        Severity::Warning,
                        format!("validator {uid}'s PAT store is readable again"),
                        String::new(),
                    );
                    e.resolved = true;
                    e.validator = Some(info(h.category.map_or("unknown", Category::as_str)));
                }
                _ => {}
            }
            // churning: restarts too frequent to act on (said once per episode)
            let key = format!("churn:{uid}");
            match (h.churning_since, self.next.raised.contains_key(&key)) {
                (Some(_), false) => {
                    let e = self.event(
                        EventKind::Churning,
                        Severity::Warning,
                        format!("validator {uid} restarts more than {} times an hour", core::MAX_TRIGGERS),
                        "a crash loop, or several axons behind one address: checked at its routine interval until it settles".into(),
                    );
                    e.validator = Some(info(h.category.map_or("unknown", Category::as_str)));
                    self.next.raised.insert(key, now);
                }
                (None, true) => {
                    self.next.raised.remove(&key);
                }
                _ => {}
            }
            self.coverage(uid, h, hold, pat_invalid, terminal.is_some());
        }
    }

    /// One validator's coverage episode (see the module doc).
    fn coverage(&mut self, uid: u16, h: &History, hold: Secs, pat_invalid: bool, terminal: bool) {
        let now = self.input.now;
        let uncovered: Option<(Secs, Category, Option<String>)> = match (&h.silent, h.category) {
            (Some(s), _) => Some((
                s.since.min(h.uncovered_since.unwrap_or(s.since)),
                Category::NoResponse,
                Some(format!("not answering ({})", s.kind.as_str())),
            )),
            (None, Some(c)) if !c.is_covered() => Some((h.uncovered_since.unwrap_or(now), c, h.reason.clone())),
            (None, Some(_)) => None,
            // never checked: nothing known yet
            (None, None) => return,
        };
        let mut info = ValidatorInfo {
            uid,
            hotkey: h.hotkey.clone(),
            category: h.category.map_or("unknown", Category::as_str).to_string(),
            reason: None,
            since: None,
            uncovered_for_s: None,
        };
        match uncovered {
            Some((since, category, reason)) => {
                let open = self.next.open.entry(uid).or_insert(Open { since, announced: None, covered_at: None });
                open.covered_at = None;
                if open.announced.is_some() || now.saturating_sub(open.since) < hold {
                    return;
                }
                open.announced = Some(now);
                let since = open.since;
                info.category = category.as_str().to_string();
                info.reason = reason.as_deref().map(short);
                info.since = Some(since);
                let doing = doing(category, h, pat_invalid, terminal, now);
                let e = self.event(
                    EventKind::Coverage,
                    Severity::Warning,
                    format!("validator {uid} lost coverage {} ago: {}", human(now - since), category.as_str()),
                    doing,
                );
                e.validator = Some(info);
            }
            None => {
                let Some(open) = self.next.open.get_mut(&uid) else { return };
                let covered_at = *open.covered_at.get_or_insert(now);
                match open.announced {
                    Some(at) if now.saturating_sub(at) >= hold => {
                        let since = open.since;
                        self.next.open.remove(&uid);
                        info.since = Some(since);
                        info.uncovered_for_s = Some(covered_at.saturating_sub(since));
                        let e = self.event(
                            EventKind::Coverage,
                            Severity::Warning,
                            format!(
                                "validator {uid} is covered again, after {} uncovered",
                                human(covered_at.saturating_sub(since))
                            ),
                            String::new(),
                        );
                        e.resolved = true;
                        e.validator = Some(info);
                    }
                    Some(_) => {}
                    None if now.saturating_sub(covered_at) >= hold => {
                        self.next.open.remove(&uid);
                    }
                    None => {}
                }
            }
        }
    }

    fn repairs(&mut self, out: &PassOutcome) {
        let now = self.input.now;
        for v in out.validators.iter().filter(|v| v.action == ActionTaken::Broadcast) {
            self.next.repairs.push((now, v.validator.uid));
            let e = self.event(
                EventKind::Repaired,
                Severity::Info,
                format!("validator {} had lost the PAT: re-sent and confirmed", v.validator.uid),
                String::new(),
            );
            e.validator = Some(ValidatorInfo {
                uid: v.validator.uid,
                hotkey: v.validator.hotkey.clone(),
                category: v.final_category.map_or("unknown", Category::as_str).to_string(),
                reason: None,
                since: None,
                uncovered_for_s: None,
            });
        }
        let n = self.next.repairs.len();
        if n > MAX_REPAIRS {
            self.next.repairs.drain(..n - MAX_REPAIRS);
        }
        self.next.calls = self.next.calls.saturating_add(u64::from(out.github.pass_calls));
    }

    fn digest(&mut self, out: &PassOutcome) {
        let Some((hh, mm)) = self.rules.digest else { return };
        let now = self.input.now;
        let Some(last) = self.next.digest_at else {
            self.next.digest_at = Some(now);
            return;
        };
        if now < next_time_of_day(last, hh, mm) {
            return;
        }
        let total = out.validators.len();
        let covered: Vec<_> =
            out.validators.iter().filter(|v| v.final_category.is_some_and(Category::is_covered)).collect();
        let all_stake: f64 = out.validators.iter().map(|v| v.validator.stake).sum();
        let stake: f64 = covered.iter().map(|v| v.validator.stake).sum();
        let pct = if all_stake > 0.0 { stake / all_stake * 100.0 } else { 0.0 };
        let repairs: Vec<String> =
            self.next.repairs.iter().map(|(t, uid)| format!("uid {uid} at {}", core::rfc3339(*t))).collect();
        let open: Vec<String> = self
            .next
            .open
            .iter()
            .filter(|(_, o)| o.announced.is_some())
            .map(|(uid, o)| format!("uid {uid} uncovered since {}", core::rfc3339(o.since)))
            .chain(
                self.next
                    .raised
                    .keys()
                    .filter(|k| !k.starts_with("churn:"))
                    .map(|k| k.split(':').take(2).collect::<Vec<_>>().join(" ")),
            )
            .collect();
        let detail = format!(
            "repairs: {}; GitHub calls on the PAT: {}; still open: {}",
            if repairs.is_empty() { "none".to_string() } else { repairs.join(", ") },
            self.next.calls,
            if open.is_empty() { "nothing".to_string() } else { open.join(", ") }
        );
        self.event(
            EventKind::Digest,
            Severity::Info,
            format!("daily digest: {}/{total} validators covered ({pct:.1}% of stake)", covered.len()),
            detail,
        );
        self.next.repairs.clear();
        self.next.calls = 0;
        self.next.digest_at = Some(now);
    }
}

/// The uid of a per-validator condition key (`terminal:<uid>:…`, `store:<uid>`, `churn:<uid>`).
fn validator_key_uid(key: &str) -> Option<u16> {
    let mut parts = key.split(':');
    match parts.next()? {
        "terminal" | "store" | "churn" => parts.next()?.parse().ok(),
        _ => None,
    }
}

/// What patrol is doing about an uncovered validator.
fn doing(category: Category, h: &History, pat_invalid: bool, terminal: bool, now: Secs) -> String {
    let next =
        if h.next_check_at > now { format!("; next check {}", core::rfc3339(h.next_check_at)) } else { String::new() };
    let what = match category {
        _ if terminal => "it refuses the PAT for good: no retries until the PAT changes",
        Category::NoPat | Category::InvalidPat if pat_invalid => "not sending: the PAT itself is invalid",
        Category::NoPat | Category::InvalidPat => "re-sending the PAT, with backoff after failures",
        Category::StoreUnavailable => "its PAT store is unreadable: backing off, nothing a miner sends can fix it",
        Category::Rejected => "its axon refuses our requests: re-checking with backoff",
        _ => "probing it; it is checked, and repaired, as soon as it answers",
    };
    format!("{what}{next}")
}

/// `secs` as "25s", "14m", "3h 5m", "2d 4h".
pub fn human(secs: Secs) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// Another party's text (a validator's reason, GitHub's), shortened and made printable: no
/// control characters, at most 160 characters, tokens and webhook paths redacted.
pub fn short(text: &str) -> String {
    let clean: String =
        crate::secret::redact_tokens(text).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.chars().count() <= 160 {
        return clean.to_string();
    }
    let mut s: String = clean.chars().take(159).collect();
    s.push('…');
    s
}

/// The first `hh:mm` UTC strictly after `after`.
pub fn next_time_of_day(after: Secs, hh: u8, mm: u8) -> Secs {
    let day = after - after % 86_400;
    let at = day + u64::from(hh) * 3600 + u64::from(mm) * 60;
    if at > after { at } else { at + 86_400 }
}

/// `started`: the agent is up (after its first pass).
pub fn started(version: &str, miners: usize, validators: usize, covered: usize, now: Secs) -> Event {
    agent_event(
        EventKind::Started,
        format!("patrol {version} started: {miners} miner(s), {covered}/{validators} validators covered"),
        now,
    )
}

/// `stopping`: the agent is stopping (a stop signal).
pub fn stopping(why: &str, now: Secs) -> Event {
    agent_event(
        EventKind::Stopping,
        format!("patrol is stopping ({why}); nothing is watched until it starts again"),
        now,
    )
}

/// What `patrol notify test` sends.
pub fn test(now: Secs) -> Event {
    Event {
        severity: Severity::Info,
        ..agent_event(EventKind::Test, "patrol test message: this target works".into(), now)
    }
}

fn agent_event(kind: EventKind, title: String, now: Secs) -> Event {
    Event {
        kind,
        severity: Severity::Info,
        resolved: false,
        at: now,
        miner: String::new(),
        hotkey: String::new(),
        title,
        detail: String::new(),
        validator: None,
    }
}

mod model;
pub use model::*;

#[cfg(test)]
mod tests;
