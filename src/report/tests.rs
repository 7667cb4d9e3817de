//! Rows from what an answer said, counts and stake shares from the coverage sum, tables.

use std::time::Duration;

use super::*;
use crate::coverage::Verdict;
use crate::observe::{BroadcastReading, CheckReading, GittCategory};
use crate::validators::Validator;
use crate::wire::{BroadcastFields, CallOutcome, CheckFields, NoResponseKind, Reply};

fn validator(uid: u16, stake: f64) -> Validator {
    Validator {
        uid,
        hotkey: "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi".into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 8091,
        vtrust: 0.9,
        stake,
    }
}

fn reply<F>(outcome: CallOutcome<F>) -> Reply<F> {
    Reply { outcome, latency: Duration::from_millis(3), axon_uuid: None }
}

fn check_row(v: &Validator, outcome: CallOutcome<CheckFields>) -> CheckRow {
    CheckRow::new(v, &CheckReading::of(&reply(outcome)))
}

fn post_row(v: &Validator, outcome: CallOutcome<BroadcastFields>, attempts: u32) -> PostRow {
    PostRow::new(v, &BroadcastReading::of(&reply(outcome)), attempts)
}

fn broadcast(accepted: Option<bool>) -> CallOutcome<BroadcastFields> {
    CallOutcome::Answered(BroadcastFields { accepted, rejection_reason: None })
}

fn post(rows: Vec<PostRow>) -> PostReport {
    PostReport::new("5Hk", None, "***abcd".into(), rows, Vec::new(), SourceInfo::default())
}

/// Issue 15 item 8: nothing accepted printed "-0.0% of stake" and `"stake_weighted_coverage": -0.0`.
#[test]
fn nothing_accepted_is_zero_not_negative_zero() {
    let rep = post(vec![post_row(&validator(7, 20_000.0), broadcast(Some(false)), 1)]);
    assert!(rep.stake_weighted_coverage.is_sign_positive(), "{}", rep.stake_weighted_coverage);
    assert_eq!(format!("{:.1}%", rep.stake_weighted_coverage * 100.0), "0.0%");
    let json = serde_json::to_string(&rep).unwrap();
    assert!(json.contains("\"stake_weighted_coverage\":0.0") && !json.contains("-0.0"), "{json}");
    let empty = post(Vec::new());
    assert!(empty.stake_weighted_coverage.is_sign_positive());
}

#[test]
fn table_pads() {
    let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
    assert_eq!(t, "A    BB\nxxx  y\n");
    assert_eq!(short_hotkey("5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"), "5DtDLm5r…D9Fi");
}

#[test]
fn a_stale_nonce_rejection_carries_the_clock_hint_in_json_and_tables() {
    let v = validator(7, 1.0);
    let message = "Not Verified with error: Nonce is too old: acceptable delta is 19.00 seconds but request was 60.00 seconds old";
    let rejected = |status| CallOutcome::<CheckFields>::Rejected { status, message: message.into() };
    let row = check_row(&v, rejected(401));
    let hint = row.contact.hint.clone().expect("a hint");
    assert!(hint.contains("clock") && hint.contains("NTP"), "{hint}");
    let json = serde_json::to_value(&row).unwrap();
    assert_eq!(json["hint"], serde_json::Value::String(hint.clone()));
    let rep = CheckReport::new("5Hk", vec![row], Vec::new(), SourceInfo::default());
    let table = check_table(&rep);
    assert!(table.contains("Nonce is too old") && table.contains(&format!("(hint: {hint})")), "{table}");
    // a 403 with the same text, and an answer: no hint (JSON null)
    assert_eq!(check_row(&v, rejected(403)).contact.hint, None);
    let answered =
        CallOutcome::Answered(CheckFields { has_pat: Some(true), pat_valid: Some(true), rejection_reason: None });
    assert_eq!(serde_json::to_value(check_row(&v, answered)).unwrap()["hint"], serde_json::Value::Null);
    let refused = post_row(&v, CallOutcome::Rejected { status: 401, message: message.into() }, 1);
    assert_eq!(refused.contact.hint.as_deref(), Some(hint.as_str()));
    let t = post_table(&post(vec![refused]));
    assert!(t.contains(&format!("(hint: {hint})")), "{t}");
}

#[test]
fn a_reason_cell_takes_the_first_text_and_the_hint() {
    use super::table::reason_cell;
    assert_eq!(reason_cell(&[None, Some("b")], Some("h")), "b (hint: h)");
    assert_eq!(reason_cell(&[Some("a"), Some("b")], None), "a");
    assert_eq!(reason_cell(&[None, None], Some("h")), "hint: h");
    assert_eq!(reason_cell(&[], None), "");
}

