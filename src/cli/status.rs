//! `patrol status [--json]`: what the running agent knows, asked over its local endpoint
//! (`/status` on `[agent] listen`), or — when no agent answers — what the state files in the state
//! dir say, saying so and how old they are. No validator is contacted and no GitHub call is made,
//! so cron can run it as often as it likes; the exit code is `check`'s (see
//! [`crate::status_view`]), with state older than 2 × (interval + jitter) as 3, never a stale 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::agent::status::human;
use crate::cli::{Exit, StatusArgs};
use crate::config::Settings;
use crate::reconcile::core::Secs;
use crate::reconcile::state::{MinerState, StateFile};
use crate::reconcile::transport::{Clock, SystemClock};
use crate::report::{short_hotkey, table};
use crate::status_view::{self, Limits, MinerInput, MinerRecord, Problem, Source, StatusView, ValidatorView};

/// How long the agent may take to answer (it answers from memory, in milliseconds).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Run the command.
pub async fn run(settings: &Settings, args: &StatusArgs) -> anyhow::Result<Exit> {
    let view = match settings.agent.listen {
        Some(addr) => match ask_agent(addr).await {
            Ok(view) => view,
            Err(why) => from_state_files(settings, &format!("no agent answered at {addr} ({why})"))?,
        },
        None => from_state_files(settings, "[agent] listen is off")?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render(&view));
    }
    Ok(Exit::from(view.verdict))
}

/// `GET http://ADDR/status` (a wildcard address is asked on loopback).
async fn ask_agent(addr: SocketAddr) -> Result<StatusView, String> {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    crate::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(ASK_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let url = format!("http://{}/status", SocketAddr::new(ip, addr.port()));
    let resp = client.get(&url).send().await.map_err(|e| transport_error(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status} from {url}; an agent older than `patrol status`?"));
    }
    resp.json::<StatusView>().await.map_err(|e| format!("not a patrol /status answer: {e}"))
}

/// The innermost cause: "Connection refused (os error 111)", not reqwest's "error sending request".
fn transport_error(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if e.is_timeout() { format!("no answer within {}s", ASK_TIMEOUT.as_secs()) } else { cause.to_string() }
}

/// The view from the configured miners' state files, read without a lock and without changing
/// them (the agent may own them).
fn from_state_files(settings: &Settings, why: &str) -> anyhow::Result<StatusView> {
    let dir = &settings.agent.state_dir;
    let loaded = read_states(settings);
    let now = SystemClock.now();
    let written = loaded.iter().filter(|(_, _, _, p)| p.is_none()).map(|(_, _, s, _)| s.updated_at).max();
    let note = match written {
        Some(at) => format!("{why}: from the state files in {}, last written {}", dir.display(), ago(at, now)),
        None => format!("{why}: no state file in {}", dir.display()),
    };
    let limits = Limits::of(settings);
    let inputs = MinerInput::of(&loaded);
    let source = Source::StateFiles { state_dir: dir.display().to_string(), note };
    Ok(status_view::build(&source, &limits, &inputs, now))
}

/// Each configured miner's state file, found by its hotkey. A hotkey file that cannot be read —
/// the packaged service's is a systemd credential, gone while the service is stopped — is not
/// needed: the state files of this netuid no readable miner claims stand in for those miners (one
/// such miner and one such file: that miner's; else each file under its own hotkey).
fn read_states(settings: &Settings) -> Vec<MinerRecord> {
    let netuid = settings.chain.netuid;
    let dir = &settings.agent.state_dir;
    let mut loaded: Vec<MinerRecord> = Vec::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for m in &settings.miners {
        match m.load_hotkey() {
            Ok(h) => loaded.push(read_state(m.name.clone(), h.ss58(), settings)),
            Err(e) => unreadable.push((m.name.clone(), crate::secret::error_chain(&e))),
        }
    }
    if unreadable.is_empty() {
        return loaded;
    }
    let suffix = format!("-{netuid}.json");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("state-")?.strip_suffix(&suffix).map(String::from))
        .filter(|hk| crate::wallet::ss58_decode(hk).is_ok() && !loaded.iter().any(|(_, h, _, _)| h == hk))
        .collect();
    found.sort();
    match (unreadable.as_slice(), found.as_slice()) {
        ([(name, _)], [hotkey]) => loaded.push(read_state(name.clone(), hotkey, settings)),
        (_, []) => loaded.extend(unreadable.into_iter().map(|(name, why)| {
            let problem =
                Problem { kind: "hotkey_unreadable".into(), message: format!("{why}; no state file found for it") };
            (name, String::new(), MinerState::new("", netuid), Some(problem))
        })),
        (_, many) => loaded.extend(many.iter().map(|hk| read_state(hk.clone(), hk, settings))),
    }
    loaded
}

/// `hotkey`'s state file, or why there is none to show.
fn read_state(name: String, hotkey: &str, settings: &Settings) -> MinerRecord {
    let netuid = settings.chain.netuid;
    let file = StateFile::of(settings, hotkey);
    let (state, problem) = match file.peek(hotkey, netuid) {
        Ok(Some(state)) => (state, None),
        Ok(None) => (
            MinerState::new(hotkey, netuid),
            Some(Problem {
                kind: "no_state".into(),
                message: format!("no state file {}: no pass has run with this state dir", file.path.display()),
            }),
        ),
        Err(message) => (MinerState::new(hotkey, netuid), Some(Problem { kind: "state_unreadable".into(), message })),
    };
    (name, hotkey.to_string(), state, problem)
}

