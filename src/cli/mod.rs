//! The command line: argument parsing, settings, logging, and dispatch to one module per command.
//! Arguments only validate here (ripgrep's low/high args split); each command module does the work
//! and returns an [`Exit`]. Errors are printed once, as `patrol: {err:#}` (or a JSON envelope in
//! `--json` mode), and mapped to exit codes by [`exit::classify`].

pub mod check;
pub mod common;
pub mod doctor;
pub mod exit;
pub mod generate;
pub mod logging;
pub mod notify;
pub mod outputs;
pub mod post;
pub mod reconcile;
pub mod run;
pub mod simulate;
pub mod status;
pub mod validators;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use exit::{Coded, Exit};

use crate::config::{self, Overrides, Settings};

/// The exit codes, for `--help` (a macro so `concat!` can put them under other help text).
macro_rules! exit_codes_help {
    () => {
        "\
Exit codes (check, post, reconcile, status):
  0   every eligible validator holds our valid PAT
  1   partial coverage
  2   no eligible validator covered
  3   coverage undetermined (nobody answered, no validator source, metagraph too old; status: no pass for 2 × (interval + jitter))
  64  usage error
  70  internal error
  78  configuration or credential error (config, PAT file, hotkey, not registered, PAT invalid)"
    };
}

/// The exit codes, in `--help` and in the man page's EXIT STATUS (`patrol man`).
pub const EXIT_CODES_HELP: &str = exit_codes_help!();

const CHECK_HELP: &str = concat!(
    "What a check costs: a validator that holds a PAT for you checks it with GitHub on every check (REST
/user and the GraphQL query: two calls on your PAT's 5,000 an hour), so a check of N covered
validators costs 2N calls. They count in the GitHub budget the agent and `reconcile` keep
([reconcile] github_budget), which then check less; `patrol status` shows what the agent knows
without asking anyone.

",
    exit_codes_help!()
);

/// patrol keeps your gittensor GitHub PAT stored and valid at every eligible validator of subnet 74.
#[derive(Debug, Parser)]
#[command(
    name = "patrol",
    version,
    long_version = crate::version::LONG,
    about,
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Config file (TOML). Default: $PATROL_CONFIG, ~/.config/patrol/config.toml, /etc/patrol/config.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format: auto, text, json, journald (overrides [agent] log_format).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask every eligible validator whether it holds our valid PAT (no PAT is sent). Superset of `gitt miner check`.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Check the PAT locally, then send it to every eligible validator. Superset of `gitt miner post`.
    #[command(after_help = EXIT_CODES_HELP)]
    Post(PostArgs),
    /// One reconcile pass: check all, re-broadcast only where coverage is missing, confirm. For cron/CI.
    #[command(after_help = EXIT_CODES_HELP)]
    Reconcile(ReconcileArgs),
    /// Run the agent: reconcile on an interval, forever (systemd Type=notify service).
    Run(RunArgs),
    /// What the running agent knows, per miner and validator: no validator is contacted, no GitHub call.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),
    /// Show the eligible validators (and skipped ones with reasons): where the PAT would go.
    Validators(ValidatorsArgs),
    /// Check config, wallet, chain, registration, PAT, clock and state dir; print the fix for each failure.
    Doctor(DoctorArgs),
    /// Notifications ([notify]): send a test message to every target and the dead-man ping.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// The embedded reference validator (gittensor's PAT handlers on a real axon).
    #[command(subcommand)]
    Validator(ValidatorCommand),
    /// Start a small local subnet with a fake GitHub, reconcile a demo miner, wipe a store, show repair.
    Demo(DemoArgs),
    /// Simulate weeks of a subnet with faults in virtual time and compare strategies.
    Simulate(SimulateArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout: `patrol man | man -l -`.
    #[command(hide = true)]
    Man,
    /// Development helpers used by tests and benchmarks (fake GitHub, mock chain node, ...).
    #[command(hide = true, subcommand)]
    Dev(DevCommand),
}

