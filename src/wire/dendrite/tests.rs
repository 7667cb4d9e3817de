//! Nonces, where the PAT may appear, and how a refused redirect is named.

use super::*;

fn dendrite() -> Dendrite {
    Dendrite::new(Arc::new(Hotkey::from_seed(&[7u8; 32])), DendriteOptions::default()).unwrap()
}

#[test]
fn nonces_strictly_increase() {
    let d = dendrite();
    let mut last = 0;
    for _ in 0..1000 {
        let n = d.next_nonce();
        assert!(n > last);
        last = n;
    }
}

#[test]
fn a_redirect_names_where_it_pointed_without_credentials() {
    let from = "http://10.0.0.1:8091/PatBroadcastSynapse";
    for (location, want) in [
        (
            Some("http://u:p@evil.example:81/x?token=ghp_0123456789abcdefghijABCDEFGHIJ12WXYZ#f"),
            "http://evil.example:81/x",
        ),
        (Some("/other"), "http://10.0.0.1:8091/other"),
        (Some("//169.254.169.254/latest/meta-data?x=1"), "http://169.254.169.254/latest/meta-data"),
    ] {
        assert_eq!(redirect_refused(307, location, from), format!("redirect (307) to {want} refused"));
    }
    assert_eq!(redirect_refused(308, None, from), "redirect (308) without a usable Location refused");
    assert_eq!(redirect_refused(301, Some("http://[::1"), from), "redirect (301) without a usable Location refused");
}

#[test]
fn pat_only_in_broadcast_body() {
    let d = dendrite();
    let t = Target {
        ip: "127.0.0.1".parse().unwrap(),
        port: 1,
        hotkey: "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi".into(),
    };
    let pat = Pat::new("ghp_supersecretvalue0000").unwrap();
    let c = d.prepare(SynapseKind::Check, &t, Duration::from_secs(15), Some(&pat));
    assert!(!c.body.contains("supersecret"));
    let b = d.prepare(SynapseKind::Broadcast, &t, Duration::from_secs(30), Some(&pat));
    assert!(b.body.contains("\"github_access_token\": \"ghp_supersecretvalue0000\""));
    assert!(b.headers.iter().all(|(_, v)| !v.contains("supersecret")));
    assert!(!format!("{b:?}").contains("supersecret"));
}

#[test]
fn an_outcome_knows_its_status_and_detail() {
    let answered: CallOutcome<()> = CallOutcome::Answered(());
    assert_eq!((answered.http_status(), answered.status_code(), answered.detail()), (Some(200), 200, None));
    assert_eq!(answered.answer(), Some(&()));
    let rejected: CallOutcome<()> = CallOutcome::Rejected { status: 401, message: "Missing Nonce".into() };
    assert_eq!(
        (rejected.http_status(), rejected.status_code(), rejected.detail().as_deref()),
        (Some(401), 401, Some("Missing Nonce"))
    );
    assert_eq!(rejected.answer(), None);
    for (kind, code) in [
        (NoResponseKind::Timeout, 408),
        (NoResponseKind::Connect, 503),
        (NoResponseKind::Disconnected, 503),
        (NoResponseKind::Malformed, 422),
        (NoResponseKind::TooLarge, 422),
    ] {
        let silent: CallOutcome<()> = CallOutcome::NoResponse { kind, detail: "why".into() };
        assert_eq!(silent.http_status(), None);
        assert_eq!(silent.status_code(), code, "{kind:?}");
        assert_eq!(silent.detail(), Some(format!("{}: why", kind.as_str())));
    }
}

/// A plain HTTP server that holds each request `hold` before answering `{}`, and records the
/// nonces in the order the requests arrived and the most requests it had in flight at once.
async fn holding_server(hold: Duration) -> (u16, Arc<std::sync::Mutex<(Vec<u64>, usize, usize)>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new((Vec::new(), 0usize, 0usize)));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                let nonce = head
                    .lines()
                    .find_map(|l| l.strip_prefix("bt_header_dendrite_nonce: "))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                {
                    let mut l = log.lock().unwrap();
                    l.0.push(nonce);
                    l.1 += 1;
                    l.2 = l.2.max(l.1);
                }
                tokio::time::sleep(hold).await;
                log.lock().unwrap().1 -= 1;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn one_request_at_a_time_per_endpoint_in_nonce_order() {
    let (port, seen) = holding_server(Duration::from_millis(30)).await;
    let (other_port, other_seen) = holding_server(Duration::from_millis(30)).await;
    let d = Arc::new(dendrite());
    let target = |hotkey: &str, port| Target { ip: "127.0.0.1".parse().unwrap(), port, hotkey: hotkey.into() };
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..12 {
        // two validator hotkeys behind one endpoint, probes beside checks: one axon process
        let t = target(if i % 2 == 0 { "5Validator-a" } else { "5Validator-b" }, port);
        let d1 = Arc::clone(&d);
        calls.spawn(async move {
            if i % 3 == 0 {
                d1.probe(&t, Duration::from_secs(5)).await.outcome.status_code()
            } else {
                d1.check(&t, Duration::from_secs(5)).await.outcome.status_code()
            }
        });
        let o = target("5Validator-c", other_port);
        let d2 = Arc::clone(&d);
        calls.spawn(async move { d2.check(&o, Duration::from_secs(5)).await.outcome.status_code() });
    }
    while let Some(code) = calls.join_next().await {
        assert_ne!(code.unwrap(), 408, "no call timed out");
    }
    for seen in [seen, other_seen] {
        let (nonces, _, most) = seen.lock().unwrap().clone();
        assert_eq!(nonces.len(), 12, "every call reached its endpoint");
        assert_eq!(most, 1, "one request in flight per endpoint");
        assert!(nonces.windows(2).all(|w| w[0] < w[1]), "nonces arrive in the order drawn: {nonces:?}");
    }
}

#[tokio::test]
async fn waiting_for_an_endpoint_counts_against_the_timeout() {
    let (port, seen) = holding_server(Duration::from_secs(30)).await;
    let d = Arc::new(dendrite());
    let t = Target { ip: "127.0.0.1".parse().unwrap(), port, hotkey: "5Validator".into() };
    // the first call holds the endpoint's turn for 3 s (the server never answers)
    let first = {
        let (d, t) = (Arc::clone(&d), t.clone());
        tokio::spawn(async move { d.check(&t, Duration::from_secs(3)).await.outcome.status_code() })
    };
    while seen.lock().unwrap().0.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut queued = tokio::task::JoinSet::new();
    for _ in 0..7 {
        let (d, t) = (Arc::clone(&d), t.clone());
        queued.spawn(async move { d.check(&t, Duration::from_millis(300)).await.outcome.status_code() });
    }
    while let Some(code) = queued.join_next().await {
        assert_eq!(code.unwrap(), 408);
    }
    // the seven timed out while they waited for the turn, unsent (had their timeout started at
    // their turn, they would have waited for the first one's 3 s and then been sent)
    assert_eq!(seen.lock().unwrap().0.len(), 1, "only the first call was sent");
    assert_eq!(first.await.unwrap(), 408);
}
