//! Memory: RSS returns near its baseline after bursts of connections; 100 concurrent checks on a
//! ~100 MB store are answered correctly with a bounded peak.

use super::*;

#[test]
fn rss_returns_near_its_baseline_after_bursts_of_connections() {
    let s = Scratch::new();
    let key = miner_key(1);
    // room for a whole burst at once (the reproduction: bursts of 2,000 connections)
    let p = serve(&s, "v", &[&key], &nowhere(), &["--max-connections", "4096"], &[]);
    let rt = runtime();
    let t = target_of(&p);
    let d = Arc::new(dendrite(key));
    assert_eq!(rt.block_on(d.check(&t, Duration::from_secs(10))).outcome, no_pat());
    // the baseline: idle after its first answer, past the heap trim that follows it
    std::thread::sleep(Duration::from_secs(3));
    let (baseline, _) = memory_kib(p.pid());
    let addr = p.listen();
    // Each burst: 2,000 connections, each sends a signed check with keep-alive, reads its answer
    // and stays open, as a dendrite's connection pool does; a burst's connections are dropped when
    // the next burst starts, the last burst's never (the server must close them itself).
    let mut held: Vec<tokio::net::TcpStream> = Vec::new();
    for burst in 0..5 {
        drop(std::mem::take(&mut held));
        held = rt.block_on(async {
            use futures_util::StreamExt;
            futures_util::stream::iter(0..2000)
                .map(|_| {
                    let req = raw(&d.prepare(SynapseKind::Check, &t, Duration::from_secs(30), None), addr, true);
                    async move {
                        let mut c = tokio::net::TcpStream::connect(addr).await.ok()?;
                        tokio::io::AsyncWriteExt::write_all(&mut c, &req).await.ok()?;
                        let mut head = Vec::new();
                        let mut buf = [0u8; 4096];
                        // the whole answer is small: read until its body is in
                        let read = async {
                            loop {
                                let n = tokio::io::AsyncReadExt::read(&mut c, &mut buf).await.ok()?;
                                if n == 0 {
                                    return None;
                                }
                                head.extend_from_slice(&buf[..n]);
                                let text = String::from_utf8_lossy(&head);
                                if let Some((h, body)) = text.split_once("\r\n\r\n") {
                                    let len = h
                                        .lines()
                                        .find_map(|l| {
                                            l.to_ascii_lowercase()
                                                .strip_prefix("content-length:")
                                                .map(|v| v.trim().to_string())
                                        })
                                        .and_then(|v| v.parse::<usize>().ok())?;
                                    if body.len() >= len {
                                        return Some(());
                                    }
                                }
                            }
                        };
                        tokio::time::timeout(Duration::from_secs(60), read).await.ok()??;
                        head.starts_with(b"HTTP/1.1 ").then_some(c)
                    }
                })
                .buffer_unordered(2000)
                .filter_map(|r| async move { r })
                .collect::<Vec<_>>()
                .await
        });
        assert_eq!(held.len(), 2000, "burst {burst}: every connection gets an HTTP answer\n{}", p.stderr());
        eprintln!("after burst {burst}: VmRSS {} KiB", memory_kib(p.pid()).0);
    }
    // once the bursts are over (and the last one's connections idle), the axon gives the memory
    // back: watched for at most 30 s
    let bound = 2 * baseline + 20 * 1024;
    let mut rss = memory_kib(p.pid()).0;
    crate::support::wait_until(Duration::from_secs(30), || {
        rss = memory_kib(p.pid()).0;
        rss < bound
    });
    eprintln!("VmRSS: baseline {baseline} KiB, after the bursts and an idle period {rss} KiB (bound {bound} KiB)");
    assert!(rss < bound, "VmRSS {rss} KiB after the bursts, baseline {baseline} KiB");
    drop(held);
}

/// Writes a store of about `mb` MB: other miners' entries first (1 KB PATs), then `ours`.
fn big_store(path: &std::path::Path, mb: usize, ours: &[Value]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"[").unwrap();
    let pad = "p".repeat(1000);
    let entries = mb * 1024 * 1024 / 1100;
    for i in 0..entries {
        let uid = 1000 + i % 60000;
        write!(
            f,
            "{{\"uid\": {uid}, \"hotkey\": \"5Other{i:040}\", \"pat\": \"ghp_{pad}\", \"github_id\": \"{i}\", \"stored_at\": \"2026-01-01T00:00:00+00:00\"}}, "
        )
        .unwrap();
    }
    let tail: Vec<String> = ours.iter().map(Value::to_string).collect();
    f.write_all(tail.join(", ").as_bytes()).unwrap();
    f.write_all(b"]").unwrap();
    f.flush().unwrap();
}

#[test]
fn a_hundred_concurrent_checks_on_a_100_mb_store_are_answered_with_bounded_memory() {
    let tokens: Vec<String> = (1..=10).map(|i| format!("ghp_hardeningBigStoreToken0000000000{i:03}")).collect();
    let accounts: Vec<(&str, u64, &str)> =
        tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i as u64 + 1, "m")).collect();
    let gh = FakeGithubProcess::new(&accounts);
    let s = Scratch::new();
    let keys: Vec<Hotkey> = (1..=100).map(miner_key).collect();
    // miners 1..=10 hold a valid PAT, at the very end of the file; the other 90 hold none
    let ours: Vec<Value> = keys[..10]
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(i, (k, t))| {
            json!({"uid": i + 1, "hotkey": k.ss58(), "pat": t, "github_id": (i + 1).to_string(), "stored_at": "2026-01-01T00:00:00+00:00"})
        })
        .collect();
    big_store(&s.path("v-store.json"), 100, &ours);
    let size = std::fs::metadata(s.path("v-store.json")).unwrap().len();
    assert!(size > 100_000_000, "{size}");
    let refs: Vec<&Hotkey> = keys.iter().collect();
    let p = serve(&s, "v", &refs, &gh.url(), &[], &[]);
    let rt = runtime();
    let t = target_of(&p);
    let replies = rt.block_on(async {
        let calls = keys.iter().map(|k| {
            let (d, t) = (dendrite(k.clone()), t.clone());
            async move { d.check(&t, Duration::from_secs(600)).await }
        });
        futures_util::future::join_all(calls).await
    });
    for (i, r) in replies.iter().enumerate() {
        let want = if i < 10 {
            CallOutcome::Answered(CheckFields { has_pat: Some(true), pat_valid: Some(true), rejection_reason: None })
        } else {
            no_pat()
        };
        assert_eq!(r.outcome, want, "miner {}\n{}", i + 1, p.stderr());
    }
    let (_, peak) = memory_kib(p.pid());
    eprintln!("VmHWM after 100 concurrent checks on a {size}-byte store: {peak} KiB");
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB");
}