/// What each kind of check answer puts in gitt's columns.
#[test]
fn check_rows_show_the_answer_as_gitt_does() {
    let v = validator(7, 1.0);
    let fields = CheckFields {
        has_pat: Some(true),
        pat_valid: Some(false),
        rejection_reason: Some("PAT test query failed: GitHub GraphQL API returned 502".into()),
    };
    let row = check_row(&v, CallOutcome::Answered(fields));
    assert_eq!((row.category, row.gitt_category), (Category::Inconclusive, GittCategory::InvalidPat));
    assert_eq!(
        (row.has_pat, row.pat_valid, row.status_code, row.contact.detail.as_deref()),
        (Some(true), Some(false), Some(200), None)
    );
    assert!(row.rejection_reason.as_deref().is_some_and(|r| r.contains("502")));
    let silent =
        check_row(&v, CallOutcome::NoResponse { kind: NoResponseKind::Timeout, detail: "no answer within 12s".into() });
    assert_eq!(
        (silent.category, silent.status_code, silent.contact.detail.as_deref(), silent.contact.latency_ms),
        (Category::NoResponse, Some(408), Some("timeout: no answer within 12s"), 3)
    );
    assert_eq!((silent.has_pat, silent.rejection_reason.as_deref()), (None, None));
}

/// `post`'s counts, stake share and exit verdict come from the coverage sum; "accepted" is what
/// "covered" is for `check`.
#[test]
fn post_counts_and_its_verdict_come_from_the_coverage_sum() {
    let (a, b, c) = (validator(1, 3.0), validator(2, 1.0), validator(3, 0.0));
    let http = CallOutcome::Rejected { status: 403, message: "blacklisted".into() };
    let rep = post(vec![
        post_row(&a, broadcast(Some(true)), 1),
        post_row(&b, broadcast(Some(false)), 1),
        post_row(&c, http.clone(), 3),
    ]);
    assert_eq!((rep.accepted, rep.rejected, rep.no_response, rep.total_validators), (1, 1, 1, 3));
    assert_eq!(rep.results[2].outcome, PostOutcome::NoResponse);
    assert_eq!(rep.results[2].status_code, Some(403));
    assert!(rep.success && !rep.coverage_complete);
    assert_eq!(rep.stake_weighted_coverage, 0.75);
    assert_eq!(rep.summary().verdict(), Verdict::Partial);
    assert_eq!(rep.summary_line(), "1/3 accepted (75.0% of stake); rejected 1, no_response 1");
    let all = post(vec![post_row(&a, broadcast(Some(true)), 1), post_row(&c, broadcast(Some(true)), 2)]);
    assert!(all.coverage_complete);
    assert_eq!((all.summary().verdict(), all.stake_weighted_coverage), (Verdict::Covered, 1.0));
    let refused = post(vec![post_row(&a, broadcast(Some(false)), 1), post_row(&c, http.clone(), 1)]);
    assert!(!refused.success);
    assert_eq!(refused.summary().verdict(), Verdict::NoneCovered);
    // silence, an HTTP error status and an answer without `accepted`: nobody answered
    let silent = CallOutcome::NoResponse { kind: NoResponseKind::Connect, detail: "refused".into() };
    let none = post(vec![post_row(&a, silent, 3), post_row(&b, http, 1), post_row(&c, broadcast(None), 1)]);
    assert_eq!((none.no_response, none.summary().verdict()), (3, Verdict::Undetermined));
    assert_eq!(none.results[2].status_code, Some(200));
    assert_eq!(none.results[0].contact.detail.as_deref(), Some("connect: refused"));
    // zero stake everywhere, all accepted: the whole (stakeless) subnet is covered
    let zero = post(vec![post_row(&c, broadcast(Some(true)), 1)]);
    assert_eq!(zero.stake_weighted_coverage, 1.0);
    assert_eq!(post(Vec::new()).summary().verdict(), Verdict::Undetermined);
}

#[test]
fn the_check_summary_line_names_every_category() {
    let (a, b) = (validator(1, 1.0), validator(2, 3.0));
    let valid =
        CallOutcome::Answered(CheckFields { has_pat: Some(true), pat_valid: Some(true), rejection_reason: None });
    let rep = CheckReport::new(
        "5Hk",
        vec![check_row(&a, valid), check_row(&b, CallOutcome::Rejected { status: 500, message: "x".into() })],
        Vec::new(),
        SourceInfo::default(),
    );
    assert_eq!(
        rep.summary_line(),
        "1/2 covered (25.0% of stake); valid 1, no_pat 0, invalid_pat 0, inconclusive 0, store_unavailable 0, no_response 0, rejected 1"
    );
}