/// `--wallet`, `--hotkey`, ... (gitt's names).
#[derive(Debug, Clone, Default, Args)]
pub struct WalletArgs {
    /// Wallet name (gitt: --wallet).
    #[arg(long, value_name = "NAME")]
    pub wallet: Option<String>,
    /// Hotkey name (gitt: --hotkey).
    #[arg(long, value_name = "NAME")]
    pub hotkey: Option<String>,
    /// Wallet root directory (default ~/.bittensor/wallets or $BT_WALLET_PATH).
    #[arg(long, value_name = "DIR")]
    pub wallet_path: Option<String>,
    /// Explicit hotkey file (overrides --wallet/--hotkey/--wallet-path).
    #[arg(long, value_name = "FILE")]
    pub hotkey_file: Option<String>,
    /// With several [[miner]] entries: act as this one.
    #[arg(long, value_name = "NAME")]
    pub miner: Option<String>,
}

/// Chain and selection flags (gitt's names).
#[derive(Debug, Clone, Default, Args)]
pub struct ChainArgs {
    /// finney, test, local, or a ws(s):// URL.
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,
    /// Endpoint URL; overrides --network (gitt compatibility).
    #[arg(long, value_name = "URL")]
    pub rpc_url: Option<String>,
    /// Subnet (default 74).
    #[arg(long)]
    pub netuid: Option<u16>,
    /// Validators need vtrust strictly above this (default 0.25).
    #[arg(long, allow_negative_numbers = true)]
    pub min_vtrust: Option<f64>,
    /// Validators need at least this stake in α (default 15000).
    #[arg(long, allow_negative_numbers = true)]
    pub min_stake: Option<f64>,
}

/// PAT source flags.
#[derive(Debug, Clone, Default, Args)]
pub struct PatArgs {
    /// The PAT itself (gitt compatibility; visible to other users in `ps` — prefer --pat-file or GITTENSOR_MINER_PAT).
    #[arg(long, value_name = "PAT", hide_env_values = true)]
    pub pat: Option<String>,
    /// Read the PAT from this file (must not be readable by group/others).
    #[arg(long, value_name = "FILE")]
    pub pat_file: Option<String>,
}

/// Which miner, on which chain, with which PAT: the options of every command that may send it.
#[derive(Debug, Args)]
pub struct MinerArgs {
    #[command(flatten)]
    pub wallet: WalletArgs,
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub pat: PatArgs,
}

impl MinerArgs {
    fn parts(&self) -> (Option<&WalletArgs>, Option<&ChainArgs>, Option<&PatArgs>) {
        (Some(&self.wallet), Some(&self.chain), Some(&self.pat))
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Machine-readable output on stdout (gitt's JSON, plus more fields).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub wallet: WalletArgs,
    #[command(flatten)]
    pub chain: ChainArgs,
}

#[derive(Debug, Args)]
pub struct PostArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub miner: MinerArgs,
    /// Extra attempts for validators that gave no response (default [reconcile] post_retries = 2).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[arg(long)]
    pub json: bool,
    /// Probe and print the plan; send no PAT.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write Prometheus text here, atomically (node_exporter textfile collector).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// State directory (default [agent] state_dir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    #[command(flatten)]
    pub miner: MinerArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Probe and plan every pass, but never send the PAT.
    #[arg(long)]
    pub dry_run: bool,
    /// Health/metrics address, or "off" (default [agent] listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    #[command(flatten)]
    pub miner: MinerArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// The agent's endpoint to ask, or "off" to read the state files only (default [agent] listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// State directory read when no agent answers (default [agent] state_dir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
}

const COMPLETIONS_HELP: &str = "\
Install, for example:
  bash: patrol completions bash > ~/.local/share/bash-completion/completions/patrol
  zsh:  patrol completions zsh > ~/.zfunc/_patrol   (with fpath+=~/.zfunc before compinit)
  fish: patrol completions fish > ~/.config/fish/completions/patrol.fish
The Debian package installs them for bash, zsh and fish.";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ValidatorsArgs {
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    #[command(flatten)]
    pub chain: ChainArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub miner: MinerArgs,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one test message to every [[notify.target]] and ping [notify] ping; print each result.
    #[command(
        after_help = "Exit codes: 0 every target and the ping accepted the test, 1 one did not, 78 configuration error (no target, a URL file missing or readable by others)."
    )]
    Test(NotifyTestArgs),
}

