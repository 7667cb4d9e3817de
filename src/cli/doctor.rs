//! `patrol doctor [--json]`: everything `patrol run` needs, checked one by one, each reported as a
//! line `ok` or `fail`, and for a failure the fix. Exit 0 when every check is ok, 78 otherwise.
//!
//! Checks, in order: the config parses; per miner, the wallet (hotkey file) loads; the chain is
//! reachable; per miner, the hotkey is registered; per miner, the PAT can be read and passes both
//! GitHub calls validators make with it (`GET /user` and the GraphQL test query); the local clock
//! agrees with the chain's (nonce window); at least one validator is eligible; the state directory
//! is writable; each notification target (redacted) and the dead-man ping are reachable, asked
//! without sending a message (`notify::reach`). With a static validator list the chain checks say "skipped: no chain" and count as
//! ok. Nothing is ever sent to a validator.

use std::path::Path;

use crate::chain::time as chain_time;
use crate::chain::{ChainClient, SubnetSnapshot};
use crate::cli::{Cli, DoctorArgs, Exit};
use crate::config::{MinerSettings, PatError, Settings};
use crate::github::{GithubClient, GithubOptions, IdentityResult, PreflightOutcome, PreflightReport, TestQueryResult};
use crate::validators::{self, Neuron};
use crate::wallet::Hotkey;

pub mod check;
pub use check::Check;
use check::warn;
use check::{fail, ok, skipped};

/// Run the command.
pub async fn run(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<Exit> {
    let checks = match cli.settings() {
        Ok(settings) => diagnose(&settings).await,
        Err(e) => vec![fail(
            "config",
            None,
            crate::secret::error_chain(e.as_ref()),
            "fix the key named above (every key is described in config.example.toml), or point --config / $PATROL_CONFIG at the right file",
        )],
    };
    let all_ok = checks.iter().all(|c| c.ok);
    // Details quote paths and values the user typed (a PAT pasted as --pat-file): never a token.
    let checks: Vec<Check> = checks
        .into_iter()
        .map(|c| Check {
            detail: crate::secret::redact_tokens(&c.detail).into_owned(),
            fix: c.fix.map(|f| crate::secret::redact_tokens(&f).into_owned()),
            ..c
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"success": all_ok, "checks": checks}))?);
    } else {
        print!("{}", render(&checks));
    }
    Ok(if all_ok { Exit::Covered } else { Exit::Config })
}

/// The human report.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let detail = match &c.miner {
            Some(m) => format!("{m}: {}", c.detail),
            None => c.detail.clone(),
        };
        let status = match (c.ok, c.warning) {
            (false, _) => "fail",
            (true, true) => "warn",
            (true, false) => "ok",
        };
        out.push_str(&format!("{status:<5}{:<20}{detail}\n", c.check));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<25}fix: {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str("all checks passed\n");
    } else {
        out.push_str(&format!("{failed} check(s) failed\n"));
    }
    out
}

/// Every check after the config loaded.
pub async fn diagnose(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![ok(
        "config",
        None,
        match &settings.file {
            Some(f) => format!("{} parsed", f.display()),
            None => "no config file; defaults and flags".to_string(),
        },
    )];
    // Name the miner in each line only when there are several.
    let label = |m: &MinerSettings| (settings.miners.len() > 1).then(|| m.name.clone());
    let hotkeys: Vec<(&MinerSettings, Option<Hotkey>)> = settings
        .miners
        .iter()
        .map(|m| {
            let (check, hotkey) = wallet_check(m, label(m).as_deref());
            checks.push(check);
            (m, hotkey)
        })
        .collect();
    let is_static = settings.validators.static_list.is_some();
    let snapshot = chain_checks(settings, &hotkeys, &label, &mut checks).await;
    checks.extend(pat_checks(settings, &label).await);
    checks.push(clock_check(settings, is_static, &snapshot).await);
    checks.push(eligible_check(settings, &snapshot));
    if let Some(c) = budget_check(settings, &snapshot) {
        checks.push(c);
    }
    checks.push(state_dir_check(&settings.agent.state_dir));
    checks.extend(crate::cli::notify::doctor_checks(settings).await);
    checks
}

