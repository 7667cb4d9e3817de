//! JSON written the way Python's `json` module writes it: `json.dumps(v)` (`", "` and `": "`
//! separators) and `json.dump(v, f, indent=2)` (`","` + newline + indent between items), non-ASCII
//! escaped as `\uXXXX`, keys in insertion order. aiohttp serialises the dendrite body like the
//! first: matching it byte for byte keeps patrol's requests indistinguishable from a real
//! dendrite's. The lab's validator writes its store like the second, the file upstream writes.

use serde_json::Value;
use std::fmt::Write;

/// Serialise `v` like Python `json.dumps(v)`.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, None, 0);
    out
}

/// Serialise `v` like Python `json.dump(v, f, indent=indent)`.
pub fn dumps_indented(v: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_value(&mut out, v, Some(indent), 0);
    out
}

/// `indent`: None for one line (`", "`); else items on lines of their own, `depth` levels in.
fn write_value(out: &mut String, v: &Value, indent: Option<usize>, depth: usize) {
    // Before an item: its separator, then (indented) a new line at the item's depth.
    let item = |out: &mut String, i: usize, depth: usize| {
        match (i, indent) {
            (0, _) => {}
            (_, None) => out.push_str(", "),
            (_, Some(_)) => out.push(','),
        }
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', depth * n));
        }
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                item(out, i, depth + 1);
                write_value(out, x, indent, depth + 1);
            }
            item(out, 0, depth);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                item(out, i, depth + 1);
                write_str(out, k);
                out.push_str(": ");
                write_value(out, x, indent, depth + 1);
            }
            item(out, 0, depth);
            out.push('}');
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
        Value::String(s) => write_str(out, s),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
    }
}

/// A JSON string as Python's `json` writes it (`ensure_ascii`: everything outside space..tilde
/// escaped, non-BMP characters as surrogate pairs).
fn write_str(out: &mut String, s: &str) {
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
            // json.encoder.ESCAPE_ASCII: everything outside space..tilde
            ' '..='~' => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
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
    fn indented_like_json_dump_indent_2() {
        let v = json!({"a": [], "b": {}, "c": [1, {"d": null}], "e": 1.5, "f": "é"});
        assert_eq!(
            dumps_indented(&v, 2),
            "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    {\n      \"d\": null\n    }\n  ],\n  \"e\": 1.5,\n  \"f\": \"\\u00e9\"\n}"
        );
        assert_eq!(dumps_indented(&json!([]), 2), "[]");
        // and the one-line form keeps empty containers as Python does
        assert_eq!(dumps(&json!({"a": [], "b": {}})), r#"{"a": [], "b": {}}"#);
    }

    #[test]
    fn del_char_is_escaped_like_python() {
        // json.encoder.ESCAPE_ASCII is `([\\"]|[^\ -~])`: everything outside space..tilde, DEL included.
        assert_eq!(dumps(&json!("\u{7f}")), "\"\\u007f\"");
    }
}
