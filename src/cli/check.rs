//! `patrol check`: ask every eligible validator whether it holds our valid PAT. No PAT is sent.

use crate::cli::common;
use crate::cli::{CheckArgs, Exit};
use crate::config::Settings;
use crate::fanout::Fanout;
use crate::observe::CheckReading;
use crate::reconcile::budget;
use crate::reconcile::state::StateFile;
use crate::report::{self, CheckReport, CheckRow};

/// Run the command.
pub async fn run(settings: &Settings, args: &CheckArgs) -> anyhow::Result<Exit> {
    let miner = settings.single_miner()?;
    let caller = common::caller(settings, miner)?;
    if !args.json {
        common::banner(settings, miner, caller.hotkey.ss58());
    }
    let el = common::eligible(settings, caller.hotkey.ss58(), args.json).await?;
    let validators = &el.selection.eligible;
    let fanout = Fanout { dendrite: &caller.dendrite, concurrency: settings.reconcile.concurrency };
    let replies = fanout.check(validators, settings.reconcile.check_timeout).await;
    let rows: Vec<CheckRow> =
        validators.iter().zip(&replies).map(|(v, r)| CheckRow::new(v, &CheckReading::of(r))).collect();
    // What these checks cost on the PAT goes into the GitHub budget the agent and `reconcile` keep.
    let calls = rows.iter().map(|r| budget::check_cost(r.category)).fold(0u32, u32::saturating_add);
    let file = StateFile::of(settings, caller.hotkey.ss58());
    common::note_spent(&file, calls);
    let rep = CheckReport::new(caller.hotkey.ss58(), rows, el.selection.skipped.clone(), el.source.clone());
    print!("{}", report::stdout(&rep, args.json, report::check_table)?);
    eprintln!("{}", rep.summary_line());
    Ok(Exit::from(rep.summary().verdict()))
}
