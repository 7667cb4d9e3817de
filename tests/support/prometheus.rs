//! A strict parser of the classic Prometheus text format (what `/metrics` and `--metrics-file`
//! must be), and lookups of a sample by name and labels.

use std::collections::BTreeMap;

/// One sample of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The value of `name{labels ⊆ sample labels}` (the first match).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A strict parser of the classic Prometheus text format (0.0.4): `# HELP`/`# TYPE` lines with
/// valid names (one TYPE per family, before its samples), samples whose family was declared, valid
/// label names, quoted and escaped label values, float values, no duplicate series, a final newline.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix("HELP ") {
                let name = r.split(' ').next().unwrap_or("");
                if !valid_metric_name(name) {
                    return Err(at("bad metric name in HELP".into()));
                }
            } else if let Some(r) = rest.strip_prefix("TYPE ") {
                let mut it = r.split(' ');
                let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                if !valid_metric_name(name) || it.next().is_some() {
                    return Err(at("bad TYPE line".into()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(at("second TYPE for the family".into()));
                }
                if samples.iter().any(|s| s.name == name) {
                    return Err(at("TYPE after the family's samples".into()));
                }
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(p) => (&line[..p], &line[p..]),
            None => return Err(at("no value".into())),
        };
        if !valid_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end = loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).ok_or_else(|| at("unterminated labels".into()))?;
                if r[start..].starts_with('}') {
                    break start + 1;
                }
                let eq = r[start..].find('=').ok_or_else(|| at("label without '='".into()))? + start;
                let lname = &r[start..eq];
                if !valid_label_name(lname) {
                    return Err(at(format!("bad label name {lname:?}")));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted".into()));
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, '\\')) => val.push('\\'),
                            Some((_, '"')) => val.push('"'),
                            _ => return Err(at("bad escape in a label value".into())),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => val.push(c),
                        None => return Err(at("unterminated label value".into())),
                    }
                }
                if labels.insert(lname.to_string(), val).is_some() {
                    return Err(at(format!("label {lname} twice")));
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => break i + 1,
                    _ => return Err(at("expected ',' or '}' after a label".into())),
                }
            };
            rest = &r[end..];
        }
        let mut fields = rest.split_whitespace();
        let v = fields.next().ok_or_else(|| at("no value".into()))?;
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at(format!("bad value {v:?}")))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = types
            .keys()
            .find(|f| {
                name == f.as_str()
                    || ["_bucket", "_sum", "_count"].iter().any(|suf| name.strip_suffix(suf) == Some(f.as_str()))
            })
            .ok_or_else(|| at("sample of an undeclared family".into()))?;
        if types[family] == "counter" && !name.ends_with("_total") {
            return Err(at("a counter sample must end in _total".into()));
        }
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(samples)
}
