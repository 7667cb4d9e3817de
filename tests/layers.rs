//! The module map of `src/lib.rs`, executed. Its `//! - [`module`]: …` lines list the modules top
//! to bottom; each may import only modules listed below it, modules on one line none of each other,
//! and nothing but `cli` imports `lab` (the lab is not the miner's agent). Every `crate::…` path and
//! every `super::…` path that climbs out of its top-level module, in every file of every module
//! (its tests too), is checked; a failure names the file, the line and both modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The modules of the map, in its order: (module, layer index, the line of `src/lib.rs`).
fn map(lib: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (layer, line) in lib.lines().filter_map(|l| l.strip_prefix("//! - ")).enumerate() {
        // `[`a`], [`b`]: what they are` — the names before the first `:` outside a link
        let names = line.split("]:").next().unwrap_or("");
        for name in names.split(", ") {
            let name = name.trim().trim_start_matches("[`").trim_end_matches("`]").trim_end_matches('`');
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "src/lib.rs: cannot read the module map line {line:?}: write it `//! - [`module`], [`other`]: what`"
            );
            out.push((name.to_string(), layer));
        }
    }
    out
}

/// `pub mod x;` / `mod x;` of `src/lib.rs`.
fn declared(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The text with comments, string and char literals blanked out (newlines kept, so offsets still
/// give lines): a path in a doc link or a message is no import.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| out.extend(s.iter().map(|&c| if c == b'\n' { '\n' } else { ' ' }));
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            // nested block comments
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if let Some(hashes) = raw_string_start(rest) {
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let open = 2 + hashes;
            rest[open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| open + p + close.len())
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let start = if rest[0] == b'"' { 1 } else { 2 };
            let mut j = start;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' && char_literal_len(rest) > 0 {
            char_literal_len(rest)
        } else {
            let c = text[i..].chars().next().expect("inside the text");
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end;
    }
    out
}

/// `r"`, `r#"`, `br##"` …: the number of `#`.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{1b}'`), 0 for a lifetime.
fn char_literal_len(s: &[u8]) -> usize {
    if s.get(1) == Some(&b'\\') {
        return s[2..].iter().position(|&c| c == b'\'').map_or(0, |p| p + 3);
    }
    let text = std::str::from_utf8(&s[1..]).unwrap_or("");
    let Some(c) = text.chars().next() else { return 0 };
    if text[c.len_utf8()..].starts_with('\'') { c.len_utf8() + 2 } else { 0 }
}

/// An identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let n = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..n]
}

fn skip_ws(s: &str) -> &str {
    s.trim_start()
}

