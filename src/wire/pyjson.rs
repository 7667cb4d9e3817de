//! JSON written the way Python's `json.dumps` writes it by default: `", "` and `": "` separators,
//! non-ASCII escaped as `\uXXXX`, keys in insertion order. aiohttp serialises the dendrite body like
//! this; matching it byte for byte keeps patrol's requests indistinguishable from a real dendrite's.

use serde_json::Value;
use std::fmt::Write;

/// Serialise `v` like Python `json.dumps(v)`.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, k);
                out.push_str(": ");
                write_value(out, x);
            }
            out.push('}');
        }
    }
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`: everything outside space..tilde
/// escaped, non-BMP characters as surrogate pairs); the lab's store file writes its strings so too.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_separators_and_ascii() {
        let v = json!({"a": 1, "b": [true, null, 2.5], "c": "é\u{1F600}\n\"", "d": 30.0});
        assert_eq!(dumps(&v), r#"{"a": 1, "b": [true, null, 2.5], "c": "\u00e9\ud83d\ude00\n\"", "d": 30.0}"#);
    }

    #[test]
    fn del_char_is_escaped_like_python() {
        // json.encoder.ESCAPE_ASCII is `([\\"]|[^\ -~])`: everything outside space..tilde, DEL included.
        assert_eq!(dumps(&json!("\u{7f}")), "\"\\u007f\"");
    }
}