/// The miner's hotkey file loads.
fn wallet_check(m: &MinerSettings, miner: Option<&str>) -> (Check, Option<Hotkey>) {
    match m.load_hotkey() {
        Ok(h) => (ok("wallet", miner, format!("hotkey {} ({})", h.ss58(), m.hotkey_file.display())), Some(h)),
        Err(e) => (
            fail(
                "wallet",
                miner,
                crate::secret::error_chain(&e),
                "point [wallet] hotkey_file (or --hotkey-file, or --wallet/--hotkey/--wallet-path) at the miner's hotkey file",
            ),
            None,
        ),
    }
}

/// The chain: one snapshot (neurons for the eligibility check), then each miner's UID. None with a
/// static validator list.
async fn chain_checks(
    settings: &Settings,
    hotkeys: &[(&MinerSettings, Option<Hotkey>)],
    label: &dyn Fn(&MinerSettings) -> Option<String>,
    checks: &mut Vec<Check>,
) -> Option<Result<SubnetSnapshot, String>> {
    let netuid = settings.chain.netuid;
    let mut client = ChainClient::from_settings(&settings.chain);
    let snapshot = if settings.validators.static_list.is_some() {
        checks.push(skipped("chain", None, "no chain: a static validator list is configured"));
        None
    } else {
        let r = client.snapshot(netuid, None).await.map_err(|e| e.to_string());
        checks.push(match &r {
            Ok(s) => ok(
                "chain",
                None,
                format!("{}: block {}, {} neurons on netuid {}", settings.chain.url, s.block, s.neurons.len(), s.netuid),
            ),
            Err(e) => fail(
                "chain",
                None,
                e.clone(),
                "check [chain] network (or --network: finney, test, local or a ws(s):// URL) and that this host can reach it",
            ),
        });
        Some(r)
    };
    for (m, h) in hotkeys {
        let miner = label(m);
        let miner = miner.as_deref();
        let registered = |detail: String, fix: String| fail("registered", miner, detail, fix);
        checks.push(match (h, &snapshot) {
            (None, _) => registered("cannot tell: the hotkey did not load".into(), "fix the wallet first".into()),
            (Some(_), None) => skipped("registered", miner, "no chain: a static list cannot tell"),
            (Some(_), Some(Err(_))) => {
                registered("cannot tell: the chain is unreachable".into(), "fix the chain check first".into())
            }
            (Some(h), Some(Ok(_))) => match client.uid_of(netuid, &h.public_key()).await {
                Ok(Some(uid)) => ok("registered", miner, format!("uid {uid} on netuid {netuid}")),
                Ok(None) => registered(
                    format!("hotkey {} is not registered on netuid {netuid}", h.ss58()),
                    format!("register it (btcli subnet register --netuid {netuid}) or fix the wallet/hotkey"),
                ),
                Err(e) => registered(e.to_string(), "retry; if it persists see the chain check".into()),
            },
        });
    }
    snapshot
}

/// The PAT of every miner: readable, then the pass's preflight (both GitHub calls a validator
/// makes with it), shown as one line per call.
async fn pat_checks(settings: &Settings, label: &dyn Fn(&MinerSettings) -> Option<String>) -> Vec<Check> {
    let mut checks = Vec::new();
    // (miner, GitHub id, login) of every PAT GitHub accepted
    let mut accounts: Vec<(String, String, String)> = Vec::new();
    // The pass's preflight, with the pass's options: one attempt per call, so doctor reports what
    // GitHub says now (identity_attempts, the validator-style retries, is not used by it).
    let github = GithubClient::new(GithubOptions::from(&settings.github));
    for m in &settings.miners {
        let miner = label(m);
        let miner = miner.as_deref();
        let loaded = match m.load_pat() {
            Ok(l) => {
                checks.push(ok("pat", miner, format!("{} from {}", l.pat.redacted(), l.origin)));
                l
            }
            Err(e) => {
                checks.push(fail("pat", miner, crate::secret::error_chain(&e), pat_fix(&e)));
                continue;
            }
        };
        let github = match &github {
            Ok(g) => g,
            Err(e) => {
                checks.push(fail(IDENTITY, miner, e.to_string(), "fix [github] api_url"));
                continue;
            }
        };
        let report = github.preflight(&loaded.pat).await;
        if let Some(IdentityResult::Valid { id, login }) = &report.identity {
            accounts.push((m.name.clone(), id.clone(), login.clone()));
        }
        checks.extend(github_checks(miner, &report, &settings.github.api_url));
    }
    checks.extend(shared_accounts(&accounts));
    checks
}