/// The top-level modules a file of module `path` (e.g. `["agent", "cycle"]`) reaches, with the
/// byte offset: `crate::x…`, `crate::{x, y::z}`, and `super::…` chains that climb to the root.
fn reached(code: &str, file_module: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // inline `mod name {` blocks: the module path at each brace depth
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            depth = depth.saturating_sub(1);
            inline.retain(|(d, _)| *d <= depth);
        } else if at_word && bytes[i..].starts_with(b"mod ") {
            let rest = skip_ws(&code[i + 4..]);
            let name = ident(rest);
            if skip_ws(&rest[name.len()..]).starts_with('{') {
                inline.push((depth + 1, name.to_string()));
            }
        } else if at_word && (bytes[i..].starts_with(b"crate") || bytes[i..].starts_with(b"super")) {
            let word = ident(&code[i..]);
            if word == "crate" || word == "super" {
                let mut module: Vec<String> = file_module.to_vec();
                module.extend(inline.iter().map(|(_, n)| n.clone()));
                let mut rest = &code[i..];
                let mut from_root;
                loop {
                    let w = ident(rest);
                    let after = skip_ws(&rest[w.len()..]);
                    match w {
                        "crate" => {
                            module.clear();
                            from_root = true;
                        }
                        "super" => {
                            if module.pop().is_none() {
                                break;
                            }
                            from_root = module.is_empty();
                        }
                        _ => break,
                    }
                    let Some(next) = after.strip_prefix("::") else { break };
                    rest = skip_ws(next);
                    if !from_root {
                        continue;
                    }
                    // at the crate root: the next segment, or a `{…}` group of them
                    if let Some(group) = rest.strip_prefix('{') {
                        let mut level = 0;
                        let mut start = true;
                        for (k, ch) in group.char_indices() {
                            match ch {
                                '{' => level += 1,
                                '}' if level == 0 => break,
                                '}' => level -= 1,
                                ',' if level == 0 => start = true,
                                ch if start && !ch.is_whitespace() => {
                                    start = false;
                                    out.push((i, ident(&group[k..]).to_string()));
                                }
                                _ => {}
                            }
                        }
                        break;
                    }
                    let w = ident(rest);
                    if w != "crate" && w != "super" {
                        out.push((i, w.to_string()));
                        break;
                    }
                }
                i += word.len();
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Every `.rs` file under `dir` (or the file itself).
fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if p.is_file() && p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The module path of a file under `src/` (`src/agent/mod.rs` → `agent`, `src/agent/cycle.rs` →
/// `agent::cycle`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every upward import in the tree at `root` (a crate with `src/lib.rs`), one line each, and how
/// many imports of another module were checked.
fn violations(root: &Path) -> (Vec<String>, usize) {
    let src = root.join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let order = map(&lib);
    let layer: BTreeMap<&str, usize> = order.iter().map(|(m, l)| (m.as_str(), *l)).collect();
    assert_eq!(layer.len(), order.len(), "src/lib.rs: a module is listed twice in the map: {order:?}");
    let mut declared = declared(&lib);
    declared.sort();
    let mut listed: Vec<String> = layer.keys().map(|m| m.to_string()).collect();
    listed.sort();
    assert_eq!(listed, declared, "src/lib.rs: the module map must list every module `pub mod` declares, once");

    let (mut found, mut checked) = (Vec::new(), 0);
    for (module, own) in &order {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        rust_files(&src.join(format!("{module}.rs")), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = code_only(&text);
            let rel = file.strip_prefix(root).unwrap().display().to_string();
            for (offset, target) in reached(&code, &module_of(&src, &file)) {
                let Some(&theirs) = layer.get(target.as_str()) else { continue };
                let line = code[..offset].matches('\n').count() + 1;
                if target == *module {
                    continue;
                }
                checked += 1;
                if target == "lab" && module != "cli" {
                    found.push(format!("{rel}:{line}: `{module}` imports `lab`, which only `cli` may import"));
                } else if theirs < *own {
                    found.push(format!("{rel}:{line}: `{module}` imports `{target}`, which src/lib.rs lists above it"));
                } else if theirs == *own {
                    found.push(format!(
                        "{rel}:{line}: `{module}` imports `{target}`, listed on the same line of src/lib.rs"
                    ));
                }
            }
        }
    }
    (found, checked)
}

#[test]
fn no_module_imports_one_listed_above_it_in_src_lib_rs() {
    let (found, checked) = violations(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(found.is_empty(), "imports against the module map of src/lib.rs:\n{}", found.join("\n"));
    // the scan reads the tree: hundreds of imports of one module by another
    assert!(checked > 300, "only {checked} imports between modules found: is the scan reading src/?");
    eprintln!("{checked} imports between modules checked");
}

/// The checker itself, on a small crate: an upward `use`, a grouped one, a `super::` chain out of
/// an inline test module, `lab` imported by the agent, and paths in comments and strings (no
/// imports) — and the layering allowed below.
#[test]
fn the_checker_finds_upward_imports_and_ignores_comments_and_strings() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("agent")).unwrap();
    std::fs::create_dir_all(src.join("wire")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(src.join(p), t).unwrap();
    write(
        "lib.rs",
        "//! # Layout\n//! - [`cli`]: the command line.\n//! - [`lab`]: not the agent.\n//! - [`agent`]: the agent.\n\
         //! - [`wire`], [`fsutil`]: leaves.\npub mod agent;\npub mod cli;\npub mod fsutil;\npub mod lab;\npub mod wire;\n",
    );
    write("cli.rs", "use crate::lab::x;\nuse crate::{agent, wire::y};\n");
    write("lab.rs", "use crate::agent::z;\n");
    write(
        "agent/mod.rs",
        "mod cycle;\nuse crate::wire;\n// crate::cli::nope in a comment\nconst S: &str = \"crate::cli\";\n",
    );
    write("agent/cycle.rs", "use super::super::cli::Args;\nuse super::Agent;\nmod tests { use super::super::x; }\n");
    write("wire/mod.rs", "use crate::{fsutil, agent::Run};\nfn f() { let c = '\"'; crate::lab::go(); }\n");
    write("fsutil.rs", "/* crate::cli */ fn g() -> &'static str { r#\"crate::agent\"# }\n");
    let (found, checked) = violations(dir.path());
    assert_eq!(checked, 9, "{found:#?}");
    assert_eq!(
        found,
        vec![
            "src/agent/cycle.rs:1: `agent` imports `cli`, which src/lib.rs lists above it",
            "src/wire/mod.rs:1: `wire` imports `fsutil`, listed on the same line of src/lib.rs",
            "src/wire/mod.rs:1: `wire` imports `agent`, which src/lib.rs lists above it",
            "src/wire/mod.rs:2: `wire` imports `lab`, which only `cli` may import",
        ],
        "{found:#?}"
    );
}
