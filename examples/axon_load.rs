//! Load generator for `benches/axon_throughput.sh`: correctly signed `PatCheckSynapse` requests
//! against one axon (patrol's or Python's), from N concurrent clients, for a fixed time.
//!
//! Each client is its own [`Dendrite`] — its own uuid and its own keep-alive connection — and
//! sends one request at a time, so its nonces arrive in order (the axon's per-`hotkey:uuid`
//! monotonic rule; wire doc §5.2). A request counts as verified when the axon answered 200 with a
//! synapse (it passed blacklist, signature and nonce checks and ran the handler).
//!
//! ```text
//! cargo run --release --example axon_load -- --target 127.0.0.1:8091:<validator ss58> \
//!     --seed 0x<miner seed> --concurrency 16 --duration 10
//! ```
//! Prints one JSON line: requests, verified, errors, rps (verified per second), p50/p99 latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use patrol::wallet::Hotkey;
use patrol::wire::{CallOutcome, Dendrite, Target};

#[derive(Parser)]
struct Args {
    /// IP:PORT:VALIDATOR_SS58
    #[arg(long)]
    target: String,
    /// Miner hotkey seed, 32 bytes of hex (registered at the target).
    #[arg(long)]
    seed: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds first (connections, caches).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    verified: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    first_error: Option<String>,
}

fn parse_target(s: &str) -> Result<Target, String> {
    let (addr, hotkey) = s.rsplit_once(':').ok_or("--target must be IP:PORT:HOTKEY")?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("--target address: {e}"))?;
    Ok(Target { ip: addr.ip(), port: addr.port(), hotkey: hotkey.to_string() })
}

async fn client(key: Arc<Hotkey>, target: Target, warmup_end: Instant, end: Instant) -> Tally {
    let mut t = Tally::default();
    let d = match Dendrite::new(key, Default::default()) {
        Ok(d) => d,
        Err(e) => {
            t.first_error = Some(e.to_string());
            return t;
        }
    };
    loop {
        let started = Instant::now();
        if started >= end {
            return t;
        }
        let reply = d.check(&target, Duration::from_secs(10)).await;
        if started < warmup_end {
            continue;
        }
        t.requests += 1;
        match reply.outcome {
            CallOutcome::Answered(_) => {
                t.verified += 1;
                t.latencies_us.push(u64::try_from(reply.latency.as_micros()).unwrap_or(u64::MAX));
            }
            other => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{other:?}"));
            }
        }
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let target = parse_target(&args.target)?;
    let key = Arc::new(Hotkey::from_seed_hex(&args.seed).map_err(|e| format!("--seed: {e}"))?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let measured = Duration::from_secs_f64(args.duration);
    let (total, wall) = rt.block_on(async {
        let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
        let end = warmup_end + measured;
        let tasks: Vec<_> = (0..args.concurrency.max(1))
            .map(|_| tokio::spawn(client(Arc::clone(&key), target.clone(), warmup_end, end)))
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            let t = task.await.map_err(|e| e.to_string())?;
            total.requests += t.requests;
            total.verified += t.verified;
            total.errors += t.errors;
            total.latencies_us.extend(t.latencies_us);
            if total.first_error.is_none() {
                total.first_error = t.first_error;
            }
        }
        Ok::<_, String>((total, Instant::now().saturating_duration_since(warmup_end)))
    })?;
    let mut lat = total.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |&us| us as f64 / 1000.0);
    let secs = wall.as_secs_f64().max(measured.as_secs_f64());
    let out = serde_json::json!({
        "concurrency": args.concurrency,
        "duration_s": secs,
        "requests": total.requests,
        "verified": total.verified,
        "errors": total.errors,
        "rps": total.verified as f64 / secs,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "first_error": total.first_error,
    });
    println!("{out}");
    Ok(())
}
