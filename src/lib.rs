//! patrol keeps a gittensor miner's GitHub PAT stored and valid at every eligible validator of
//! Bittensor subnet 74.
//!
//! # Layout
//! Top to bottom; each module imports only modules listed below it (no import cycle, no module
//! importing one above it), modules on one line none of each other. `tests/layers.rs` reads this
//! list (`- [`module`], …: what it is`, one line per layer) and fails on an import against it.
//!
//! The command line:
//! - [`cli`]: argument parsing, settings, logging, exit codes; one module per command.
//!
//! The lab — not the miner's agent, and nothing below imports it:
//! - [`lab`]: the reference gittensor validator (`patrol validator serve`, `demo`), a fake GitHub,
//!   and `patrol simulate`, which drives the agent's scheduler and the reconcile pass in virtual time.
//!
//! The miner's agent:
//! - [`agent`]: `patrol run`, the systemd service: the main loop, the pure scheduler (rounds,
//!   validator timers, probe sweeps), jobs, reload, health/metrics endpoint.
//! - [`status_view`]: `patrol status` / the agent's `/status`: what the agent knows per miner and
//!   validator, one pure function of the miners' state (the agent's or the state files').
//! - [`notify`]: telling the miner what patrol cannot fix (Discord, Slack, Telegram, ntfy, a JSON
//!   webhook) and the dead-man ping: events from state transitions (pure, held, once per change),
//!   rendering, delivery off the main loop.
//! - [`report`]: `check` / `post` / `reconcile` output (gitt's JSON plus patrol's, tables).
//! - [`metrics`]: the Prometheus families, filled from pass outcomes.
//! - [`reconcile`]: the decision core (pure), the GitHub budget (pure), the state file, the
//!   [`Transport`](reconcile::transport::Transport) seam and the one reconcile pass.
//! - [`chain`]: the subnet from Subtensor (subxt, legacy backend), metagraph cache, validator source.
//! - [`coverage`]: how a set of answers adds up (counts, stake, the verdict behind exit codes).
//! - [`config`]: the TOML schema, overrides, PAT sources, validated settings.
//! - [`fanout`]: concurrent calls to many validators, in order.
//! - [`observe`]: what one validator answer means — the one place reason texts are read.
//! - [`github`]: the two GitHub calls made with a PAT, their classification, the preflight.
//! - [`validators`]: the eligibility rule (pure).
//! - [`wire`]: the bittensor 10.x dendrite → axon protocol (the client, the probe, Python-shaped
//!   JSON); the axon's side of it is the lab validator's.
//! - [`wallet`]: bittensor hotkey files, SS58, sr25519 signing.
//! - [`serve`]: HTTP/1.1 serving with limits (timeouts, a connection cap, bounded shutdown), for
//!   the agent's endpoint and the validator axon.
//! - [`fsutil`], [`secret`], [`tls`], [`heap`], [`version`]: crash-safe files and capped reads; the
//!   PAT newtype, redaction and other parties' text; the TLS provider; giving freed memory back
//!   after a burst; what this binary is (version, git revision, target, rustc).

// Functions under 100 lines (clippy.toml sets the threshold); tests may be longer.
#![warn(clippy::too_many_lines)]
#![cfg_attr(test, allow(clippy::too_many_lines))]

pub mod agent;
pub mod chain;
pub mod cli;
pub mod config;
pub mod coverage;
pub mod fanout;
pub mod fsutil;
pub mod github;
pub mod heap;
pub mod lab;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod reconcile;
pub mod report;
pub mod secret;
pub mod serve;
pub mod status_view;
pub mod tls;
pub mod validators;
pub mod version;
pub mod wallet;
pub mod wire;
