//! `patrol validators [--json]`: where the PAT would go, before anything is sent. Reads the
//! validator source (static list, chain, or cache), applies gitt's selection rule and prints the
//! eligible validators, the high-vtrust ones skipped with reasons, the block and the source. Needs no
//! wallet. Exit 0 whenever a source was read (also with 0 eligible, with a warning); exit 3 (via
//! [`crate::chain::ChainError`]) when there is none.

use serde_json::json;

use crate::chain::{self, Origin, SubnetView};
use crate::cli::{Exit, ValidatorsArgs};
use crate::config::Settings;
use crate::validators::Selection;

/// Run the command.
pub async fn run(settings: &Settings, args: &ValidatorsArgs) -> anyhow::Result<Exit> {
    let view = chain::subnet_view(settings, None).await?;
    let t = settings.validators.thresholds;
    let sel = view.select(t);
    if let Origin::Cache { url, age, error } = &view.origin {
        eprintln!(
            "warning: the chain at {url} could not be read ({error}); showing the cached metagraph from block {}, {} old",
            view.block.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
            humantime::format_duration(*age)
        );
    }
    if sel.eligible.is_empty() {
        eprintln!(
            "warning: no validator of netuid {} is eligible (vtrust > {}, serving, stake >= {} α); a PAT would go nowhere",
            view.netuid, t.min_vtrust, t.min_stake
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&view, &sel))?);
    } else {
        print_table(&view, &sel, settings);
    }
    Ok(Exit::Covered)
}

/// The `--json` document.
pub fn to_json(view: &SubnetView, sel: &Selection) -> serde_json::Value {
    let mut doc = json!({
        "success": true,
        "netuid": view.netuid,
        "block": view.block,
        "source": view.origin.label(),
    });
    if let Origin::Cache { age, error, .. } = &view.origin {
        doc["metagraph_age_s"] = json!(age.as_secs());
        doc["chain_error"] = json!(error);
    }
    doc["total_validators"] = json!(sel.eligible.len());
    doc["eligible"] = sel
        .eligible
        .iter()
        .map(|v| {
            json!({
                "uid": v.uid,
                "hotkey": v.hotkey,
                "ip": v.ip.to_string(),
                "port": v.port,
                "vtrust": v.vtrust,
                "stake": v.stake,
            })
        })
        .collect();
    doc["skipped"] = sel
        .skipped
        .iter()
        .map(|s| json!({"uid": s.uid, "vtrust": s.vtrust, "stake": s.stake, "reasons": s.reasons}))
        .collect();
    doc
}

fn print_table(view: &SubnetView, sel: &Selection, settings: &Settings) {
    let t = settings.validators.thresholds;
    let source = match &view.origin {
        Origin::Static => "static list ([validators] static)".to_string(),
        Origin::Chain { url } => format!("chain {url}"),
        Origin::Cache { url, age, .. } => {
            format!("CACHE of {url}, {} old", humantime::format_duration(*age))
        }
    };
    let block = view.block.map(|b| format!("block {b}")).unwrap_or_else(|| "no block".into());
    println!("netuid {} · {block} · source: {source}", view.netuid);
    println!(
        "{} eligible validator(s) (vtrust > {}, serving an axon, stake >= {} α), total stake {:.2} α",
        sel.eligible.len(),
        t.min_vtrust,
        t.min_stake,
        sel.total_stake()
    );
    if !sel.eligible.is_empty() {
        println!();
        println!("{:>5}  {:<48}  {:<40}  {:>7}  {:>14}", "UID", "HOTKEY", "AXON", "VTRUST", "STAKE (α)");
        for v in &sel.eligible {
            println!("{:>5}  {:<48}  {:<40}  {:>7.4}  {:>14.2}", v.uid, v.hotkey, v.addr(), v.vtrust, v.stake);
        }
    }
    if !sel.skipped.is_empty() {
        println!();
        println!("skipped (vtrust above the threshold but not eligible):");
        println!("{:>5}  {:>7}  {:>14}  REASONS", "UID", "VTRUST", "STAKE (α)");
        for s in &sel.skipped {
            println!("{:>5}  {:>7.4}  {:>14.2}  {}", s.uid, s.vtrust, s.stake, s.reasons.join("; "));
        }
    }
}
