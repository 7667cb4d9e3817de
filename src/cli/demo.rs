//! `patrol demo`: the README's first command. With no wallet and no network it starts a small
//! subnet on 127.0.0.1 — a fake GitHub with one demo account and N reference validators (gittensor's
//! handlers on real axons, temp stores) — generates a demo miner registered at all of them, and runs
//! the real reconcile pass (`reconcile::pass::run`, static validator list): first pass broadcasts
//! everywhere; then one validator loses its store (restarted with an empty one, as a Watchtower
//! recreation does); the second pass re-broadcasts to exactly that validator and coverage is back.
//!
//! Prints human text (or `--json`), removes every temp file, exits 0 when coverage was restored.
//! Timeouts are small so it finishes in about a second. Never prints the PAT (demo or not).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{Coded, DemoArgs, Exit};
use crate::github::{GithubClient, GithubOptions, Mode};
use crate::lab::fake_github::{FakeAccount, FakeGithubConfig, spawn_fake_github};
use crate::lab::validator::{Axon, AxonConfig, Metagraph, PatStore, PatValidator, RegisteredMiner};
use crate::observe::Category;
use crate::reconcile::budget::Budget;
use crate::reconcile::core::Policy;
use crate::reconcile::pass::{self, PassConfig, PassOutcome, Work};
use crate::reconcile::state::MinerState;
use crate::reconcile::transport::{Clock, NetLimits, NetTransport, SystemClock};
use crate::secret::Pat;
use crate::validators::{Selection, Validator};
use crate::wallet::Hotkey;
use crate::wire::Dendrite;
use crate::wire::dendrite::DendriteOptions;

const DEMO_MINER_UID: u16 = 42;
const DEMO_GITHUB_ID: u64 = 4242;
const DEMO_LOGIN: &str = "patrol-demo";

/// Removes the demo's temp directory however the demo ends.
struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One reference validator of the demo subnet.
struct DemoValidator {
    uid: u16,
    hotkey: Arc<Hotkey>,
    store: PathBuf,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_validator(
    uid: u16,
    hotkey: Arc<Hotkey>,
    store: PathBuf,
    listen: SocketAddr,
    github_url: &str,
    metagraph: &Metagraph,
) -> anyhow::Result<DemoValidator> {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        // The old port may still be held briefly after a restart: any free port will do.
        Err(_) => TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("bind 127.0.0.1")?,
    };
    let addr = listener.local_addr()?;
    let github = GithubClient::new(GithubOptions {
        api_url: github_url.to_string(),
        mode: Mode::Fixed,
        timeout: Duration::from_secs(2),
        identity_attempts: 2,
        identity_retry_sleep: Duration::from_millis(50),
        ..GithubOptions::default()
    })?;
    let store_handle = Arc::new(PatStore::new(&store));
    store_handle.ensure_file()?;
    let v = Arc::new(PatValidator::new(metagraph.clone(), store_handle, Arc::new(github), Mode::Fixed));
    let axon = Axon::new(v, Arc::clone(&hotkey), AxonConfig::default());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(axon.serve(listener, async move { s.cancelled().await }));
    Ok(DemoValidator { uid, hotkey, store, addr, stop, task })
}

impl DemoValidator {
    async fn stop(self) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.task).await.is_err() {
            abort.abort();
        }
    }

    fn as_selected(&self) -> Validator {
        Validator {
            uid: self.uid,
            hotkey: self.hotkey.ss58().to_string(),
            ip: self.addr.ip(),
            port: self.addr.port(),
            vtrust: 1.0,
            stake: 20_000.0,
        }
    }
}

/// The wall clock shifted forward on demand: the second pass happens "one check interval later"
/// without the demo waiting for it (patrol spaces broadcasts to one validator by a minute or more).
#[derive(Default)]
struct DemoClock {
    shift: std::sync::atomic::AtomicU64,
}

impl Clock for DemoClock {
    fn now_f64(&self) -> f64 {
        SystemClock.now_f64() + self.shift.load(std::sync::atomic::Ordering::SeqCst) as f64
    }
}

fn random_token() -> String {
    let tail: String =
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(32).map(char::from).collect();
    format!("ghp_{tail}")
}

fn random_hotkey() -> Arc<Hotkey> {
    Arc::new(Hotkey::from_seed(&rand::random::<[u8; 32]>()))
}

fn counts<'a>(cats: impl Iterator<Item = &'a Category>) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for c in cats {
        *m.entry(c.as_str()).or_insert(0) += 1;
    }
    m
}

fn summarize(out: &PassOutcome) -> (BTreeMap<&'static str, usize>, Vec<u16>, BTreeMap<&'static str, usize>) {
    let seen: Vec<Category> =
        out.validators.iter().filter_map(|v| v.checked.as_ref()).map(|r| r.obs.category).collect();
    let checked = counts(seen.iter());
    let sent = out.validators.iter().filter(|v| v.attempts > 0).map(|v| v.validator.uid).collect();
    let finals: Vec<Category> =
        out.validators.iter().map(|v| v.final_category.unwrap_or(Category::NoResponse)).collect();
    (checked, sent, counts(finals.iter()))
}

fn fmt_counts(m: &BTreeMap<&'static str, usize>) -> String {
    m.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}

fn print_pass(n: usize, out: &PassOutcome) {
    let (checked, sent, finals) = summarize(out);
    println!("pass {n}: checked {} validators ({})", out.validators.len(), fmt_counts(&checked));
    for v in &out.validators {
        let before = v.checked.as_ref().map_or("-", |r| r.obs.category.as_str());
        let after = v.final_category.map_or("-", Category::as_str);
        let action = if v.attempts > 0 { "broadcast → accepted" } else { "nothing to do" };
        println!("  uid {:>2}  {:<21} {:<10} {:<22} now {after}", v.validator.uid, v.validator.addr(), before, action);
    }
    println!(
        "  broadcast to uids {sent:?}; coverage {} ({:.0} ms)",
        fmt_counts(&finals),
        out.duration.as_secs_f64() * 1000.0
    );
}

