//! Which validators get our PAT: the selection rule of `gitt miner post/check`
//! (docs/gittensor-pat-semantics.md §1.3), over rows from either the chain or a static list.
//!
//! Pure: no I/O. The rule, for every uid: skip silently if `vtrust <= min_vtrust`; otherwise eligible
//! when serving (ip ≠ 0.0.0.0) **and** `stake >= min_stake`; a high-vtrust uid that fails either goes
//! to `skipped` with its reasons.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::wire::Target;

/// One uid of the subnet as patrol needs it (from the chain or a static list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    pub uid: u16,
    /// SS58 hotkey.
    pub hotkey: String,
    /// Axon IP; `None` (or 0.0.0.0 / ::) when the neuron is not serving.
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// Validator trust in 0..=1 (chain u16 / 65535).
    pub vtrust: f64,
    /// Stake weight in α as gittensor's `metagraph.S` (total_stake).
    pub stake: f64,
    #[serde(default)]
    pub validator_permit: bool,
}

impl Neuron {
    /// `AxonInfo.is_serving`: the IP is set and not the unspecified address.
    pub fn is_serving(&self) -> bool {
        self.ip.is_some_and(|ip| !ip.is_unspecified()) && self.port != 0
    }
}

/// An eligible validator: where to send, and what it weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validator {
    pub uid: u16,
    pub hotkey: String,
    pub ip: IpAddr,
    pub port: u16,
    pub vtrust: f64,
    pub stake: f64,
}

impl Validator {
    /// The axon to call.
    pub fn target(&self) -> Target {
        Target { ip: self.ip, port: self.port, hotkey: self.hotkey.clone() }
    }

    /// `ip:port` (IPv6 bracketed).
    pub fn addr(&self) -> String {
        self.target().to_string()
    }
}

/// A high-vtrust uid left out, with gitt's reason texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub uid: u16,
    pub vtrust: f64,
    pub stake: f64,
    pub reasons: Vec<String>,
}

/// Thresholds of the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Strictly greater than.
    pub min_vtrust: f64,
    /// Greater than or equal, in α.
    pub min_stake: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { min_vtrust: 0.25, min_stake: 15_000.0 }
    }
}

/// Result of the rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub eligible: Vec<Validator>,
    pub skipped: Vec<Skipped>,
}

impl Selection {
    /// Sum of eligible stake (denominator of stake-weighted coverage).
    pub fn total_stake(&self) -> f64 {
        self.eligible.iter().map(|v| v.stake).sum()
    }
}

/// Apply gitt's rule to `neurons` (any order; output sorted by uid).
pub fn select(neurons: &[Neuron], t: Thresholds) -> Selection {
    let mut sorted: Vec<&Neuron> = neurons.iter().collect();
    sorted.sort_by_key(|n| n.uid);
    let mut out = Selection::default();
    for n in sorted {
        if n.vtrust <= t.min_vtrust || n.vtrust.is_nan() {
            continue;
        }
        let mut reasons = Vec::new();
        if !n.is_serving() {
            reasons.push("not serving an axon".to_string());
        }
        if n.stake < t.min_stake || n.stake.is_nan() {
            reasons.push(format!("stake {} α below {} α threshold", fmt_alpha(n.stake), fmt_alpha(t.min_stake)));
        }
        match (reasons.is_empty(), n.ip) {
            (true, Some(ip)) => out.eligible.push(Validator {
                uid: n.uid,
                hotkey: n.hotkey.clone(),
                ip,
                port: n.port,
                vtrust: n.vtrust,
                stake: n.stake,
            }),
            _ => out.skipped.push(Skipped { uid: n.uid, vtrust: n.vtrust, stake: n.stake, reasons }),
        }
    }
    out
}

/// gitt prints stakes with two decimals (`f"{stake:.2f}"`).
fn fmt_alpha(x: f64) -> String {
    format!("{x:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(uid: u16, ip: &str, vtrust: f64, stake: f64) -> Neuron {
        Neuron {
            uid,
            hotkey: format!("hk{uid}"),
            ip: ip.parse().ok(),
            port: 8091,
            vtrust,
            stake,
            validator_permit: true,
        }
    }

    #[test]
    fn gitt_rule() {
        let s = select(
            &[
                n(3, "10.0.0.3", 0.25, 1e6),    // vtrust not strictly above: silent
                n(1, "10.0.0.1", 0.9, 15000.0), // exactly min stake: eligible
                n(2, "0.0.0.0", 0.9, 20000.0),  // not serving
                n(4, "10.0.0.4", 0.5, 100.0),   // low stake
                n(5, "0.0.0.0", 0.5, 1.0),      // both
                n(6, "::1", 0.7, 50000.0),
            ],
            Thresholds::default(),
        );
        assert_eq!(s.eligible.iter().map(|v| v.uid).collect::<Vec<_>>(), vec![1, 6]);
        assert_eq!(s.skipped.iter().map(|v| v.uid).collect::<Vec<_>>(), vec![2, 4, 5]);
        assert_eq!(s.skipped[0].reasons, vec!["not serving an axon"]);
        assert_eq!(s.skipped[1].reasons, vec!["stake 100.00 α below 15000.00 α threshold"]);
        assert_eq!(s.skipped[2].reasons.len(), 2);
        assert_eq!(s.total_stake(), 65000.0);
    }

    #[test]
    fn negative_min_vtrust_includes_zero_trust() {
        let t = Thresholds { min_vtrust: -1.0, min_stake: 0.0 };
        assert_eq!(select(&[n(1, "1.1.1.1", 0.0, 0.0)], t).eligible.len(), 1);
        let t = Thresholds { min_vtrust: 0.0, min_stake: 0.0 };
        assert_eq!(select(&[n(1, "1.1.1.1", 0.0, 0.0)], t).eligible.len(), 0);
    }
}
