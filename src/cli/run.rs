//! `patrol run`: the agent (see [`crate::agent`]). This file only wires the command line to it:
//! the settings already loaded, a loader that re-reads them the same way (same `--config`, same
//! flags) for reloads, and the mapping of start-up failures to exit codes. A clean stop (SIGTERM,
//! SIGINT) is exit 0.

use crate::agent::{self, AgentError};
use crate::cli::{Cli, Coded, Exit, RunArgs};
use crate::config::Settings;

/// Run the agent until it is told to stop.
pub async fn run(cli: &Cli, settings: &Settings, args: &RunArgs) -> anyhow::Result<Exit> {
    // systemd's soft default (1024) whatever the unit's hard LimitNOFILE: validators' connections,
    // the endpoint's and the files must not run out of descriptors.
    crate::serve::raise_open_file_limit();
    let load = || cli.load_settings();
    let opts = agent::Options { dry_run: args.dry_run };
    match agent::run(settings.clone(), &load, opts).await {
        Ok(()) => Ok(Exit::Covered),
        Err(e) => {
            let exit = match e {
                // Signal handlers are the process, not the configuration.
                AgentError::Signals(_) => Exit::Software,
                // A bad hotkey, a state dir held by another patrol, a taken port: the operator must
                // act, and systemd must not restart in a loop (RestartPreventExitStatus=78).
                _ => Exit::Config,
            };
            let kind = e.kind();
            Err(Coded::new(exit, kind, crate::secret::error_chain(&e)))
        }
    }
}