/// Run the demo.
pub async fn run(args: &DemoArgs) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let n = usize::from(args.validators.clamp(1, 32));
    let root = TempRoot(std::env::temp_dir().join(format!(
        "patrol-demo-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&root.0).with_context(|| format!("create {}", root.0.display()))?;

    let token = random_token();
    let pat = Pat::new(&token).context("demo PAT")?;
    let (gh_addr, gh) = spawn_fake_github(FakeGithubConfig::default().with_account(FakeAccount::new(
        &token,
        DEMO_GITHUB_ID,
        DEMO_LOGIN,
    )))
    .await;
    let github_url = format!("http://{gh_addr}");
    let miner = random_hotkey();
    let metagraph =
        Metagraph::new([RegisteredMiner { uid: DEMO_MINER_UID, hotkey: miner.ss58().to_string(), stake: 1_000.0 }])?;

    let mut validators = Vec::with_capacity(n);
    for i in 0..n {
        let uid = u16::try_from(i + 1)?;
        let store = root.0.join(format!("validator-{uid}")).join("miner_pats.json");
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        validators.push(start_validator(uid, random_hotkey(), store, any_port, &github_url, &metagraph).await?);
    }
    if !args.json {
        println!("patrol demo: a local subnet on 127.0.0.1 (no wallet, no network)");
        println!(
            "  fake GitHub at {gh_addr} with account {DEMO_LOGIN:?}; {n} reference validators running gittensor's PAT handlers"
        );
        println!("  demo miner {} (uid {DEMO_MINER_UID}), PAT {}", miner.ss58(), pat.redacted());
    }

    let dendrite = Arc::new(Dendrite::new(
        Arc::clone(&miner),
        DendriteOptions { external_ip: "127.0.0.1".into(), ..Default::default() },
    )?);
    let github = GithubClient::new(GithubOptions {
        api_url: github_url.clone(),
        timeout: Duration::from_secs(2),
        ..GithubOptions::default()
    })?;
    let clock = Arc::new(DemoClock::default());
    let limits = NetLimits {
        check_timeout: Duration::from_secs(2),
        broadcast_timeout: Duration::from_secs(3),
        probe_timeout: Duration::from_secs(2),
        concurrency: 8,
    };
    let net = NetTransport { dendrite, github: Arc::new(github), limits, clock: clock.clone() };
    let cfg = PassConfig { policy: Policy::default(), budget: Budget::default(), dry_run: false };
    let mut state = MinerState::new(miner.ss58(), 74);
    let selection = |vs: &[DemoValidator]| Selection {
        eligible: vs.iter().map(DemoValidator::as_selected).collect(),
        skipped: Vec::new(),
    };

    let first = pass::run(&net, &cfg, &selection(&validators), &mut state, &pat, &Work::one_shot(), None).await;
    if !args.json {
        print_pass(1, &first);
    }

    // A validator loses its store: stop it, delete the file, restart it empty on the same port.
    let victim = n / 2;
    let old = validators.remove(victim);
    let (uid, hotkey, store, addr) = (old.uid, Arc::clone(&old.hotkey), old.store.clone(), old.addr);
    old.stop().await;
    wipe(&store)?;
    validators.insert(victim, start_validator(uid, hotkey, store, addr, &github_url, &metagraph).await?);
    if !args.json {
        println!("wiped the PAT store of validator uid {uid} and restarted it with an empty store");
        println!(
            "one check interval ({}) later (simulated clock):",
            humantime::format_duration(Duration::from_secs(cfg.policy.interval))
        );
    }

    clock.shift.store(cfg.policy.interval, std::sync::atomic::Ordering::SeqCst);
    let second = pass::run(&net, &cfg, &selection(&validators), &mut state, &pat, &Work::one_shot(), None).await;
    if !args.json {
        print_pass(2, &second);
    }
    let (checked1, sent1, final1) = summarize(&first);
    let (checked2, sent2, final2) = summarize(&second);
    let all_valid = |m: &BTreeMap<&'static str, usize>| m.get("valid") == Some(&n);
    let restored = all_valid(&final1) && all_valid(&final2) && sent2 == vec![uid];
    for v in validators {
        v.stop().await;
    }
    gh.shutdown();
    drop(root);
    let elapsed = started.elapsed();
    if args.json {
        let v = json!({
            "success": restored,
            "validators": n,
            "miner_hotkey": miner.ss58(),
            "github_login": DEMO_LOGIN,
            "passes": [
                {"pass": 1, "checked": checked1, "broadcast_to": sent1, "final": final1},
                {"pass": 2, "wiped_uid": uid, "checked": checked2, "broadcast_to": sent2, "final": final2},
            ],
            "coverage_restored": restored,
            "duration_ms": elapsed.as_millis() as u64,
        });
        println!("{v}");
    } else if restored {
        println!(
            "summary: {n}/{n} validators covered; after uid {uid} lost its store, patrol re-broadcast to uid {uid} only and coverage is {n}/{n} again ({:.1} s)",
            elapsed.as_secs_f64()
        );
    }
    if restored {
        Ok(Exit::Covered)
    } else {
        Err(Coded::new(
            Exit::Software,
            "demo_failed",
            format!("the demo did not restore coverage: pass 1 {final1:?}, pass 2 sent to {sent2:?}, {final2:?}"),
        ))
    }
}

fn wipe(store: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(store) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", store.display())),
    }
}
