//! The liveness probe (signed `GET /Synapse`, no body): 500 with the axon's uuid and no handler
//! run, at the Python axon and at ours; a new process, a new uuid.

use super::limits::{broadcast_accepted, one_miner};
use super::*;

#[test]
fn the_python_axon_answers_the_probe_with_500_and_its_uuid_and_runs_no_handler() {
    let mut py = PyAxon::start();
    let rt = runtime();
    let d = dendrite(dendrite_key());
    let target = |py: &PyAxon| Target { ip: Ipv4Addr::LOCALHOST.into(), port: py.port(), hotkey: py.hotkey().into() };
    let first_uuid = py.uuid().to_string();
    assert_eq!(first_uuid.len(), 36, "{first_uuid}");

    let sent = rt.block_on(d.send(d.prepare_probe(&target(&py), Duration::from_secs(10)), Duration::from_secs(10)));
    assert_eq!(sent.status, 500, "{:?}", sent.outcome);
    let CallOutcome::Rejected { status: 500, message } = &sent.outcome else { panic!("{:?}", sent.outcome) };
    let error_id = message.strip_prefix("Internal Server Error #").unwrap_or_else(|| panic!("{message}"));
    assert_eq!(sent.axon_uuid.as_deref(), Some(first_uuid.as_str()));
    let probe = rt.block_on(d.probe(&target(&py), Duration::from_secs(10)));
    assert_eq!(probe.outcome, CallOutcome::Answered(patrol::wire::ProbeFields { status: 500 }));
    assert_eq!(probe.axon_uuid.as_deref(), Some(first_uuid.as_str()));
    // no forward function ran (not even the SDK's ping), nothing was blacklisted
    assert_eq!(py.handler_calls(), BTreeMap::new(), "{}", py.log());
    assert!(py.received().is_empty() && py.blacklisted().is_empty(), "{}", py.log());
    // what the axon logs for it, at its default level: one ERROR line with the answer's error id
    let log = strip_ansi(&py.stderr());
    let line = log
        .lines()
        .find(|l| l.contains(&format!("JSONDecodeError#{error_id}")))
        .unwrap_or_else(|| panic!("no log line for error {error_id}\n{log}"));
    assert!(line.split('|').any(|part| part.trim() == "ERROR"), "{line}");
    assert!(
        line.ends_with(&format!("JSONDecodeError#{error_id}: Expecting value: line 1 column 1 (char 0)")),
        "{line}"
    );
    eprintln!("the Python axon's log line for the probe: {line}");

    // a check is answered 200, and a success response carries no axon uuid
    let check = rt.block_on(d.check(&target(&py), Duration::from_secs(10)));
    assert_eq!(check.outcome, no_pat());
    assert_eq!(check.axon_uuid, None);
    assert_eq!(py.handler_calls().get("PatCheckSynapse"), Some(&1));
    assert_eq!(py.handler_calls().get("Synapse"), None);

    // a new process: a new uuid
    py.restart();
    assert_ne!(py.uuid(), first_uuid);
    let probe = rt.block_on(d.probe(&target(&py), Duration::from_secs(10)));
    assert_eq!(probe.outcome, CallOutcome::Answered(patrol::wire::ProbeFields { status: 500 }));
    assert_eq!(probe.axon_uuid.as_deref(), Some(py.uuid()));
    assert_eq!(py.handler_calls(), BTreeMap::new(), "a restarted axon starts counting afresh");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn our_axon_answers_the_probe_like_python_with_a_per_process_uuid_and_no_github_call() {
    let token = "ghp_hardeningProbeToken000000000000001";
    let (gh, s, key) = one_miner(token);
    let mut p = serve(&s, "v", &[&key], &gh.url(), &[], &[]);
    let rt = runtime();
    let d = dendrite(key.clone());
    broadcast_accepted(&rt, &d, &target_of(&p), token);
    assert!(gh.calls("user") > 0, "the fake GitHub counts the broadcast's calls");
    gh.reset_stats();

    let probe = |p: &PatrolProcess| {
        let sent =
            rt.block_on(d.send(d.prepare_probe(&target_of(p), Duration::from_secs(10)), Duration::from_secs(10)));
        let CallOutcome::Rejected { status: 500, message } = &sent.outcome else { panic!("{:?}", sent.outcome) };
        assert!(message.starts_with("Internal Server Error #"), "{message}");
        sent.axon_uuid.unwrap_or_else(|| panic!("no bt_header_axon_uuid"))
    };
    let first = probe(&p);
    assert_eq!(first.len(), 36, "{first}");
    // our log: one line, the body's parse error under the answer's error id (no verification failure)
    let line = p.wait_stderr("request answered 500", Duration::from_secs(10));
    assert!(line.contains("not JSON"), "{line}");
    eprintln!("our axon's log line for the probe: {line}");
    assert_eq!(probe(&p), first, "stable for the process");
    let reply = rt.block_on(d.probe(&target_of(&p), Duration::from_secs(10)));
    assert_eq!(reply.outcome, CallOutcome::Answered(patrol::wire::ProbeFields { status: 500 }));
    assert_eq!(reply.axon_uuid.as_deref(), Some(first.as_str()));
    assert_eq!((gh.calls("user"), gh.calls("graphql")), (0, 0), "the probe made a GitHub call: {}", gh.stats());
    // a check (which does call GitHub) answers 200 without an axon uuid
    let check = rt.block_on(d.check(&target_of(&p), Duration::from_secs(20)));
    assert!(matches!(check.outcome, CallOutcome::Answered(ref f) if f.pat_valid == Some(true)), "{:?}", check.outcome);
    assert_eq!(check.axon_uuid, None);

    // restarted: a new process, a new uuid
    assert!(p.signal_and_wait(libc::SIGTERM, Duration::from_secs(30)).success());
    let p2 = serve(&s, "v", &[&key], &gh.url(), &[], &[]);
    gh.reset_stats();
    let second = probe(&p2);
    assert_ne!(second, first);
    assert_eq!((gh.calls("user"), gh.calls("graphql")), (0, 0), "{}", gh.stats());
}
