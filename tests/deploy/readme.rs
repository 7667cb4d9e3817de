//! The command blocks of `packaging/README.md` the test runs: each ```` ```sh ```` block right after
//! a `<!-- deploy-test: NAME -->` line. The README is the script, so what it tells a miner is what
//! was run here.

use std::collections::BTreeMap;

use crate::container::{Container, Out};

pub struct Readme {
    blocks: BTreeMap<String, String>,
}

/// The blocks the test runs, in the README's order (each must be there, and only these).
const BLOCKS: [&str; 13] = [
    "install",
    "setup",
    "status",
    "reload",
    "rotate",
    "notify",
    "timer",
    "node-exporter",
    "instance",
    "cron",
    "back-to-agent",
    "upgrade",
    "remove",
];

impl Readme {
    pub fn load() -> Readme {
        let path = crate::repo().join("packaging/README.md");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let readme = Readme::parse(&text);
        let mut names: Vec<&str> = readme.blocks.keys().map(String::as_str).collect();
        names.sort_by_key(|n| text.find(&format!("<!-- deploy-test: {n} -->")));
        let mut expected: Vec<&str> = BLOCKS.to_vec();
        expected.push("purge");
        assert_eq!(names, expected, "packaging/README.md's deploy-test blocks (names, order)");
        readme
    }

    fn parse(text: &str) -> Readme {
        let mut blocks = BTreeMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(name) = line.trim().strip_prefix("<!-- deploy-test: ").and_then(|s| s.strip_suffix(" -->")) else {
                continue;
            };
            let fence = lines.by_ref().find(|l| !l.trim().is_empty()).unwrap_or_default();
            assert_eq!(
                fence.trim(),
                "```sh",
                "packaging/README.md: the deploy-test block {name:?} is not followed by ```sh"
            );
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            assert!(!body.is_empty(), "packaging/README.md: the deploy-test block {name:?} is empty");
            assert!(
                blocks.insert(name.to_string(), body.join("\n")).is_none(),
                "packaging/README.md: two blocks named {name:?}"
            );
        }
        Readme { blocks }
    }

    /// The commands of block `name`.
    pub fn block(&self, name: &str) -> &str {
        self.blocks.get(name).unwrap_or_else(|| panic!("packaging/README.md has no deploy-test block {name:?}"))
    }

    /// Run block `name` in the container as one `sh -e` script in `cwd`, with `stdin` (what the
    /// miner pastes); it must succeed. `units` are shown when it does not.
    pub fn run(&self, c: &Container, name: &str, cwd: &str, stdin: &str, units: &[&str]) -> Out {
        let script = format!("set -e\ncd {cwd}\n{}", self.block(name));
        let out = c.sh_stdin(&script, stdin.as_bytes());
        if !out.ok() {
            c.fail(
                units,
                &format!("packaging/README.md's {name:?} block succeeds:\n{}", self.block(name)),
                &out.to_string(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_read_in_order_with_their_commands() {
        let r = Readme::parse(
            "x\n<!-- deploy-test: a -->\n```sh\necho 1\necho 2\n```\ntext\n<!-- deploy-test: b -->\n\n```sh\nls\n```\n",
        );
        assert_eq!(r.block("a"), "echo 1\necho 2");
        assert_eq!(r.block("b"), "ls");
    }
}