fn pat_fix(e: &PatError) -> &'static str {
    match e {
        PatError::NotConfigured | PatError::NotFound(_) => {
            "set [pat] file or [pat] credential in the config, or GITTENSOR_MINER_PAT, or pass --pat-file (a file must be chmod 600)"
        }
        PatError::Missing { .. } => {
            "fix the --pat-file path, [pat] file or the LoadCredential= name, or remove it to use the next PAT source"
        }
        PatError::TooOpen { .. } => "chmod 600 the PAT file",
        PatError::Read { .. } | PatError::Empty(_) => {
            "point the PAT source at a regular file (chmod 600) that holds just the token"
        }
    }
}

const IDENTITY: &str = "github identity";
const TEST_QUERY: &str = "github test query";

/// The preflight as two lines, `GET /user` then the test query: the preflight's verdict decides
/// which line fails and how (transient or invalid); each call's answer gives the detail.
fn github_checks(miner: Option<&str>, report: &PreflightReport, api_url: &str) -> [Check; 2] {
    let Some(IdentityResult::Valid { id, login }) = &report.identity else {
        let revoked = "the PAT is revoked, expired or mistyped: create a new one on github.com and update the PAT file";
        let identity = match (&report.outcome, &report.identity) {
            (PreflightOutcome::Transient { reason, .. }, _) => fail(
                IDENTITY,
                miner,
                format!("GET /user gave no usable answer: {reason}"),
                format!(
                    "check that this host reaches {api_url} (DNS, proxy, firewall) and retry; a rate limit clears by itself"
                ),
            ),
            (_, Some(IdentityResult::InvalidAuth { status: Some(s), message })) => {
                fail(IDENTITY, miner, format!("GET /user refused the PAT (HTTP {s}: {message})"), revoked)
            }
            (outcome, _) => {
                fail(IDENTITY, miner, format!("GET /user was not asked: {}", outcome_reason(outcome)), revoked)
            }
        };
        let not_run = fail(TEST_QUERY, miner, "not run: the identity check failed", "fix the identity check first");
        return [identity, not_run];
    };
    let expiry = report.token_expiry.as_ref().map(|e| format!("; expires {}", e.text)).unwrap_or_default();
    let identity = ok(IDENTITY, miner, format!("GET /user: {login} (id {id}){expiry}"));
    let detail = match &report.test_query {
        Some(TestQueryResult::Failed { detail, .. }) => detail.as_str(),
        _ => outcome_reason(&report.outcome),
    };
    let query = match &report.outcome {
        PreflightOutcome::Valid { .. } => ok(TEST_QUERY, miner, "POST /graphql: the viewer query passed"),
        PreflightOutcome::Transient { .. } => fail(
            TEST_QUERY,
            miner,
            format!("POST /graphql failed transiently: {detail}"),
            "GitHub's GraphQL API had a hiccup or a rate limit; retry in a few minutes",
        ),
        PreflightOutcome::Invalid { .. } => fail(
            TEST_QUERY,
            miner,
            format!("validators would reject this PAT: PAT test query failed: {detail}"),
            "use a token that can run GraphQL queries as its owner (a classic PAT does), then update the PAT file",
        ),
    };
    [identity, query]
}

fn outcome_reason(outcome: &PreflightOutcome) -> &str {
    match outcome {
        PreflightOutcome::Valid { .. } => "",
        PreflightOutcome::Transient { reason, .. } | PreflightOutcome::Invalid { reason } => reason,
    }
}

/// One failure per GitHub account that several miners' PATs belong to: gittensor penalises a
/// GitHub id used by more than one miner, and two tokens of one account are one account.
fn shared_accounts(accounts: &[(String, String, String)]) -> Vec<Check> {
    let mut by_id: std::collections::BTreeMap<&str, Vec<&(String, String, String)>> = Default::default();
    for a in accounts {
        by_id.entry(a.1.as_str()).or_default().push(a);
    }
    by_id
        .into_iter()
        .filter(|(_, miners)| miners.len() > 1)
        .map(|(id, miners)| {
            let names: Vec<&str> = miners.iter().map(|m| m.0.as_str()).collect();
            fail(
                "github account",
                None,
                format!(
                    "miners {} use PATs of the same GitHub account ({} id {id}): gittensor penalises a GitHub id shared by several miners",
                    names.join(" and "),
                    miners[0].2
                ),
                "give each miner a PAT of its own GitHub account",
            )
        })
        .collect()
}