/// `3m ago` / `in 3m`.
fn ago(at: Secs, now: Secs) -> String {
    if at <= now {
        format!("{} ago", human(Duration::from_secs(now - at)))
    } else {
        format!("in {}", human(Duration::from_secs(at - now)))
    }
}

fn opt_ago(at: Option<Secs>, now: Secs, none: &str) -> String {
    at.map_or_else(|| none.to_string(), |t| ago(t, now))
}

/// The human form: where the view comes from, then per miner a summary line, its problem or
/// staleness, a table of validators and its alerts.
pub fn render(v: &StatusView) -> String {
    let now = v.generated_at;
    let mut out = String::new();
    match (&v.agent, &v.note) {
        (Some(a), _) => out.push_str(&format!(
            "agent: patrol {}, pid {}, up {}{}; next round {}\n",
            a.facts.version,
            a.facts.pid,
            human(Duration::from_secs(a.uptime_s)),
            if a.facts.dry_run { ", dry run (sends nothing)" } else { "" },
            opt_ago(a.facts.next_round_at, now, "not scheduled"),
        )),
        (None, Some(note)) => out.push_str(&format!("{note}\n")),
        (None, None) => {}
    }
    for m in &v.miners {
        out.push('\n');
        let budget = m.github.budget_per_hour.map_or_else(|| "no budget".to_string(), |b| format!("budget {b}"));
        out.push_str(&format!(
            "miner {} ({}): {}/{} covered; last pass {}; GitHub calls in the last hour: {} ({budget})\n",
            m.name,
            m.hotkey,
            m.covered,
            m.total,
            opt_ago(m.last_pass_at, now, "never"),
            m.github.spent_last_hour,
        ));
        if let Some(p) = &m.problem {
            out.push_str(&format!("  problem ({}): {}\n", p.kind, p.message));
        }
        if m.stale && m.last_pass_at.is_some() {
            out.push_str(&format!(
                "  stale: no pass for more than {} (2 × (interval + jitter)): coverage undetermined\n",
                human(Duration::from_secs(v.stale_after_s))
            ));
        }
        if !m.validators.is_empty() {
            let rows: Vec<Vec<String>> = m.validators.iter().map(|x| validator_row(x, now)).collect();
            out.push_str(&table(
                &["UID", "HOTKEY", "CATEGORY", "FOR", "LAST CHECK", "NEXT CHECK", "AXON UUID (AGE)", "BACKOFF", "NOTE"],
                &rows,
            ));
        }
        for a in &m.alerts {
            out.push_str(&format!("ALERT {}: {}\n", a.kind, a.message));
        }
    }
    out
}

/// One validator's row: what it answered and for how long, its timers, its axon process, its
/// backoff, and why it is not covered.
fn validator_row(x: &ValidatorView, now: Secs) -> Vec<String> {
    let age = |t: Secs| human(Duration::from_secs(now.saturating_sub(t)));
    let axon = match &x.axon_uuid {
        Some(u) => format!(
            "{} ({}, {} restarts)",
            u.chars().take(8).collect::<String>(),
            x.axon_uuid_since.map_or_else(|| "?".into(), age),
            x.restarts
        ),
        None => "-".into(),
    };
    let backoff = x.backoff.as_ref().map_or_else(
        || "-".into(),
        |b| {
            let left = human(Duration::from_secs(b.until.saturating_sub(now)));
            format!("{left} ({} failure{})", b.failures, if b.failures == 1 { "" } else { "s" })
        },
    );
    let note = x
        .terminal
        .clone()
        .or_else(|| x.silent.as_ref().map(|s| format!("silent ({}) since {}", s.kind.as_str(), ago(s.since, now))))
        .or_else(|| x.reason.clone())
        .unwrap_or_default();
    vec![
        x.uid.to_string(),
        short_hotkey(&x.hotkey),
        x.category.map_or("pending", |c| c.as_str()).to_string(),
        x.since.map_or_else(|| "-".into(), age),
        opt_ago(x.last_check_at, now, "never"),
        opt_ago(x.next_check_at, now, "next round"),
        axon,
        backoff,
        note,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Category;
    use crate::reconcile::core::History;

    #[test]
    fn the_human_form_says_where_it_comes_from_and_what_each_validator_is() {
        let now = 1_800_000_000;
        let mut st = MinerState::new("5Hk", 74);
        st.last_pass_at = Some(now - 180);
        let mut h = History::new("5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi");
        h.category = Some(Category::Valid);
        h.category_since = Some(now - 7200);
        h.checked_at = Some(now - 180);
        h.next_check_at = now + 720;
        h.note_axon_uuid("d9f7081e-e615-11f1", now - 3600);
        st.validators.insert(1, h);
        let limits = Limits { netuid: 74, interval: 900, jitter: 90, budget_per_hour: Some(150) };
        let source = Source::StateFiles { state_dir: "/var/lib/patrol".into(), note: "no agent answered".into() };
        let v = status_view::build(
            &source,
            &limits,
            &[MinerInput { name: "default", hotkey: "5Hk", state: &st, problem: None }],
            now,
        );
        let text = render(&v);
        assert!(text.starts_with("no agent answered\n"), "{text}");
        assert!(text.contains("miner default (5Hk): 1/1 covered; last pass 3m ago"), "{text}");
        let row = text.lines().find(|l| l.starts_with("1 ")).unwrap_or_else(|| panic!("{text}"));
        for cell in ["valid", "2h", "3m ago", "in 12m", "d9f7081e (1h, 0 restarts)"] {
            assert!(row.contains(cell), "{cell} not in {row:?}");
        }
    }
}