#[derive(Debug, Args)]
pub struct NotifyTestArgs {
    /// One JSON object on stdout: `success`, `results[]` (`target`, `kind`, `url` redacted, `ok`, `detail`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ValidatorCommand {
    /// Run one reference validator on an axon.
    Serve(crate::cli::validator_args::ServeArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of reference validators.
    #[arg(long, default_value_t = 4)]
    pub validators: u16,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Scenario file (TOML); see examples/.
    pub scenario: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Write an SVG plot of coverage over time.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Serve a fake GitHub API on 127.0.0.1 (tests, benchmarks, demo).
    FakeGithub(crate::cli::validator_args::FakeGithubArgs),
}

pub mod demo;
pub mod dev_fake_github;
pub mod validator_args;
pub mod validator_serve;

impl Cli {
    fn overrides(&self) -> Overrides {
        let mut ov = Overrides { log_format: self.log_format.clone(), ..Overrides::default() };
        let (w, c, p): (Option<&WalletArgs>, Option<&ChainArgs>, Option<&PatArgs>) = match &self.command {
            Command::Check(a) => (Some(&a.wallet), Some(&a.chain), None),
            Command::Post(a) => a.miner.parts(),
            Command::Reconcile(a) => {
                ov.state_dir = a.state_dir.clone();
                a.miner.parts()
            }
            Command::Run(a) => {
                ov.state_dir = a.state_dir.clone();
                ov.listen = a.listen.clone();
                a.miner.parts()
            }
            Command::Validators(a) => {
                ov.state_dir = a.state_dir.clone();
                (None, Some(&a.chain), None)
            }
            Command::Status(a) => {
                ov.state_dir = a.state_dir.clone();
                ov.listen = a.listen.clone();
                (None, None, None)
            }
            Command::Doctor(a) => a.miner.parts(),
            _ => (None, None, None),
        };
        if let Some(w) = w {
            ov.wallet = w.wallet.clone();
            ov.hotkey = w.hotkey.clone();
            ov.wallet_path = w.wallet_path.clone();
            ov.hotkey_file = w.hotkey_file.clone();
        }
        if let Some(c) = c {
            ov.network = c.network.clone();
            ov.rpc_url = c.rpc_url.clone();
            ov.netuid = c.netuid;
            ov.min_vtrust = c.min_vtrust;
            ov.min_stake = c.min_stake;
        }
        if let Some(p) = p {
            ov.pat = p.pat.clone();
            ov.pat_file = p.pat_file.clone();
        }
        ov
    }

    fn miner(&self) -> Option<&str> {
        match &self.command {
            Command::Check(a) => a.wallet.miner.as_deref(),
            Command::Post(a) => a.miner.wallet.miner.as_deref(),
            Command::Reconcile(a) => a.miner.wallet.miner.as_deref(),
            Command::Run(a) => a.miner.wallet.miner.as_deref(),
            Command::Doctor(a) => a.miner.wallet.miner.as_deref(),
            _ => None,
        }
    }

    fn json(&self) -> bool {
        match &self.command {
            Command::Check(a) => a.json,
            Command::Post(a) => a.json,
            Command::Reconcile(a) => a.json,
            Command::Validators(a) => a.json,
            Command::Doctor(a) => a.json,
            Command::Notify(NotifyCommand::Test(a)) => a.json,
            Command::Demo(a) => a.json,
            Command::Simulate(a) => a.json,
            Command::Status(a) => a.json,
            _ => false,
        }
    }

