//! `patrol simulate SCENARIO.toml [--json] [--plot FILE.svg]`: compare strategies over weeks of a
//! simulated subnet (see `crate::lab::sim`). Exit 0 on success, 78 for a bad scenario file.

use anyhow::Context as _;

use crate::cli::{Coded, Exit, SimulateArgs, outputs};
use crate::config::Settings;
use crate::lab::sim::{report, scenario::Scenario};

/// Run the command.
pub fn run(args: &SimulateArgs, settings: Option<&Settings>) -> anyhow::Result<Exit> {
    let s = Scenario::load(&args.scenario)
        .map_err(|e| Coded::new(Exit::Config, "scenario_error", crate::secret::error_chain(&e)))?;
    if let Some(path) = &args.plot {
        outputs::check("plot", "--plot", path, settings, &[(args.scenario.as_path(), "the scenario file")])?;
    }
    // The simulation drives the validator handlers on its own single-threaded runtime, so it runs
    // on a thread of its own, outside the CLI's runtime.
    let r = std::thread::scope(|sc| sc.spawn(|| report::simulate(&s)).join())
        .map_err(|_| anyhow::anyhow!("the simulation thread panicked"))??;
    if let Some(path) = &args.plot {
        crate::fsutil::atomic_write(path, report::svg(&r, s.sample.as_secs()).as_bytes(), 0o644)
            .with_context(|| format!("cannot write plot {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", report::table(&r));
    }
    Ok(Exit::Covered)
}