async fn clock_check(settings: &Settings, is_static: bool, snapshot: &Option<Result<SubnetSnapshot, String>>) -> Check {
    if is_static {
        return skipped("clock", None, "no chain");
    }
    if let Some(Err(_)) = snapshot {
        return fail("clock", None, "cannot tell: the chain is unreachable", "fix the chain check first");
    }
    match chain_time::now_ms(&settings.chain).await {
        Err(e) => fail(
            "clock",
            None,
            format!("cannot read the chain's time: {e}"),
            "retry; if it persists see the chain check",
        ),
        Ok(chain_ms) => {
            let local_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            match chain_time::check_skew(local_ms, chain_ms) {
                Ok(skew) => ok(
                    "clock",
                    None,
                    format!(
                        "the chain's latest block is {skew:+.1}s from the local clock (allowed -{}s..+{}s)",
                        chain_time::MAX_BEHIND.as_secs(),
                        chain_time::MAX_AHEAD.as_secs()
                    ),
                ),
                Err(why) => fail(
                    "clock",
                    None,
                    why,
                    "enable time synchronisation (timedatectl set-ntp true, or chrony); if the clock is right, use another chain endpoint",
                ),
            }
        }
    }
}

fn eligible_check(settings: &Settings, snapshot: &Option<Result<SubnetSnapshot, String>>) -> Check {
    let neurons: &[Neuron] = match (&settings.validators.static_list, snapshot) {
        (Some(list), _) => list,
        (None, Some(Ok(s))) => &s.neurons,
        _ => {
            return fail(
                "eligible validators",
                None,
                "cannot tell: the chain is unreachable",
                "fix the chain check first",
            );
        }
    };
    let t = settings.validators.thresholds;
    let sel = validators::select(neurons, t);
    if sel.eligible.is_empty() {
        return fail(
            "eligible validators",
            None,
            format!(
                "no validator of netuid {} passes gitt's rule (vtrust > {}, serving an axon, stake >= {} α); {} high-vtrust validator(s) skipped",
                settings.chain.netuid,
                t.min_vtrust,
                t.min_stake,
                sel.skipped.len()
            ),
            "check the netuid ([chain] netuid / --netuid); `patrol validators` shows who was skipped and why",
        );
    }
    let uids: Vec<String> = sel.eligible.iter().map(|v| v.uid.to_string()).collect();
    ok("eligible validators", None, format!("{} eligible (uids {})", uids.len(), uids.join(",")))
}

/// Does the configured interval fit the GitHub budget at today's eligible set (all of it assumed to
/// hold the PAT, the steady state)? A stretched interval is a warning, not a failure: patrol keeps
/// to the budget by itself.
fn budget_check(settings: &Settings, snapshot: &Option<Result<SubnetSnapshot, String>>) -> Option<Check> {
    use crate::reconcile::budget::{self, Budget, ROUTINE_SHARE};
    let neurons: &[Neuron] = match (&settings.validators.static_list, snapshot) {
        (Some(list), _) => list,
        (None, Some(Ok(s))) => &s.neurons,
        _ => return None,
    };
    let n = validators::select(neurons, settings.validators.thresholds).eligible.len();
    let r = &settings.reconcile;
    let interval = r.interval.as_secs().max(1);
    let every = |s: u64| humantime::format_duration(std::time::Duration::from_secs(s)).to_string();
    let cost = budget::hourly_cost(n, interval);
    let Some(b) = r.github_budget else {
        return Some(ok(
            "github budget",
            None,
            format!("off; {n} validators checked every {} cost about {cost:.0} GitHub calls an hour", every(interval)),
        ));
    };
    let stretched = budget::intervals(interval, Budget(Some(b)), n, 0).steady;
    let detail = format!(
        "{b} calls an hour; {n} validators holding the PAT, checked every {}, cost about {cost:.0} an hour",
        every(interval)
    );
    Some(if stretched > interval {
        warn(
            "github budget",
            format!(
                "{detail}: more than {:.0} % of the budget, so patrol checks every {} instead (the rest is kept for repairs)",
                ROUTINE_SHARE * 100.0,
                every(stretched)
            ),
            "nothing to do; to check more often raise [reconcile] github_budget (GitHub allows 5000 an hour per token, shared with the validators' scoring)",
        )
    } else {
        ok("github budget", None, detail)
    })
}

