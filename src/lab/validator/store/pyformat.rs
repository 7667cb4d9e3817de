//! The store file's Python formats: `json.dump(entries, f, indent=2)` and
//! `datetime.now(timezone.utc).isoformat()`, byte for byte, so a file patrol writes is the file
//! upstream would have written.

use std::fmt::Write as _;

use serde_json::Value;

use crate::wire::pyjson::write_str;

/// `datetime.now(timezone.utc).isoformat()`: microseconds unless zero, `+00:00`.
pub fn python_isoformat_now() -> String {
    python_isoformat(time::OffsetDateTime::now_utc())
}

pub(super) fn python_isoformat(t: time::OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        let _ = write!(s, ".{:06}", t.microsecond());
    }
    s.push_str("+00:00");
    s
}

/// Python's `json.dump(v, f, indent=2)`: ASCII-escaped, `", "`-free item separators (`","` + newline
/// under indent), `": "` between key and value, empty containers as `[]`/`{}`.
pub(super) fn write_indented(out: &mut String, v: &Value, depth: usize) {
    let pad = |out: &mut String, d: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', d * 2));
    };
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write_indented(out, x, depth + 1);
            }
            pad(out, depth);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write_str(out, k);
                out.push_str(": ");
                write_indented(out, x, depth + 1);
            }
            pad(out, depth);
            out.push('}');
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
        Value::String(s) => write_str(out, s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}
