//! Real metrics to test the alert rules and the dashboard on: the text of a running agent's
//! `/metrics` and of `reconcile --metrics-file` files, each taken from a real `patrol` process in a
//! real situation (validators down, a PAT about to expire, a revoked PAT, no validator source, a
//! rejected reload), against `patrol validator serve` processes and the fake GitHub on 127.0.0.1.
//! Taken once per test process (every test that needs them waits for the first).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::agent::{Agent, free_port, replace_file};
use crate::support::cli::dead_port;
use crate::support::fake_github::{FakeGithubProcess, request};
use crate::support::subnet::Subnet;

const PAT: &str = "ghp_alertRulesAccount4242tokenA000001";
/// The same account, a PAT that expires in 3 days.
const PAT_SOON: &str = "ghp_alertRulesAccount4242tokenB000002";
/// The same account, a PAT GitHub revokes.
const PAT_REVOKED: &str = "ghp_alertRulesAccount4242tokenC000003";

/// One real exposition text and the wall-clock time it was taken at.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub at: f64,
}

/// Every situation, as a running agent's `/metrics` or a timer pass's `--metrics-file`.
#[derive(Debug)]
pub struct Scrapes {
    /// The agent after its first pass: every validator covered.
    pub agent_healthy: Scrape,
    /// The same agent after a config change it rejected.
    pub agent_reload_rejected: Scrape,
    /// A timer pass, every validator covered.
    pub timer_healthy: Scrape,
    /// One of the two validators down.
    pub timer_partial: Scrape,
    /// Both down.
    pub timer_none: Scrape,
    /// A rotation to a PAT that expires in 3 days.
    pub timer_expiring: Scrape,
    /// A rotation to a PAT GitHub has revoked (nothing sent; the validators keep the old one).
    pub timer_pat_invalid: Scrape,
    /// The chain endpoint unreachable, no cached metagraph: no validator source.
    pub timer_no_chain: Scrape,
}

impl Scrapes {
    pub fn all(&self) -> [(&'static str, &Scrape); 8] {
        [
            ("agent_healthy", &self.agent_healthy),
            ("agent_reload_rejected", &self.agent_reload_rejected),
            ("timer_healthy", &self.timer_healthy),
            ("timer_partial", &self.timer_partial),
            ("timer_none", &self.timer_none),
            ("timer_expiring", &self.timer_expiring),
            ("timer_pat_invalid", &self.timer_pat_invalid),
            ("timer_no_chain", &self.timer_no_chain),
        ]
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// GitHub's `github-authentication-token-expiration` format, `secs` from now.
fn expiry_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC"))
        .expect("format a date")
}

/// The scrapes, taken at most once per test process.
pub fn scrapes() -> &'static Scrapes {
    static SCRAPES: OnceLock<Scrapes> = OnceLock::new();
    SCRAPES.get_or_init(take)
}

fn take() -> Scrapes {
    let gh = FakeGithubProcess::new(&[(PAT, 4242, "miner"), (PAT_REVOKED, 4242, "miner")]);
    let (status, body) = request(
        gh.addr,
        "POST",
        "/_fake/tokens",
        Some(&json!({"token": PAT_SOON, "id": 4242, "login": "miner", "expiry": expiry_in(3 * 86_400)})),
    );
    assert_eq!(status, 201, "add an expiring token to the fake GitHub: {body}");
    let mut net = Subnet::with_pat(2, gh.addr, PAT);
    let port = free_port();
    net.config("c.toml", &[0, 1], gh.addr, "");
    let cfg = std::fs::read_to_string(net.scratch.path("c.toml")).expect("read c.toml");
    let cfg = cfg.replacen("[agent]\n", &format!("[agent]\nlisten = \"127.0.0.1:{port}\"\n"), 1);
    replace_file(&net.scratch.path("c.toml"), &cfg, 0o600);

    // the agent: healthy, then a config it rejects
    let agent = Agent::start(&net.scratch, &["--config", "c.toml"], &[], Some(port), &[PAT]);
    agent.wait_metric("patrol_ready", &[], Duration::from_secs(30), |v| v == 1.0);
    let agent_healthy = scrape_agent(&agent);
    replace_file(&net.scratch.path("c.toml"), &format!("{cfg}\n[agent.typo]\nlisten = 1\n"), 0o600);
    agent.wait_metric("patrol_reloads_total", &[("result", "rejected")], Duration::from_secs(30), |v| v >= 1.0);
    let agent_reload_rejected = scrape_agent(&agent);
    drop(agent);
    replace_file(&net.scratch.path("c.toml"), &cfg, 0o600);

    // timer passes on the same state
    let timer_healthy = pass(&net, "c.toml", 0);
    net.nodes[1].stop();
    let timer_partial = pass(&net, "c.toml", 1);
    net.nodes[0].stop();
    let timer_none = pass(&net, "c.toml", 3);
    net.nodes[0].start();
    net.nodes[1].start();
    // the next passes on a state of their own: the one above has both validators in backoff
    replace_file(
        &net.scratch.path("fresh.toml"),
        &cfg.replace("state_dir = \"state\"", "state_dir = \"state-fresh\""),
        0o600,
    );
    net.scratch.pat("pat", PAT_SOON);
    let timer_expiring = pass(&net, "fresh.toml", 0);
    let (status, body) = request(gh.addr, "POST", "/_fake/tokens/revoke", Some(&json!({"token": PAT_REVOKED})));
    assert_eq!(status, 200, "revoke a token at the fake GitHub: {body}");
    net.scratch.pat("pat", PAT_REVOKED);
    let timer_pat_invalid = pass(&net, "fresh.toml", 0);
    // no static list: the chain is the source, and its endpoint does not answer
    let chain = format!("\n[chain]\nnetwork = \"ws://127.0.0.1:{}\"\nconnect_timeout = \"2s\"\n", dead_port());
    net.config("c.toml", &[], gh.addr, &chain);
    net.scratch.pat("pat", PAT);
    let timer_no_chain = pass(&net, "c.toml", 3);
    Scrapes {
        agent_healthy,
        agent_reload_rejected,
        timer_healthy,
        timer_partial,
        timer_none,
        timer_expiring,
        timer_pat_invalid,
        timer_no_chain,
    }
}

fn scrape_agent(agent: &Agent) -> Scrape {
    let at = now();
    let (status, text) = agent.get("/metrics");
    assert_eq!(status, 200, "GET /metrics: {text}");
    Scrape { text, at }
}

/// `patrol reconcile --metrics-file` with the exit code the situation gives; the file it wrote.
fn pass(net: &Subnet, config: &str, code: i32) -> Scrape {
    let file = net.scratch.path("patrol.prom");
    let _ = std::fs::remove_file(&file);
    let run = net.scratch.run_env(
        &["reconcile", "--config", config, "--metrics-file", "patrol.prom"],
        &[],
        Duration::from_secs(60),
    );
    run.expect_code(code);
    let at = now();
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}\n{run}", file.display()));
    Scrape { text, at }
}