fn state_dir_check(dir: &Path) -> Check {
    // The same check `reconcile` and `run` make before they take the state lock.
    match crate::reconcile::state::check_dir(dir) {
        Ok(()) => ok("state dir", None, format!("{} is writable", dir.display())),
        Err(crate::reconcile::state::StateError::Dir { path, reason }) => fail(
            "state dir",
            None,
            format!("{} is not a writable directory: {reason}", path.display()),
            crate::reconcile::state::DIR_FIX,
        ),
        Err(e) => fail("state dir", None, e.to_string(), crate::reconcile::state::DIR_FIX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_say_ok_or_fail_and_the_fix() {
        let checks = vec![
            ok("config", None, "/etc/patrol/config.toml parsed"),
            skipped("clock", None, "no chain"),
            fail("registered", Some("m1"), "hotkey X is not registered on netuid 74", "register it"),
        ];
        let text = render(&checks);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ok   config") && lines[0].ends_with("parsed"), "{text}");
        assert!(lines[1].starts_with("ok   clock") && lines[1].contains("skipped: no chain"), "{text}");
        assert!(lines[2].starts_with("fail registered") && lines[2].contains("m1: hotkey X"), "{text}");
        assert_eq!(lines[3].trim(), "fix: register it");
        assert_eq!(lines[4], "1 check(s) failed");
    }

    /// The preflight's verdict decides the two GitHub lines; each call's answer is the detail.
    #[test]
    fn the_github_lines_follow_the_preflight() {
        use crate::github::PreflightOutcome as O;
        let report = |outcome, identity, test_query| PreflightReport {
            identity: Some(identity),
            test_query,
            ..PreflightReport::judged(outcome)
        };
        let valid = || IdentityResult::Valid { id: "7".into(), login: "octo".into() };
        let lines = |r: &PreflightReport| {
            github_checks(None, r, "https://api.github.com").map(|c| (c.ok, c.detail, c.fix.unwrap_or_default()))
        };
        let failed = |transient| Some(TestQueryResult::Failed { detail: "503".into(), transient, retry_after: None });

        let [id, q] =
            lines(&report(O::Valid { login: "octo".into(), id: "7".into() }, valid(), Some(TestQueryResult::Ok)));
        assert!(id.0 && id.1 == "GET /user: octo (id 7)" && q.0, "{id:?} {q:?}");
        let [id, q] = lines(&report(
            O::Transient { reason: "PAT test query: 503".into(), retry_after: None },
            valid(),
            failed(true),
        ));
        assert!(id.0 && !q.0 && q.1 == "POST /graphql failed transiently: 503" && q.2.contains("retry"), "{q:?}");
        let [_, q] = lines(&report(O::Invalid { reason: "PAT test query: 503".into() }, valid(), failed(false)));
        assert_eq!(q.1, "validators would reject this PAT: PAT test query failed: 503");
        let refused = IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() };
        let [id, q] = lines(&report(O::Invalid { reason: "GitHub /user returned 401".into() }, refused, None));
        assert!(
            !id.0
                && id.1 == "GET /user refused the PAT (HTTP 401: Bad credentials)"
                && id.2.contains("create a new one")
        );
        assert!(!q.0 && q.1 == "not run: the identity check failed", "{q:?}");
        let down = IdentityResult::Transient { detail: "GitHub /user returned 502".into(), retry_after: None };
        let [id, _] =
            lines(&report(O::Transient { reason: "GitHub /user returned 502".into(), retry_after: None }, down, None));
        assert!(
            !id.0 && id.1 == "GET /user gave no usable answer: GitHub /user returned 502" && id.2.contains("reaches")
        );
        // a token no header can carry: no call made, refused like a bad PAT
        let [id, _] = lines(&PreflightReport::judged(O::Invalid { reason: "PAT rejected: newline".into() }));
        assert!(!id.0 && id.1.contains("PAT rejected: newline") && id.2.contains("create a new one"), "{id:?}");
    }

    #[test]
    fn an_unwritable_state_dir_fails_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        assert!(state_dir_check(&d.path().join("state")).ok);
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let c = state_dir_check(&file.join("sub"));
        assert!(!c.ok && c.fix.unwrap().contains("StateDirectory"));
    }
}
