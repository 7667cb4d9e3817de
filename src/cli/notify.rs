//! `patrol notify test`: one test message to every `[[notify.target]]` and a success ping to
//! `[notify] ping`, sent now (no queue, one attempt each), each result printed with the target
//! redacted. Exit 0 only when every one accepted; 1 when one did not; 78 when nothing is configured
//! or a URL cannot be read.

use serde::Serialize;

use crate::cli::doctor::check::Check;
use crate::cli::{Coded, Exit, NotifyTestArgs};
use crate::config::Settings;
use crate::notify::{self, Answer, HttpPoster, Poster, render, target};
use crate::reconcile::transport::{Clock, SystemClock};

/// One target's result.
#[derive(Debug, Serialize)]
struct Row {
    target: String,
    kind: String,
    url: String,
    ok: bool,
    /// Off on purpose (the placeholder, a credential outside systemd): not counted.
    off: bool,
    detail: String,
}

/// Run the command.
pub async fn test(settings: &Settings, args: &NotifyTestArgs) -> anyhow::Result<Exit> {
    let resolved = target::resolve_env(&settings.notify)?;
    let mut rows: Vec<Row> = resolved
        .off
        .iter()
        .map(|(name, why)| Row {
            target: name.clone(),
            kind: String::new(),
            url: String::new(),
            ok: true,
            off: true,
            detail: format!("off: {why}"),
        })
        .collect();
    if resolved.targets.is_empty() && resolved.ping.is_none() {
        let why: Vec<String> = rows.iter().map(|r| format!("{}: {}", r.target, r.detail)).collect();
        return Err(Coded::new(
            Exit::Config,
            "config_error",
            format!(
                "no notification target to test{}; add a [[notify.target]] with url, url_file or url_credential, or [notify] ping (see docs/notifications.md)",
                if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) }
            ),
        ));
    }
    let poster = HttpPoster::new(settings.notify.timeout)?;
    let host = notify::hostname();
    let ev = notify::event::test(SystemClock.now());
    for t in &resolved.targets {
        let msg = render::render(t, std::slice::from_ref(&ev), &host);
        let (ok, detail) = said(poster.post(t.kind, &msg).await);
        rows.push(Row {
            target: t.name.clone(),
            kind: t.kind.as_str().into(),
            url: t.url.shown(),
            ok,
            off: false,
            detail,
        });
    }
    if let Some(url) = resolved.ping {
        let p = notify::ping::Ping::new(url);
        let msg = p.message(true, "patrol notify test");
        let (ok, detail) = said(poster.post(crate::config::TargetKind::Webhook, &msg).await);
        let kind = if p.kind == notify::ping::PingKind::UptimeKuma { "uptime_kuma" } else { "healthchecks" };
        rows.push(Row {
            target: notify::ping::PING_NAME.into(),
            kind: kind.into(),
            url: p.url.shown(),
            ok,
            off: false,
            detail,
        });
    }
    let all = rows.iter().all(|r| r.ok);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"success": all, "results": rows}))?);
    } else {
        for r in &rows {
            let status = if r.off {
                "off"
            } else if r.ok {
                "ok"
            } else {
                "fail"
            };
            let what =
                if r.url.is_empty() { r.target.clone() } else { format!("{} ({}, {})", r.target, r.kind, r.url) };
            println!("{status:<5}{what}: {}", r.detail);
        }
    }
    Ok(if all { Exit::Covered } else { Exit::Partial })
}

/// (accepted, what the service said), without the URL.
fn said(a: Answer) -> (bool, String) {
    match a {
        Answer::Accepted(status) => (true, format!("delivered (HTTP {status})")),
        Answer::Retry { after: Some(d), why } => {
            (false, format!("{why}; the service asks to retry after {} s", d.as_secs()))
        }
        Answer::Retry { after: None, why } => (false, format!("not delivered: {why}")),
        Answer::Refused(why) => (false, format!("refused: {why}")),
    }
}

/// `patrol doctor`'s lines: each target and the ping, redacted, and whether it is reachable
/// (nothing is sent: see [`notify::reach`]).
pub async fn doctor_checks(settings: &Settings) -> Vec<Check> {
    use crate::cli::doctor::check::{fail, ok, skipped};
    const CHECK: &str = "notify";
    const FIX: &str = "check the URL (docs/notifications.md), then: patrol notify test";
    if !settings.notify.is_enabled() {
        return vec![skipped(CHECK, None, "no [[notify.target]] or [notify] ping configured")];
    }
    let resolved = match target::resolve_env(&settings.notify) {
        Ok(r) => r,
        Err(e) => {
            return vec![fail(
                CHECK,
                None,
                crate::secret::error_chain(&e),
                "fix the key named above (docs/notifications.md)",
            )];
        }
    };
    let mut out: Vec<_> =
        resolved.off.iter().map(|(name, why)| skipped(CHECK, None, format!("{name}: off: {why}"))).collect();
    let poster = match HttpPoster::new(settings.notify.timeout) {
        Ok(p) => p,
        Err(e) => return vec![fail(CHECK, None, crate::secret::error_chain(&e), FIX)],
    };
    for t in &resolved.targets {
        out.push(match notify::reach::reachable(poster.client(), t.kind, &t.url).await {
            Ok(how) => ok(CHECK, None, format!("{}: {how}", t.shown())),
            Err(why) => fail(CHECK, None, format!("{}: {why}", t.shown()), FIX),
        });
    }
    if let Some(url) = &resolved.ping {
        let shown = format!("ping ({})", url.shown());
        out.push(match notify::reach::reachable(poster.client(), crate::config::TargetKind::Webhook, url).await {
            Ok(how) => ok(CHECK, None, format!("{shown}: {how}")),
            Err(why) => fail(CHECK, None, format!("{shown}: {why}"), FIX),
        });
    }
    out
}
