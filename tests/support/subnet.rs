//! A local subnet of real processes for end-to-end tests: `patrol validator serve` instances on
//! 127.0.0.1 (restartable on the same port, with or without their store) sharing a fake GitHub, and
//! a patrol config pointing at them as a static validator list.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;

use super::cli::{Scratch, static_validator};
use super::python::{DENDRITE_HOTKEY, DENDRITE_SEED};
use super::serve::{self, PatrolProcess};

/// One reference validator process.
pub struct Node {
    pub uid: u16,
    pub seed: String,
    pub port: u16,
    pub hotkey: String,
    pub store: PathBuf,
    pub github: String,
    pub mode: &'static str,
    /// More `validator serve` flags (e.g. `--github-timeout 1s`, `--clock-offset 60s`).
    pub extra_args: Vec<String>,
    /// A command prefix that execs patrol (e.g. `setpriv` to run it as another user); empty: none.
    pub wrapper: Vec<String>,
    pub proc: Option<PatrolProcess>,
    log: PathBuf,
}

impl Node {
    /// Start (or restart on the same port).
    pub fn start(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let miner = [format!("1:{DENDRITE_HOTKEY}:100")];
        let mut extra = vec!["--mode", self.mode, "--identity-attempts", "1"];
        extra.extend(self.extra_args.iter().map(String::as_str));
        let args = serve::validator_args(&self.seed, &listen, &self.store, &self.github, &miner, &extra);
        let p = PatrolProcess::spawn_wrapped(
            &super::process::strs(&self.wrapper),
            &super::process::strs(&args),
            &[("RUST_LOG", "patrol=debug")],
            &self.log,
        );
        self.port = p.listen().port();
        self.hotkey = p.ready["hotkey"].as_str().unwrap_or_default().to_string();
        self.proc = Some(p);
    }

    /// Stop it (SIGTERM, graceful).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal_and_wait(libc::SIGTERM, std::time::Duration::from_secs(10));
        }
    }

    /// Kill it with SIGKILL (no graceful shutdown) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal_and_wait(libc::SIGKILL, std::time::Duration::from_secs(10));
        }
    }

    /// Everything it logged since its last start (stderr; a restart starts a new log).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Restart without its store (the watchtower case).
    pub fn restart_empty(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.store);
        self.start();
    }

    /// The store as JSON entries (empty if absent).
    pub fn entries(&self) -> Vec<Value> {
        match std::fs::read(&self.store) {
            Ok(b) => serde_json::from_slice::<Value>(&b).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The PAT stored for our miner.
    pub fn stored_pat(&self) -> Option<String> {
        self.entries().iter().find(|e| e["uid"] == 1).and_then(|e| e["pat"].as_str().map(str::to_string))
    }

    /// Modification time of the store (only broadcasts write it).
    pub fn written_at(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.store).and_then(|m| m.modified()).ok()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// Several validators and a patrol config for a miner ([`DENDRITE_SEED`]).
pub struct Subnet {
    pub scratch: Scratch,
    pub nodes: Vec<Node>,
}

impl Subnet {
    /// `n` validators (uids 11, 12, …) using GitHub at `github` (fixed mode).
    pub fn start(n: u16, github: SocketAddr) -> Subnet {
        Subnet::start_with(n, github, &[])
    }

    /// [`start`](Self::start), and the miner's PAT file (`pat` in the scratch dir) holding `pat`.
    pub fn with_pat(n: u16, github: SocketAddr, pat: &str) -> Subnet {
        let mut net = Subnet::start(n, github);
        net.scratch.pat("pat", pat);
        net
    }

    /// [`start`](Self::start) with more `validator serve` flags for every node.
    pub fn start_with(n: u16, github: SocketAddr, extra_args: &[&str]) -> Subnet {
        let scratch = Scratch::new();
        scratch.hotkey("hotkey", DENDRITE_SEED);
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut node = Node {
                uid: 11 + i,
                seed: format!("0x{}", hex::encode([0x21 + i as u8; 32])),
                port: 0,
                hotkey: String::new(),
                store: scratch.path(&format!("v{i}/miner_pats.json")),
                github: format!("http://{github}"),
                mode: "fixed",
                extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
                wrapper: Vec::new(),
                proc: None,
                log: scratch.path(&format!("v{i}.log")),
            };
            std::fs::create_dir_all(node.store.parent().unwrap()).unwrap();
            node.start();
            nodes.push(node);
        }
        Subnet { scratch, nodes }
    }

    /// `[[validators.static]]` entries for `nodes` (indices), stake 20 000 each.
    pub fn validators_toml(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|i| {
                static_validator(self.nodes[*i].uid, &self.nodes[*i].hotkey, "127.0.0.1", self.nodes[*i].port, 20_000.0)
            })
            .collect()
    }

    /// Write `name` as a patrol config over `nodes` (indices), with `extra` TOML.
    pub fn config(&self, name: &str, nodes: &[usize], github: SocketAddr, extra: &str) {
        let validators = self.validators_toml(nodes);
        let body = format!(
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[github]\napi_url = \"http://{github}\"\n[agent]\nstate_dir = \"state\"\n\
             [reconcile]\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"5s\"\n{extra}\n{validators}"
        );
        self.scratch.write(name, &body, 0o600);
    }

    /// Servers' stderr must never contain `secret`.
    pub fn assert_no_leak(&self, secret: &str) {
        for n in &self.nodes {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            assert!(!log.contains(secret), "validator uid {} logged the PAT", n.uid);
        }
    }
}
