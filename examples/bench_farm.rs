//! Validator farm for `benches/run.sh`: N fake gittensor validators on 127.0.0.1, all served from
//! this one process, so neither client under test (patrol or the Python `bt.Dendrite`) pays for them.
//!
//! * A quarter of them (`--dead-fraction`, chosen with `--seed`) accept TCP connections and never
//!   answer: they read and discard whatever arrives until the client hangs up.
//! * The rest answer every `PatCheckSynapse` after a random delay, uniform in
//!   `--min-delay-ms..=--max-delay-ms` (5–50 ms), drawn per request, with what a real axon sends on
//!   success (wire doc §6.1): HTTP 200, `content-type: application/json`, the request's synapse echoed
//!   with `axon.status_code` 200 / `"Success"` and `has_pat: true, pat_valid: true`, and the
//!   `bt_header_axon_status_*` headers. patrol's dendrite reads that as `valid`, the Python dendrite
//!   as `is_success` with `pat_valid is True`. A `PatBroadcastSynapse` is answered `accepted: true`
//!   with the token cleared. Signatures are not verified: the farm measures the clients, not an axon.
//!
//! Prints one JSON line on stdout when every port listens:
//! `{"ready": true, "validators": [{"uid", "hotkey", "ip", "port", "stake", "vtrust", "dead"}, ...]}`
//! and serves until killed (or until stdin closes, with `--exit-on-stdin-eof`).
//!
//! ```text
//! cargo run --release --example bench_farm -- --n 256 --seed 1
//! ```

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use clap::Parser;
use patrol::wallet::Hotkey;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// Number of validators.
    #[arg(long)]
    n: usize,
    /// Share of them that accept connections and never answer (rounded to the nearest count).
    #[arg(long, default_value_t = 0.25)]
    dead_fraction: f64,
    /// Shortest answer delay.
    #[arg(long, default_value_t = 5)]
    min_delay_ms: u64,
    /// Longest answer delay.
    #[arg(long, default_value_t = 50)]
    max_delay_ms: u64,
    /// Which validators are dead (and their stakes) follow from this seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First uid (the farm's validators get uids first..first+n).
    #[arg(long, default_value_t = 1000)]
    first_uid: u16,
    /// Exit when stdin reaches EOF (for drivers that cannot send a signal).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// Per-request answer, after the delay.
async fn answer(delay: (u64, u64), req: Request) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response(),
    };
    let wait = rand::thread_rng().gen_range(delay.0..=delay.1.max(delay.0));
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let mut synapse: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"message": "bad body"}))).into_response(),
    };
    let process_time = started.elapsed().as_secs_f64();
    if let Some(axon) = synapse.get_mut("axon").and_then(Value::as_object_mut) {
        axon.insert("status_code".into(), json!(200));
        axon.insert("status_message".into(), json!("Success"));
        axon.insert("process_time".into(), json!(process_time));
    }
    let name = match path.trim_start_matches('/') {
        "PatBroadcastSynapse" => {
            synapse["github_access_token"] = json!("");
            synapse["accepted"] = json!(true);
            synapse["rejection_reason"] = Value::Null;
            "PatBroadcastSynapse"
        }
        "PatCheckSynapse" => {
            synapse["has_pat"] = json!(true);
            synapse["pat_valid"] = json!(true);
            synapse["rejection_reason"] = Value::Null;
            "PatCheckSynapse"
        }
        _ => return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "no such synapse"}))).into_response(),
    };
    let timeout = synapse.get("timeout").and_then(Value::as_f64).unwrap_or(12.0);
    let mut resp = axum::Json(synapse).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("name", HeaderValue::from_static(name));
    if let Ok(v) = HeaderValue::from_str(&format!("{timeout:?}")) {
        h.insert("timeout", v);
    }
    h.insert("bt_header_axon_status_code", HeaderValue::from_static("200"));
    h.insert("bt_header_axon_status_message", HeaderValue::from_static("Success"));
    if let Ok(v) = HeaderValue::from_str(&process_time.to_string()) {
        h.insert("bt_header_axon_process_time", v);
    }
    resp
}

/// Accept and hold connections, never writing a byte.
async fn black_hole(listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    if args.n == 0 {
        return Err("--n must be at least 1".into());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let dead_count = ((args.n as f64) * args.dead_fraction.clamp(0.0, 1.0)).round() as usize;
    let mut order: Vec<usize> = (0..args.n).collect();
    order.shuffle(&mut rng);
    let mut dead = vec![false; args.n];
    for &i in order.iter().take(dead_count) {
        dead[i] = true;
    }
    // A single-threaded runtime: the farm's own work (192 tiny JSON answers per fan-out) is small, and
    // it should take as little CPU as possible from the clients being measured.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let delay = (args.min_delay_ms, args.max_delay_ms);
    rt.block_on(async move {
        let mut rows = Vec::with_capacity(args.n);
        for (i, &is_dead) in dead.iter().enumerate() {
            let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .await
                .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64)).to_le_bytes());
            seed[31] = 0xfa;
            let hotkey = Hotkey::from_seed(&seed).ss58().to_string();
            let uid = args.first_uid.wrapping_add(i as u16);
            let stake = 20_000.0 + f64::from(rng.gen_range(0u32..1_000_000));
            let vtrust = 0.5 + rng.gen_range(0.0..0.5);
            rows.push(json!({"uid": uid, "hotkey": hotkey, "ip": "127.0.0.1", "port": port, "stake": stake,
                             "vtrust": vtrust, "dead": is_dead}));
            if is_dead {
                tokio::spawn(black_hole(listener));
            } else {
                let app = axum::Router::new().fallback(move |req: Request| answer(delay, req));
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", json!({"ready": true, "validators": rows})).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
        if args.exit_on_stdin_eof {
            std::thread::spawn(|| {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                std::process::exit(0);
            });
        }
        std::future::pending::<()>().await;
        Ok::<_, String>(())
    })
}