    /// Read and validate settings for this invocation.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(self.load_settings()?)
    }

    /// [`Cli::settings`], with the typed error (the agent's reload logs it).
    pub fn load_settings(&self) -> Result<Settings, config::ConfigError> {
        let file = config::locate(self.config.as_deref(), |k| std::env::var(k).ok());
        let mut s = Settings::load(file.as_deref(), &self.overrides())?;
        if let Some(m) = self.miner() {
            s.select_miner(m)?;
        }
        Ok(s)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    main_from(std::env::args_os().collect())
}

/// Parse `args` and run; returns the process exit code.
pub fn main_from(args: Vec<OsString>) -> ExitCode {
    let wants_json = args.iter().any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if wants_json {
                print_json_error(Exit::Usage.error_type(), &first_line(&e.to_string()));
            } else {
                // clap quotes the offending argument: a PAT pasted in the wrong place must not come back.
                let text = e.to_string();
                match crate::secret::redact_tokens(&text) {
                    std::borrow::Cow::Borrowed(_) => {
                        let _ = e.print();
                    }
                    std::borrow::Cow::Owned(redacted) => eprint!("{redacted}"),
                }
            }
            return Exit::Usage.into();
        }
    };
    let json = cli.json();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            let (code, kind) = exit::classify(&err);
            if json {
                print_json_error(kind, &crate::secret::error_chain(err.as_ref()));
            }
            eprintln!("patrol: {}", crate::secret::error_chain(err.as_ref()));
            code.into()
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().trim_start_matches("error: ").to_string()
}

/// gitt's error envelope: `{"success": false, "error": {"type": T, "message": M}}` on stdout. The
/// message is redacted like every error text ([`crate::secret::redact_tokens`]).
pub fn print_json_error(kind: &str, message: &str) {
    let message = crate::secret::redact_tokens(message);
    let v = serde_json::json!({"success": false, "error": {"type": kind, "message": message}});
    println!("{v}");
}

async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        // Generated from the clap definitions: no config, no logging.
        Command::Completions(a) => generate::completions(a.shell),
        Command::Man => generate::man(),
        Command::Validator(ValidatorCommand::Serve(a)) => {
            logging::init_simple(cli.log_format.as_deref(), cli.verbose);
            validator_serve::run(a).await
        }
        Command::Dev(DevCommand::FakeGithub(a)) => {
            logging::init_simple(cli.log_format.as_deref(), cli.verbose);
            dev_fake_github::run(a, cli.config.as_deref()).await
        }
        Command::Simulate(a) => {
            logging::init_quiet(cli.verbose);
            // only to keep `--plot` off the files the config names; simulate itself needs none
            let settings = cli.settings().ok();
            simulate::run(a, settings.as_ref())
        }
        Command::Demo(a) => {
            // The demo's own output is the point: warnings only unless -v.
            logging::init_quiet(cli.verbose);
            demo::run(a).await
        }
        // doctor reports a config that does not load as one of its checks, so it loads it itself
        Command::Doctor(a) => {
            logging::init_simple(cli.log_format.as_deref(), cli.verbose);
            doctor::run(&cli, a).await
        }
        _ => {
            let settings = cli.settings()?;
            if matches!(cli.command, Command::Run(_)) {
                logging::init_agent(&settings, cli.verbose);
            } else {
                logging::init(&settings, cli.verbose);
            }
            match &cli.command {
                Command::Check(a) => check::run(&settings, a).await,
                Command::Post(a) => post::run(&settings, a).await,
                Command::Reconcile(a) => reconcile::run(&settings, a).await,
                Command::Run(a) => run::run(&cli, &settings, a).await,
                Command::Validators(a) => validators::run(&settings, a).await,
                Command::Notify(NotifyCommand::Test(a)) => notify::test(&settings, a).await,
                Command::Status(a) => status::run(&settings, a).await,
                _ => unreachable!("handled above"),
            }
        }
    }
}
