//! The store's timestamps in Python's format, `datetime.now(timezone.utc).isoformat()`, byte for
//! byte (the file itself is `json.dump(entries, f, indent=2)`: [`crate::wire::pyjson`]), so a file
//! patrol writes is the file upstream would have written.

use std::fmt::Write as _;

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
