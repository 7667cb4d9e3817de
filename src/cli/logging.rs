//! Logging setup: tracing to stderr. Human text with colours on a terminal, journald-friendly text
//! (no timestamps, no colours; journald adds both; each line starts with its syslog priority,
//! `<3>` error … `<7>` debug, which journald strips and records, so `journalctl -p warning`
//! works) when `$JOURNAL_STREAM` says stderr goes to the journal, JSON lines on request. Stdout
//! stays clean for `--json` output.
//!
//! `patrol run` ([`init_agent`]) also drops the warnings and errors the reconcile pass logs on every
//! pass (active alerts, the preflight verdict): under the agent they would repeat every interval
//! and every re-check, and the agent logs each of those state changes once itself
//! (`agent::miner`).

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, Settings};

fn filter(verbose: u8) -> EnvFilter {
    filter_from(verbose, "patrol=info,warn")
}

fn filter_from(verbose: u8, quiet: &str) -> EnvFilter {
    let default = match verbose {
        0 => quiet,
        1 => "patrol=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // jsonrpsee's connection log (debug) prints the RPC endpoint whole: its query (`?apikey=…`)
    // and its userinfo as a Basic header. Whatever the verbosity, endpoints print without them.
    match "jsonrpsee-client=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Warnings only unless `-v` (commands whose output is a report, like `simulate`, whose embedded
/// validators would otherwise log every simulated request).
pub fn init_quiet(verbose: u8) {
    // The simulated validators log like real ones would; in a simulation that is noise.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter_from(verbose, "warn,patrol::lab::validator=off"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Resolve `Auto` to a concrete format for this process.
pub fn effective(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() && !std::io::stderr().is_terminal() => {
            LogFormat::Journald
        }
        other => other,
    }
}

/// Install the global subscriber from settings. Safe to call twice (the second is ignored).
pub fn init(settings: &Settings, verbose: u8) {
    install(effective(settings.agent.log_format), verbose);
}

/// Install from a format name, for commands that don't load the miner config.
pub fn init_simple(format: Option<&str>, verbose: u8) {
    let f = match format {
        Some("json") => LogFormat::Json,
        Some("journald") => LogFormat::Journald,
        Some("text") => LogFormat::Text,
        _ => LogFormat::Auto,
    };
    install(effective(f), verbose);
}

/// Install for `patrol run`: as [`init`], without the reconcile pass's per-pass warnings (see the
/// module docs).
pub fn init_agent(settings: &Settings, verbose: u8) {
    install_with(effective(settings.agent.log_format), verbose, true);
}

/// The pass's own WARN/ERROR lines (alerts, preflight verdicts), which restate a state on every
/// pass. Its INFO lines (a broadcast, a PAT change) are events and stay.
fn repeats_every_pass(meta: &Metadata<'_>) -> bool {
    meta.target() == "patrol::reconcile::pass" && matches!(*meta.level(), Level::WARN | Level::ERROR)
}

fn install(format: LogFormat, verbose: u8) {
    install_with(format, verbose, false);
}

fn install_with(format: LogFormat, verbose: u8, agent: bool) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(verbose)).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => try_init(builder.json().flatten_event(true).with_current_span(false).finish(), agent),
        LogFormat::Journald => {
            let format = tracing_subscriber::fmt::format().without_time().with_ansi(false).with_target(false);
            try_init(builder.with_ansi(false).event_format(SyslogPriority(format)).finish(), agent)
        }
        LogFormat::Text | LogFormat::Auto => {
            try_init(builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).finish(), agent)
        }
    }
}

fn try_init<S>(subscriber: S, agent: bool)
where
    S: tracing::Subscriber + Send + Sync + for<'a> LookupSpan<'a>,
{
    // A second install (tests, nested calls) is ignored, as documented on `init`.
    let _ = if agent {
        subscriber.with(tracing_subscriber::filter::filter_fn(|m| !repeats_every_pass(m))).try_init()
    } else {
        subscriber.try_init()
    };
}

/// Prefixes each event with its syslog priority (sd-daemon(3) `<N>`), for journald.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    F: FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
