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
