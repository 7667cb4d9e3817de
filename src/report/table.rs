//! The reports for a terminal: `check`, `post` and `reconcile`'s tables, the cells their validator
//! rows share, and the plain-text table `status` and `simulate` print too.

use serde::Serialize;

use super::{CheckReport, CheckRow, PostReport, ReconcileReport};

/// What a command prints on stdout: the report as pretty JSON with `--json` (one line break after),
/// its table otherwise.
pub fn stdout<R: Serialize>(report: &R, json: bool, table: impl FnOnce(&R) -> String) -> serde_json::Result<String> {
    if json { Ok(serde_json::to_string_pretty(report)? + "\n") } else { Ok(table(report)) }
}

/// A plain-text table: header row, then rows; columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// Shorten an SS58 hotkey for tables: first 8 + "…" + last 4.
pub fn short_hotkey(h: &str) -> String {
    if h.len() <= 14 { h.to_string() } else { format!("{}…{}", &h[..8], &h[h.len() - 4..]) }
}

/// The first cells of a validator's row: UID, HOTKEY (shortened), AXON.
fn validator_cells(uid: u16, hotkey: &str, ip: &str, port: u16) -> [String; 3] {
    [uid.to_string(), short_hotkey(hotkey), format!("{ip}:{port}")]
}

/// The REASON / WHY cell: the first text there is, followed by the hint when there is one.
pub(super) fn reason_cell(texts: &[Option<&str>], hint: Option<&str>) -> String {
    let text = texts.iter().copied().flatten().next().unwrap_or_default();
    match hint {
        Some(h) if text.is_empty() => format!("hint: {h}"),
        Some(h) => format!("{text} (hint: {h})"),
        None => text.to_string(),
    }
}

/// A unit variant's name as the JSON says it (one spelling: serde's).
fn json_name(v: impl Serialize) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The STATUS cell.
fn status_cell(code: Option<u16>) -> String {
    code.map(|c| c.to_string()).unwrap_or_default()
}

/// A table of validators: UID, HOTKEY and AXON, then `columns`; a row is those first three cells
/// ([`validator_cells`]) and the rest.
fn validator_table<const N: usize>(
    columns: [&str; N],
    rows: impl Iterator<Item = ([String; 3], [String; N])>,
) -> String {
    let header: Vec<&str> = ["UID", "HOTKEY", "AXON"].into_iter().chain(columns).collect();
    let rows: Vec<Vec<String>> = rows.map(|(first, rest)| first.into_iter().chain(rest).collect()).collect();
    table(&header, &rows)
}

/// Render check rows for a terminal.
pub fn check_table(r: &CheckReport<CheckRow>) -> String {
    let rows = r.results.iter().map(|x| {
        let cells = [
            x.category.to_string(),
            status_cell(x.status_code),
            format!("{} ms", x.contact.latency_ms),
            reason_cell(&[x.rejection_reason.as_deref(), x.contact.detail.as_deref()], x.contact.hint.as_deref()),
        ];
        (validator_cells(x.uid, &x.hotkey, &x.contact.ip, x.contact.port), cells)
    });
    validator_table(["CATEGORY", "STATUS", "LATENCY", "REASON"], rows)
}

/// Render post rows for a terminal.
pub fn post_table(r: &PostReport) -> String {
    let rows = r.results.iter().map(|x| {
        let cells = [
            json_name(x.outcome),
            status_cell(x.status_code),
            x.attempts.to_string(),
            reason_cell(&[x.rejection_reason.as_deref(), x.contact.detail.as_deref()], x.contact.hint.as_deref()),
        ];
        (validator_cells(x.uid, &x.hotkey, &x.contact.ip, x.contact.port), cells)
    });
    validator_table(["RESULT", "STATUS", "ATTEMPTS", "REASON"], rows)
}

/// Render reconcile rows for a terminal.
pub fn reconcile_table(r: &ReconcileReport) -> String {
    let rows = r.check.results.iter().map(|x| {
        let c = &x.check;
        let cells = [
            c.category.to_string(),
            x.action.as_str().to_string(),
            x.final_category.to_string(),
            x.next_check_at.clone(),
            reason_cell(
                &[x.why.as_deref(), c.rejection_reason.as_deref(), c.contact.detail.as_deref()],
                c.contact.hint.as_deref(),
            ),
        ];
        (validator_cells(c.uid, &c.hotkey, &c.contact.ip, c.contact.port), cells)
    });
    validator_table(["OBSERVED", "ACTION", "FINAL", "NEXT CHECK", "WHY"], rows)
}