#[test]
fn tables_start_with_the_validator_and_end_with_the_reason() {
    let v = validator(7, 1.0);
    let rows = vec![
        post_row(&v, broadcast(Some(true)), 1),
        post_row(&v, CallOutcome::NoResponse { kind: NoResponseKind::Timeout, detail: "slow".into() }, 3),
    ];
    assert_eq!(
        post_table(&post(rows)),
        "UID  HOTKEY         AXON            RESULT       STATUS  ATTEMPTS  REASON\n\
         7    5DtDLm5r…D9Fi  127.0.0.1:8091  accepted     200     1\n\
         7    5DtDLm5r…D9Fi  127.0.0.1:8091  no_response  408     3         timeout: slow\n"
    );
    let json = stdout(&post(Vec::new()), true, post_table).unwrap();
    assert!(json.starts_with("{\n  \"success\": false,") && json.ends_with("}\n"), "{json}");
    assert_eq!(
        stdout(&post(Vec::new()), false, post_table).unwrap(),
        "UID  HOTKEY  AXON  RESULT  STATUS  ATTEMPTS  REASON\n"
    );
}

/// A validator the pass checked shows what its first check said and what the pass did; one it did
/// not contact shows its last known category and says so; the verdict is judged on the final
/// categories. A real pass, against the scripted transport.
#[tokio::test]
async fn reconcile_rows_come_from_what_the_pass_read() {
    use crate::reconcile::core::{History, Policy};
    use crate::reconcile::pass::{self, PassConfig, Work};
    use crate::reconcile::state::MinerState;
    use crate::reconcile::transport::script::{self, Script};
    use crate::secret::Pat;
    const NOW: u64 = 1_800_000_000;
    let pat = Pat::new("ghp_reportTestToken0000001").unwrap();
    let t = Script::new(NOW);
    t.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    let mut state = MinerState::new("5Hk", 74);
    let backoff = History {
        category: Some(Category::Inconclusive),
        failures: 2,
        not_before: NOW + 600,
        next_check_at: NOW + 600,
        ..History::new(&validator(2, 1.0).hotkey)
    };
    state.validators.insert(2, backoff);
    let selection =
        crate::validators::Selection { eligible: vec![validator(1, 3.0), validator(2, 1.0)], skipped: Vec::new() };
    let cfg = PassConfig { policy: Policy::default(), budget: crate::reconcile::budget::Budget(None), dry_run: false };
    let out = pass::run(t.as_ref(), &cfg, &selection, &mut state, &pat, &Work::one_shot(), None).await;
    let rep = ReconcileReport::new("5Hk", &out, Vec::new(), SourceInfo::default(), false);
    let rows = &rep.check.results;
    assert_eq!((rows[0].check.category, rows[0].check.gitt_category), (Category::NoPat, GittCategory::NoPat));
    assert_eq!(rows[0].check.rejection_reason.as_deref(), Some("No PAT stored for this miner"));
    assert_eq!((rows[0].check.status_code, rows[0].final_category, rows[0].attempts), (Some(200), Category::Valid, 1));
    assert_eq!(
        (rows[1].check.category, rows[1].check.status_code, rows[1].failures),
        (Category::Inconclusive, None, 2)
    );
    assert!(
        rows[1].check.contact.detail.as_deref().is_some_and(|d| d.starts_with("not contacted this pass")),
        "{rows:?}"
    );
    assert_eq!((rep.check.valid, rep.check.inconclusive, rep.check.stake_weighted_coverage), (1, 1, 1.0));
    assert_eq!(rep.check.summary().verdict(), Verdict::Covered);
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(
        (json["results"][0]["action"].as_str(), json["results"][1]["action"].as_str()),
        (Some("broadcast"), Some("not_due"))
    );
    assert_eq!(json["results"][1]["gitt_category"], "no_response");
    let t = reconcile_table(&rep);
    let first = t.lines().nth(1).unwrap_or_default();
    assert!(first.contains("no_pat  ") && first.contains("broadcast") && first.contains("  valid"), "{t}");
    assert!(t.lines().nth(2).is_some_and(|l| l.contains("in backoff after 2 failures")), "{t}");
}
