//! patrol's side of benchmark 1 (`benches/run.sh`): one `PatCheckSynapse` fan-out to every validator
//! of a farm (`examples/bench_farm.rs`), timed in-process, repeated.
//!
//! Each repetition uses a fresh [`Dendrite`] (a fresh uuid and connection pool, as one `patrol check`
//! has) and goes through [`patrol::fanout::Fanout::check`], the code `check`, `post` and the reconciler
//! use; the clock covers the fan-out only (signing, sending, waiting, classifying), not building the
//! dendrite. The Python counterpart is `benches/bt_fanout.py`.
//!
//! ```text
//! bench_fanout --validators farm.json --seed 0x<miner seed> --timeout 2 --reps 7 [--concurrency 32]
//! ```
//! Prints one JSON line: `{"walls_s": [...], "answered": [...], "no_response": [...], ...}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use patrol::validators::Validator;
use patrol::wallet::Hotkey;
use patrol::wire::{CallOutcome, Dendrite};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// The farm's ready line (a JSON object with `validators`).
    #[arg(long)]
    validators: std::path::PathBuf,
    /// Miner hotkey seed, 32 bytes of hex.
    #[arg(long)]
    seed: String,
    /// Per-call timeout in seconds (both clients use the same).
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Calls in flight at once; 0 = all validators at once (what the Python dendrite does).
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Measured repetitions.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Unmeasured repetitions first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
}

fn load(path: &std::path::Path) -> Result<Vec<Validator>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(text.lines().next().unwrap_or_default()).map_err(|e| e.to_string())?;
    let rows = v.get("validators").and_then(Value::as_array).ok_or("no validators in the farm file")?;
    rows.iter()
        .map(|r| {
            Ok(Validator {
                uid: r["uid"].as_u64().and_then(|u| u16::try_from(u).ok()).ok_or("uid")?,
                hotkey: r["hotkey"].as_str().ok_or("hotkey")?.to_string(),
                ip: r["ip"].as_str().and_then(|s| s.parse().ok()).ok_or("ip")?,
                port: r["port"].as_u64().and_then(|p| u16::try_from(p).ok()).ok_or("port")?,
                vtrust: r["vtrust"].as_f64().ok_or("vtrust")?,
                stake: r["stake"].as_f64().ok_or("stake")?,
            })
        })
        .collect::<Result<_, &str>>()
        .map_err(|field| format!("farm file: bad or missing {field}"))
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let validators = load(&args.validators)?;
    let key = Arc::new(Hotkey::from_seed_hex(&args.seed).map_err(|e| format!("--seed: {e}"))?);
    let timeout = Duration::from_secs_f64(args.timeout);
    let concurrency = if args.concurrency == 0 { validators.len() } else { args.concurrency };
    // The runtime patrol's CLI builds: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (mut walls, mut answered, mut silent, mut valid) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for rep in 0..args.warmup + args.reps {
            let dendrite = Arc::new(Dendrite::new(Arc::clone(&key), Default::default()).map_err(|e| e.to_string())?);
            let started = Instant::now();
            let fanout = patrol::fanout::Fanout { dendrite: &dendrite, concurrency };
            let replies = fanout.check(&validators, timeout).await;
            let wall = started.elapsed().as_secs_f64();
            if rep < args.warmup {
                continue;
            }
            walls.push(wall);
            answered.push(replies.iter().filter(|r| matches!(r.outcome, CallOutcome::Answered(_))).count());
            valid.push(
                replies
                    .iter()
                    .filter(|r| matches!(&r.outcome, CallOutcome::Answered(f) if f.pat_valid == Some(true)))
                    .count(),
            );
            silent.push(replies.iter().filter(|r| matches!(r.outcome, CallOutcome::NoResponse { .. })).count());
        }
        Ok::<_, String>(())
    })?;
    let out = serde_json::json!({
        "client": "patrol",
        "n": validators.len(),
        "timeout_s": args.timeout,
        "concurrency": concurrency,
        "walls_s": walls,
        "answered": answered,
        "valid": valid,
        "no_response": silent,
    });
    println!("{out}");
    Ok(())
}
